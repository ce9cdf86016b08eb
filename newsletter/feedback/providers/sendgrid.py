"""SendGrid's Event Webhook, signed (Signed Event Webhook Requests).

SendGrid signs `timestamp + raw body` with its ECDSA P-256 key and sends the signature
(base64 DER) and the timestamp in `X-Twilio-Email-Event-Webhook-Signature` and
`-Timestamp`; the public key is NEWSLETTER_BOUNCE_SENDGRID_PUBLIC_KEY. A request signed
more than NEWSLETTER_BOUNCE_WEBHOOK_MAX_AGE_SECONDS from now is refused, and each event's
`sg_event_id` is recorded, so neither a late replay nor a retried batch counts twice.
The body is a batch: a JSON array of events of every kind; bounces, drops and spam
reports are read, the rest counted and ignored.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache

from newsletter.core.public_keys import ecdsa_valid, load_ec_public_key
from newsletter.core.settings import Settings
from newsletter.delivery.return_path import TAG
from newsletter.feedback.parse import Parsed
from newsletter.feedback.providers.base import (
    Batch,
    Event,
    Refused,
    address,
    check_age,
    json_body,
    message_id,
    text,
    tokens,
    unix_time,
)

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
# a message SendGrid did not send because of the address: what the drop reason says
DROPPED = {
    "Bounced Address": "hard",
    "Invalid": "hard",
    "Spam Reporting Address": "complaint",
}


@lru_cache(maxsize=4)
def _key(text: str):
    return load_ec_public_key(text)


def verify(settings: Settings, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> None:
    signature, timestamp = headers.get(SIGNATURE), headers.get(TIMESTAMP)
    if not signature or not timestamp:
        raise Refused(401, f"the {SIGNATURE} and -timestamp headers are required")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(403, "the signature is not base64") from exc
    key = _key(settings.bounce_sendgrid_public_key or "")
    if not ecdsa_valid(key, raw_signature, timestamp.encode("utf-8", "replace") + body):
        raise Refused(403, "the SendGrid signature does not match")
    window = dt.timedelta(seconds=settings.bounce_webhook_max_age_seconds)
    check_age(unix_time(timestamp, "the signature timestamp"), now, window, window)


def read(settings: Settings, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Batch:
    verify(settings, headers, body, now)
    events = json_body(body)
    if not isinstance(events, list):
        raise Refused(400, "a SendGrid batch is a JSON array of events")
    batch = Batch()
    for event in events:
        found = event_of(event) if isinstance(event, dict) else None
        if found is None:
            batch.ignored += 1
        else:
            batch.events.append(found)
    return batch


def event_of(event: dict) -> Event | None:
    kind = event.get("event")
    if kind == "bounce":
        # `type` is bounce (the receiver refused the address) or blocked (it refused
        # the message for now: reputation, content, throttling)
        blocked = event.get("type") == "blocked" or str(event.get("status", "")).startswith("4")
        verdict = "soft" if blocked else "hard"
    elif kind == "dropped":
        verdict = DROPPED.get(str(event.get("reason", "")), "")
        if not verdict:
            return None
    elif kind == "spamreport":
        verdict = "complaint"
    else:
        return None
    ident = event.get("sg_event_id")
    if not isinstance(ident, str) or not ident.strip():
        canonical = json.dumps(event, sort_keys=True, default=str).encode()
        ident = "sha256-" + hashlib.sha256(canonical).hexdigest()
    diagnostic = " ".join(
        x
        for x in (
            str(kind),
            text(event.get("type"), 20),
            text(event.get("status"), 20),
            text(event.get("reason")),
        )  # fmt: skip
        if x
    )
    parsed = Parsed(
        kind=verdict,
        return_tags=tokens(event.get(TAG)),
        addresses=address(event.get("email")),
        diagnostic=diagnostic,
        original_message_id=message_id(event.get("smtp-id")),
    )
    return Event(ident[:200], parsed)
