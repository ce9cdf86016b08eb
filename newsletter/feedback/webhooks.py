"""Receiving a provider's bounce webhook: check it the provider's way, then process each
event it reports exactly as a returned mail is processed (`process.process_event`), in
one transaction. Runs in a worker thread: it fetches certificates and uses the database.

A refused request raises `Refused` (status and reason for the answer, logged here); a
request that is taken answers what each event did.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.core.settings import Settings
from newsletter.core.text import one_line
from newsletter.feedback.process import process_event
from newsletter.feedback.providers import PROVIDERS
from newsletter.feedback.providers.base import Refused

log = logging.getLogger("newsletter.feedback")

__all__ = ["PROVIDERS", "Refused", "receive", "refuse_unknown"]


def refuse_unknown(settings: Settings, provider: str) -> None:
    """Refused(404) for a provider we do not know or that is not configured."""
    if provider not in PROVIDERS:
        raise Refused(
            404, f"no bounce webhook for {provider[:40]!r}; known: {', '.join(PROVIDERS)}"
        )
    if provider not in settings.bounce_webhook_providers:
        raise Refused(404, f"the {provider} bounce webhook is not configured here")


def receive(
    engine: Engine,
    settings: Settings,
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: dt.datetime | None = None,
) -> dict:
    """What was done with each event of one request; Refused when it is not taken."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        refuse_unknown(settings, provider)
        batch = PROVIDERS[provider](settings, headers, body, now)
    except Refused as exc:
        log.warning(
            "bounce webhook %s refused (%s): %s", one_line(provider)[:40], exc.status, exc.reason
        )
        raise
    results = []
    if batch.events:
        with Session(engine, expire_on_commit=False) as session:
            for event in batch.events:
                results.append(
                    process_event(session, settings, event.parsed, key=event.key, source=provider)
                )
            session.commit()
    answer: dict = {
        "received": len(batch.events),
        "ignored": batch.ignored,
        "results": [r.line() for r in results],
    }
    if batch.note:
        answer["note"] = batch.note
    return answer
