"""The master secret key: whether it is fit to sign anything, and the keys derived from it.

Nothing signs with the master key itself. Each use gets its own key, derived with
HKDF-SHA256 (RFC 5869) and a purpose label, so a signature made for one purpose (say an
admin session cookie) never validates for another (a reader's unsubscribe link).
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from newsletter.core.settings import Settings

MIN_LENGTH = 32
# purposes of derived keys; adding one never changes the keys of the others
ADMIN_SESSION = "admin-session"
READER_LINKS = "reader-links"
CSRF = "csrf"
RETURN_PATH = "return-path"
CLICK_LINKS = "click-links"

HOW_TO_SET = (
    "Set NEWSLETTER_SECRET_KEY to a long random value, e.g. "
    "`export NEWSLETTER_SECRET_KEY=$(openssl rand -hex 32)`, or point "
    "NEWSLETTER_SECRET_KEY_FILE at a file holding one (scripts/run creates .newsletter-secret)."
)
# values found in examples and old defaults: never a real secret, whatever their length
PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "replaceme")


class SecretKeyError(ValueError):
    """The secret key is missing or too weak to sign sessions and links."""


def weakness(key: str) -> str | None:
    """Why a key must not be used, or None when it is acceptable."""
    if not key:
        return "NEWSLETTER_SECRET_KEY is not set"
    if any(p in key.lower() for p in PLACEHOLDERS):
        return "NEWSLETTER_SECRET_KEY is a placeholder value"
    if len(key) < MIN_LENGTH:
        return f"NEWSLETTER_SECRET_KEY is too short ({len(key)} characters, at least {MIN_LENGTH})"
    if len(set(key)) < 8:
        return "NEWSLETTER_SECRET_KEY repeats too few different characters to be random"
    return None


def check_secret_key(settings: Settings) -> str:
    """The master key, or SecretKeyError saying what is wrong and how to set it."""
    problem = settings.secret_key_problem or weakness(settings.secret_key)
    if problem:
        raise SecretKeyError(
            f"{problem}: the web app and mail sending need it to sign sessions and links. "
            + HOW_TO_SET
        )
    return settings.secret_key


@functools.lru_cache(maxsize=64)
def derive_key(master: str, purpose: str) -> bytes:
    """HKDF-SHA256 with an empty salt: 32 bytes for `purpose`, independent of the others."""
    prk = hmac.new(b"\x00" * 32, master.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(prk, f"newsletter/{purpose}".encode() + b"\x01", hashlib.sha256).digest()
