"""Per-delivery return paths (VERP): `bounces+<token>@<bounce domain>`.

A bounce comes back to the envelope sender, so when each message has its own, the
bounce names the delivery without guessing from its text. The token is the delivery id
and the day the delivery was made, signed with a key derived for this purpose only. It
is lower-case base32 and digits, so a server that lower-cases local parts keeps it
valid, and short enough for the 64-octet local-part limit. `read_token` returns None
for anything forged, garbled or too old: a bounce must never be pinned on the wrong
reader.

A message sent through an email provider also carries the token where that provider
hands it back in its bounce webhooks (`tag_headers`): SES returns the headers, SendGrid
the X-SMTPAPI unique arguments, Mailgun the X-Mailgun-Variables, Postmark the
X-PM-Metadata fields.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from newsletter.core.addresses import wire_address
from newsletter.core.keys import RETURN_PATH, derive_key
from newsletter.core.settings import Settings

BOUNCE_LOCAL = "bounces"
UNSUBSCRIBE_LOCAL = "unsubscribe"
_EPOCH = dt.date(2020, 1, 1)
_MAC_BYTES = 10  # 80 bits: 16 base32 characters
_TOKEN = re.compile(r"([0-9a-z]{1,7})-([0-9a-z]{1,4})-([a-z2-7]{16})")


@dataclass(frozen=True)
class ReturnToken:
    delivery_id: int
    made_on: dt.date


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _mac(secret: str, body: str) -> str:
    digest = hmac.new(derive_key(secret, RETURN_PATH), body.encode("ascii"), hashlib.sha256)
    return base64.b32encode(digest.digest()[:_MAC_BYTES]).decode("ascii").lower()


def make_token(secret: str, delivery_id: int, made_on: dt.date) -> str:
    """`<id>-<day>-<mac>` in base 36 and base32, all lower case."""
    body = f"{_b36(int(delivery_id))}-{_b36(max(0, (made_on - _EPOCH).days))}"
    return f"{body}-{_mac(secret, body)}"


def read_token(
    secret: str, token: str, *, max_days: int, today: dt.date | None = None
) -> ReturnToken | None:
    """The delivery a token names, or None (forged, garbled, or older than max_days)."""
    if not isinstance(token, str) or len(token) > 40:
        return None
    match = _TOKEN.fullmatch(token.strip().lower())
    if not match:
        return None
    ident, day, mac = match.groups()
    if not hmac.compare_digest(_mac(secret, f"{ident}-{day}"), mac):
        return None
    made_on = _EPOCH + dt.timedelta(days=int(day, 36))
    today = today or dt.datetime.now(dt.UTC).date()
    if (today - made_on).days > max_days or made_on > today + dt.timedelta(days=1):
        return None
    return ReturnToken(int(ident, 36), made_on)


DELIVERY_HEADER = "X-Newsletter-Delivery"
TAG = "newsletter_delivery"  # the name of the token among a provider's custom values


def tag_headers(settings: Settings, delivery_id: int, made: dt.datetime) -> list[tuple[str, str]]:
    """Headers carrying the delivery's token to the bounce webhooks of the providers that
    are configured; none when no provider is (the message stays as it was)."""
    providers = settings.bounce_webhook_providers
    if not providers or not delivery_id:
        return []
    token = make_token(settings.secret_key, delivery_id, made.date())
    headers = [(DELIVERY_HEADER, token)]
    if "sendgrid" in providers:
        headers.append(("X-SMTPAPI", json.dumps({"unique_args": {TAG: token}})))
    if "mailgun" in providers:
        headers.append(("X-Mailgun-Variables", json.dumps({TAG: token})))
    if "postmark" in providers:
        headers.append((f"X-PM-Metadata-{TAG}", token))
    return headers


def bounce_domain(settings: Settings, from_addr: str) -> str:
    """Where bounces and unsubscribe mails go: the setting, else the From domain."""
    return settings.bounce_domain or wire_address(from_addr).rsplit("@", 1)[1].lower()


def return_path(settings: Settings, from_addr: str, delivery_id: int, made: dt.datetime) -> str:
    """The envelope sender of one delivery: VERP unless turned off (then the From address)."""
    if not settings.verp or not delivery_id:
        return from_addr
    token = make_token(settings.secret_key, delivery_id, made.date())
    return f"{BOUNCE_LOCAL}+{token}@{bounce_domain(settings, from_addr)}"


def split_local(address: str) -> tuple[str, str] | None:
    """(`bounces` | `unsubscribe`, tag) for an address of ours, else None. The tag may be
    empty (`unsubscribe@...`); the local part's case is ignored (servers may change it)."""
    local = address.strip().strip("<>").rpartition("@")[0]
    base, _plus, tag = local.partition("+")
    base = base.lower()
    if base not in (BOUNCE_LOCAL, UNSUBSCRIBE_LOCAL):
        return None
    return base, tag
