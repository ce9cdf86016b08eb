"""Mailgun webhooks (`failed` and `complained` events).

Mailgun puts its signature in the body: `signature.signature` is the hex HMAC-SHA256 of
`timestamp + token` with the webhook signing key (NEWSLETTER_BOUNCE_MAILGUN_SIGNING_KEY).
A request signed more than NEWSLETTER_BOUNCE_WEBHOOK_MAX_AGE_SECONDS from now is refused,
and each event's `id` is recorded, so a replay within the window counts once. The
signature does not cover the event, so each token is remembered (in this process) with
the event it came with, for the window: the same request again is taken, another event
under a signature already seen is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping

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
    obj,
    text,
    tokens,
    unix_time,
)

MAX_TOKENS = 100_000
_tokens: dict[str, tuple[str, dt.datetime]] = {}  # token -> (event digest, forgotten after)
_tokens_lock = threading.Lock()


def signed(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify(settings: Settings, payload: dict, now: dt.datetime) -> None:
    signature = payload.get("signature")
    if not isinstance(signature, dict):
        raise Refused(401, "no Mailgun signature in the body")
    timestamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, (str, int)) and str(v) for v in (timestamp, token, given)):
        raise Refused(401, "the Mailgun signature needs timestamp, token and signature")
    key = (
        settings.bounce_mailgun_signing_key.get_secret_value()
        if settings.bounce_mailgun_signing_key
        else ""
    )
    want = signed(key, str(timestamp), str(token))
    if not hmac.compare_digest(want.encode(), str(given).lower().encode()):
        raise Refused(403, "the Mailgun signature does not match")
    window = dt.timedelta(seconds=settings.bounce_webhook_max_age_seconds)
    check_age(unix_time(timestamp, "the signature timestamp"), now, window, window)
    event = json.dumps(payload.get("event-data"), sort_keys=True, default=str)
    remember(str(token), hashlib.sha256(event.encode()).hexdigest(), now, 2 * window)


def remember(token: str, digest: str, now: dt.datetime, keep: dt.timedelta) -> None:
    """Refused(403) when this token already came with another event."""
    with _tokens_lock:
        if len(_tokens) >= MAX_TOKENS:
            for old in [t for t, (_, until) in _tokens.items() if until < now]:
                del _tokens[old]
        seen = _tokens.get(token)
        if seen is not None and seen[1] >= now and seen[0] != digest:
            raise Refused(403, "this Mailgun signature was already used for another event")
        if len(_tokens) < MAX_TOKENS:
            _tokens[token] = (digest, now + keep)


def read(settings: Settings, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Batch:
    payload = json_body(body)
    if not isinstance(payload, dict):
        raise Refused(400, "a Mailgun webhook is a JSON object")
    verify(settings, payload, now)
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise Refused(400, "a Mailgun webhook without event-data")
    kind = data.get("event")
    if kind == "failed":
        verdict = "hard" if data.get("severity") == "permanent" else "soft"
    elif kind == "complained":
        verdict = "complaint"
    else:
        return Batch(ignored=1)
    ident = data.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise Refused(400, "a Mailgun event without its id")
    variables = obj(data.get("user-variables"))
    message = obj(data.get("message"))
    headers_of = obj(message.get("headers"))
    status = obj(data.get("delivery-status"))
    diagnostic = " ".join(
        x
        for x in (
            str(kind),
            text(data.get("severity"), 20),
            text(data.get("reason"), 60),
            str(status.get("code") or ""),
            text(status.get("message")),
            text(status.get("description")),
        )  # fmt: skip
        if x
    )
    parsed = Parsed(
        kind=verdict,
        return_tags=tokens(variables.get(TAG)),
        addresses=address(data.get("recipient")),
        diagnostic=diagnostic,
        original_message_id=message_id(headers_of.get("message-id")),
    )
    return Batch([Event(ident[:200], parsed)])
