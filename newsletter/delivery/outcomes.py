"""What a batch of send results means for readers and teams, written in the same
transaction as the results (`outbox.record`): hard bounces go on the suppression list,
and each webhook endpoint's health is noted (one that is gone, or failing for too long,
is disabled and its queued rows held). The outbox is below the audience stage, so it is
handed these instead of importing them."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.audience.endpoints import note_results
from newsletter.audience.subscribers import suppress
from newsletter.core.models import Delivery, Subscriber
from newsletter.delivery import outbox
from newsletter.delivery.outbox import Outcome

log = logging.getLogger(__name__)


def record(engine: Engine, outcomes: Sequence[Outcome], **options) -> dict[str, int]:
    """`outbox.record` with the audience's side effects: what the worker calls."""
    return outbox.record(engine, outcomes, side_effects=note, **options)


def note(
    session: Session, tried: list[Outcome], *, after_failures: int, after_hours: float
) -> list[tuple[int, str]]:
    """Bounces and endpoint health for this batch's tries; returns endpoints disabled.

    A bug in these is logged and does not cost the results: they run in a savepoint."""
    bounced = [o.delivery_id for o in tried if o.suppress]
    health: dict[int, Outcome] = {}
    for o in tried:  # an endpoint's last result in the batch is its state
        if o.endpoint_id:
            health[o.endpoint_id] = o
    if not bounced and not health:
        return []
    try:
        with session.begin_nested():
            if bounced:
                _suppress_bounced(session, bounced)
            if not health:
                return []
            disabled = note_results(
                session=session,
                results={i: (o.result == "sent", o.error, o.disable) for i, o in health.items()},
                disable_after_failures=after_failures,
                disable_after_hours=after_hours,
            )
            for endpoint_id, _ in disabled:  # queued for them: held until enabled again
                outbox.hold_endpoint(session, endpoint_id)
            return disabled
    except Exception:
        # the results are worth more than these: keep them, say what went wrong
        log.exception("noting bounces and endpoint health for a batch")
        return []


def _suppress_bounced(session: Session, delivery_ids: list[int]) -> None:
    emails = session.execute(
        select(Subscriber.email)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.id.in_(delivery_ids))
    ).scalars()
    for email in sorted(set(emails)):
        suppress(session=session, email=email, reason="bounced")
