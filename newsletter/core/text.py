"""Plain-text hygiene shared by every source: one line titles, stable keys, safe URLs."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u2028\u2029]")
_SPACES = re.compile(r"\s+")
_KEY_DROP = re.compile(r"[\W_]+", re.UNICODE)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")

# Line breaks of every kind, including the Unicode line and paragraph separators.
_BREAKS = re.compile("\r\n|[\r\n\x0b\x0c\x85\u2028\u2029]")
# What no stored text may carry: C0 and C1 controls (NUL, BEL, ESC, the record
# separators that delimit rendering slots ...), DEL, the bidi embedding, override and
# isolate controls (text that displays in another order than it reads), a BOM, lone
# surrogates (not encodable, so the database would refuse them) and noncharacters.
_UNWANTED = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069"
    "\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff]"
)


def clean_text(value: str, *, paragraphs: bool = False) -> str:
    """The one cleaning every source's text goes through before it is stored.

    Control and format characters are dropped; line breaks become spaces, or, with
    `paragraphs`, newlines (at most one blank line in a row). Runs of other
    whitespace become one space and each line is trimmed.
    """
    value = _BREAKS.sub("\n", value).replace("\t", " ")
    value = _UNWANTED.sub("", value)
    if not paragraphs:
        return _SPACES.sub(" ", value).strip()
    lines = [_SPACES.sub(" ", line).strip() for line in value.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def one_line(value: str) -> str:
    """A title, name or label: one line of clean text."""
    if value.isascii() and value.isprintable() and "  " not in value:
        return value.strip()  # nothing to clean (most names): no regular expressions
    return clean_text(value)


def clean_block(value: str) -> str:
    """A summary or comment: clean text that keeps its paragraphs."""
    return clean_text(value, paragraphs=True)


def printable(value: str) -> str:
    """Text for a terminal: control characters shown as escapes, never interpreted
    (for rows stored before cleaning, or fields that are not cleaned)."""
    return _UNWANTED.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), value)


def title_key(title: str) -> str:
    """A key under which two spellings of the same headline collide."""
    folded = unicodedata.normalize("NFKC", title).casefold()
    # a title of symbols only (emoji, punctuation) keys on itself rather than on ""
    return (_KEY_DROP.sub(" ", folded).strip() or _SPACES.sub(" ", folded).strip())[:600]


# bidirectional controls (U+202E and friends) make a URL read differently from where it goes
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def url_character_problem(url: str) -> str | None:
    """Describe the first character a URL must not carry, or None if there is none."""
    for char in url:
        code, category = f"U+{ord(char):04X}", unicodedata.category(char)
        if char in _BIDI:
            return f"a bidirectional control character ({code})"
        if category == "Cc":
            return f"a control character ({code})"
        if char.isspace() or category.startswith("Z"):
            return f"a space ({code})"
        if category in ("Cf", "Cs"):
            return f"an invisible formatting character ({code})"
    return None


def normalise_url(url: str) -> str:
    """Validate an http(s) URL and return it with host lower-cased and fragment dropped.

    IPv6 hosts keep their brackets and an explicit port is kept; a port outside 1..65535
    and any control, bidirectional, invisible or space character is refused.
    Raises ValueError with a reason a user can act on.
    """
    url = url.strip(" \t\r\n")
    if not url:
        raise ValueError("url is empty")
    problem = url_character_problem(url)
    if problem:
        raise ValueError(f"url contains {problem}")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"url must be http or https, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username or parts.password:
        raise ValueError("url must not contain a user name or password")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("url has a bad port: a port is a number from 1 to 65535")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


# A spreadsheet reads a cell starting with one of these as a formula (CSV injection):
# every CSV we write prefixes such a cell with an apostrophe, which spreadsheets show
# as text and our CSV import takes off again (so an export re-imports unchanged).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A value for a CSV cell that no spreadsheet runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_value(cell: str) -> str:
    """What csv_cell was given: the apostrophe it added is removed."""
    return cell[1:] if cell.startswith("'") and cell[1:2] in _FORMULA_START else cell


def has_cjk(value: str) -> bool:
    return bool(CJK.search(value))
