"""Plain-text hygiene shared by every source: one line titles, stable keys, safe URLs."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_KEY_DROP = re.compile(r"[\W_]+", re.UNICODE)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


def one_line(value: str) -> str:
    """Collapse CR/LF and runs of whitespace to one space; drop control characters."""
    value = _CONTROL.sub("", value)
    return _SPACES.sub(" ", value).strip()


def clean_block(value: str) -> str:
    """Keep paragraphs but normalise line endings and drop control characters."""
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    lines = [_SPACES.sub(" ", line).strip() for line in value.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def title_key(title: str) -> str:
    """A key under which two spellings of the same headline collide."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _KEY_DROP.sub(" ", folded).strip()[:600]


def normalise_url(url: str) -> str:
    """Validate an http(s) URL and return it with host lower-cased and fragment dropped.

    Raises ValueError with a reason a user can act on.
    """
    url = url.strip()
    if not url:
        raise ValueError("url is empty")
    if _CONTROL.search(url) or any(c.isspace() for c in url):
        raise ValueError("url contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"url must be http or https, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username or parts.password:
        raise ValueError("url must not contain a user name or password")
    netloc = parts.hostname.lower()
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def has_cjk(value: str) -> bool:
    return bool(CJK.search(value))
