"""Signed click links: `<base>/r/<token>` in place of an event's own link in an email.

A token names an event, the digest section (topic slug, or "picks") the link was in, a
hash of the event's URL and the digest's period, signed with a key derived from the
master secret for this purpose only. The redirect (web/public/clicks.py) goes only to the
URL of the event the token names, and only while that URL still has the hash the token
carries: a changed or foreign token can never send a reader somewhere else.

When an owner turns per-reader counts on, the link also carries a second signed part
naming the delivery (`/r/<token>/<reader>`): it is the same for every link of one email,
so the stored edition keeps a slot for it that sending fills in per message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlmodel import Session

from newsletter.core.keys import CLICK_LINKS, derive_key
from newsletter.core.options import CLICKS_PER_READER, get_flag
from newsletter.core.settings import Settings

MAX_TOKEN = 300  # characters; a longer path segment is refused before any work
_MAC_BYTES = 16


class ClickTokenError(ValueError):
    """A click token that is malformed, tampered with, or signed with another key."""


@dataclass(frozen=True)
class ClickToken:
    event_id: int
    topic: str
    url_hash: str
    period: str


def url_hash(url: str) -> str:
    """12 hex digits of the URL's SHA-256: enough to tell an event's URL from another."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]


@functools.lru_cache(maxsize=16)
def _key(secret: str) -> bytes:
    return derive_key(secret, CLICK_LINKS)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """The bytes of unpadded base64url, which must be written the one way _b64 writes it."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ClickTokenError("not base64") from exc
    if _b64(data) != text:
        raise ClickTokenError("not base64")
    return data


def _mac(secret: str, kind: bytes, payload: bytes) -> bytes:
    return hmac.new(_key(secret), kind + b"\x00" + payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _signed(secret: str, kind: bytes, payload: bytes) -> str:
    return f"{_b64(payload)}.{_b64(_mac(secret, kind, payload))}"


def _verified(secret: str, kind: bytes, token: str) -> bytes:
    if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise ClickTokenError("malformed click token")
    body, mac = token.split(".")
    payload = _unb64(body)
    if not hmac.compare_digest(_unb64(mac), _mac(secret, kind, payload)):
        raise ClickTokenError("bad signature")
    return payload


def make_token(secret: str, *, event_id: int, topic: str, url: str, period: str) -> str:
    """The same token for the same event, section, URL and period (editions stay stable)."""
    payload = f"{int(event_id)}|{topic}|{url_hash(url)}|{period}".encode()
    return _signed(secret, b"click", payload)


def read_token(secret: str, token: str) -> ClickToken:
    payload = _verified(secret, b"click", token)
    try:
        event_id, topic, digest, period = payload.decode("utf-8").split("|", 3)
        return ClickToken(int(event_id), topic, digest, period)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ClickTokenError("malformed click token") from exc


def reader_ref(secret: str, delivery_id: int) -> str:
    """The per-reader part of a click link: the delivery, signed."""
    return _signed(secret, b"reader", str(int(delivery_id)).encode("ascii"))


def read_reader_ref(secret: str, ref: str) -> int:
    payload = _verified(secret, b"reader", ref)
    if not payload.isdigit():
        raise ClickTokenError("malformed reader part")
    return int(payload)


@dataclass(frozen=True)
class Linker:
    """What an edition's event links become: `link(event_id, url, topic)`.

    With per-reader counts, each link ends in `sentinel`, a random word of this rendering
    that no stored text can hold, which render_digest turns into the slot that sending
    fills with the reader part.
    """

    secret: str
    base_url: str
    period: str
    per_reader: bool = False
    sentinel: str = ""

    def __call__(self, event_id: int, url: str, topic: str) -> str:
        token = make_token(self.secret, event_id=event_id, topic=topic, url=url, period=self.period)
        return f"{self.base_url.rstrip('/')}/r/{token}{self.sentinel}"


def click_linker(session: Session, settings: Settings, period: str) -> Linker | None:
    """The links of an email rendered now: None (the events' own links) unless
    NEWSLETTER_CLICK_TRACKING is on; per reader only while an owner has that turned on."""
    if not settings.click_tracking:
        return None
    per_reader = get_flag(session, CLICKS_PER_READER)
    return Linker(
        secret=settings.secret_key,
        base_url=settings.base_url,
        period=period,
        per_reader=per_reader,
        sentinel=f"~reader{secrets.token_hex(16)}~" if per_reader else "",
    )
