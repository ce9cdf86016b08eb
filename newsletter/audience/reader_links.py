"""Signed per-subscriber tokens for unsubscribe and preference links (itsdangerous).

They are signed with the reader-links key derived from the master secret, never with the
master secret itself, so no admin or CSRF signature can pass for a reader link.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import time

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from newsletter.core.keys import READER_LINKS, derive_key

PURPOSES = ("unsubscribe", "preferences", "confirm")
# unsubscribe links must keep working for as long as old emails exist
MAX_AGE = {"unsubscribe": None, "preferences": 400 * 86400, "confirm": 7 * 86400}


class TokenError(ValueError):
    """A token that is forged, tampered with, expired or meant for something else."""


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    """`secret` is the master key; each purpose also gets its own salt."""
    return URLSafeTimedSerializer(derive_key(secret, READER_LINKS), salt=f"newsletter.{purpose}")


def make_token(secret: str, purpose: str, subscriber_id: int, email: str) -> str:
    """Binds the subscriber id to a hash prefix of the address, so a reused id fails.

    A token that `_serializer(secret, purpose)` reads (`read_token`), made directly:
    every email carries two, and itsdangerous builds a signer, re-derives its key and
    zlib-compresses the payload for each. The payload is never compressed here; the
    serializer would do so only when that saves a byte or two (an id with long runs of
    one digit), and reads both forms. Otherwise the tokens are identical (tested).
    """
    from newsletter.audience.subscribers import address_hash

    payload = f'[{int(subscriber_id)},"{address_hash(email)[:16]}"]'.encode("ascii")
    now = int(time.time())
    value = _b64(payload) + b"." + _b64(now.to_bytes((now.bit_length() + 7) // 8, "big"))
    mac = _signing_mac(secret, purpose).copy()
    mac.update(value)
    return (value + b"." + _b64(mac.digest())).decode("ascii")


@functools.lru_cache(maxsize=16)
def _signing_mac(secret: str, purpose: str) -> hmac.HMAC:
    """itsdangerous's TimestampSigner as `_serializer` configures it: HMAC-SHA1 keyed with
    SHA1(salt + "signer" + the derived reader-links key) ("django-concat")."""
    key = hashlib.sha1(
        f"newsletter.{purpose}".encode() + b"signer" + derive_key(secret, READER_LINKS)
    ).digest()
    return hmac.new(key, digestmod=hashlib.sha1)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _legacy_unsubscribe(secret: str, purpose: str, token: str):
    """Unsubscribe links in emails sent before keys were derived were signed with the
    master key itself; they must keep working. Nothing signs with the master key any
    more, so accepting them lets no other signature through."""
    if purpose != "unsubscribe":
        return None
    try:
        return URLSafeTimedSerializer(secret, salt="newsletter.unsubscribe").loads(token)
    except BadSignature:
        return None


def read_token(secret: str, purpose: str, token: str) -> tuple[int, str]:
    """Returns (subscriber_id, address-hash prefix) or raises TokenError."""
    sub_id, hash_prefix, _signed_at = read_token_signed_at(secret, purpose, token)
    return sub_id, hash_prefix


def read_token_signed_at(
    secret: str, purpose: str, token: str
) -> tuple[int, str, dt.datetime | None]:
    """Like read_token, plus when the link was signed (None for a legacy link), so a link
    can be refused for predating something, e.g. a confirmation link older than the
    reader's unsubscribe."""
    signed_at = None
    try:
        data, signed_at = _serializer(secret, purpose).loads(
            token, max_age=MAX_AGE[purpose], return_timestamp=True
        )
    except SignatureExpired as exc:
        raise TokenError("this link has expired") from exc
    except BadSignature as exc:
        data = _legacy_unsubscribe(secret, purpose, token)
        if data is None:
            raise TokenError("this link is not valid") from exc
    if (
        not isinstance(data, list)
        or len(data) != 2
        or not isinstance(data[0], int)
        or not isinstance(data[1], str)
    ):
        raise TokenError("this link is not valid")
    return data[0], data[1], signed_at
