"""Postmark bounce and spam-complaint webhooks.

Postmark does not sign its webhooks; its documented protection is HTTP Basic
authentication in the webhook URL (`https://user:password@host/webhooks/bounces/postmark`),
checked here against NEWSLETTER_BOUNCE_POSTMARK_USER and _PASSWORD. A record's `ID` names
it for good, so a webhook Postmark retries, or someone replays, is counted once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
from collections.abc import Mapping

from newsletter.core.settings import Settings
from newsletter.delivery.return_path import TAG
from newsletter.feedback.parse import Parsed
from newsletter.feedback.providers.base import (
    Batch,
    Event,
    Refused,
    address,
    json_body,
    obj,
    text,
    tokens,
)

CHALLENGE = {"WWW-Authenticate": 'Basic realm="bounces", charset="UTF-8"'}
# Postmark's bounce types, by what they say about the address; others (auto-replies,
# challenge mails, Postmark's own API errors) are recorded and nothing is done
HARD = {"HardBounce", "BadEmailAddress"}
SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "Undeliverable"}


def authenticate(settings: Settings, headers: Mapping[str, str]) -> None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        raise Refused(401, "HTTP Basic credentials required", CHALLENGE)
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError) as exc:
        raise Refused(401, "HTTP Basic credentials garbled", CHALLENGE) from exc
    want_user = settings.bounce_postmark_user or ""
    want_password = (
        settings.bounce_postmark_password.get_secret_value()
        if settings.bounce_postmark_password
        else ""
    )
    # both compared, in constant time, whichever is wrong
    same_user = hmac.compare_digest(user.encode(), want_user.encode())
    same_password = hmac.compare_digest(password.encode(), want_password.encode())
    if not (sep and same_user and same_password):
        raise Refused(401, "wrong user or password", CHALLENGE)


def read(settings: Settings, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Batch:
    authenticate(settings, headers)
    record = json_body(body)
    if not isinstance(record, dict):
        raise Refused(400, "a Postmark webhook is a JSON object")
    kind = record.get("RecordType")
    if kind not in ("Bounce", "SpamComplaint"):
        return Batch(ignored=1)
    ident = record.get("ID")
    if not isinstance(ident, (int, str)) or isinstance(ident, bool) or not str(ident).strip():
        raise Refused(400, "a Postmark bounce record without its ID")
    bounce_type = text(record.get("Type"), 40)
    if kind == "SpamComplaint" or bounce_type == "SpamComplaint":
        verdict = "complaint"
    elif bounce_type in HARD:
        verdict = "hard"
    elif bounce_type in SOFT:
        verdict = "soft"
    else:
        verdict = "unknown"
    metadata = obj(record.get("Metadata"))
    found = [v for k, v in metadata.items() if str(k).lower() == TAG]
    diagnostic = " ".join(
        x for x in (bounce_type, text(record.get("Description")), text(record.get("Details"))) if x
    )
    parsed = Parsed(
        kind=verdict,
        return_tags=tokens(*found),
        addresses=address(record.get("Email")),
        diagnostic=diagnostic,
    )
    return Batch([Event(f"{kind}:{ident}", parsed)])
