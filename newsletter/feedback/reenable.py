"""Taking a reader back after bounces disabled them (their mailbox works again): an admin's
decision, recorded in the reader's bounce history with who made it.

The bounce score restarts at 0 and a suppression for bounces is lifted. An address that
complained of spam is re-enabled only when forced (the reader asked for it); one that
unsubscribed or was removed never is: only the reader can sign up again.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, select
from sqlmodel import Session

from newsletter.audience.subscribers import address_hash
from newsletter.core.models import Bounce, Subscriber, Suppression, utcnow

LIFTABLE = frozenset({"bounced"})
LIFTABLE_WHEN_FORCED = frozenset({"complaint"})


class ReenableError(ValueError):
    """Why this reader cannot be re-enabled (the message says what to do)."""


def enable_reader(
    *, session: Session, subscriber: Subscriber, by: str, via: str, force: bool = False
) -> str:
    """Re-enable a reader disabled by bounces or a complaint; returns what was done.
    `by` names who decided (kept in the history), `via` the interface (cli, api, admin)."""
    if subscriber.status != "disabled":
        raise ReenableError(f"{subscriber.email} is {subscriber.status}, not disabled")
    h = address_hash(subscriber.email)
    reason = session.execute(
        select(Suppression.reason).where(Suppression.address_hash == h)
    ).scalar()
    if reason is not None and reason not in LIFTABLE | LIFTABLE_WHEN_FORCED:
        raise ReenableError(
            f"{subscriber.email} is suppressed ({reason}): only the reader can sign up again"
        )
    if reason in LIFTABLE_WHEN_FORCED and not force:
        raise ReenableError(
            f"{subscriber.email} reported our mail as spam; re-enable only if they asked "
            "for it (force)"
        )
    old_score, old_reason = subscriber.bounce_score, subscriber.disabled_reason or ""
    subscriber.status = "active"
    subscriber.bounce_score = 0.0
    subscriber.bounce_scored_at = None
    subscriber.disabled_reason = None
    subscriber.disabled_at = None
    session.add(subscriber)
    done = [f"re-enabled by {by}", f"bounce score {old_score:g} reset"]
    if reason is not None:
        session.execute(delete(Suppression).where(Suppression.address_hash == h))
        done.append(f"suppression ({reason}) lifted")
    action = "; ".join(done)
    now = utcnow()
    session.add(
        Bounce(
            kind="enabled",
            subscriber_id=subscriber.id,
            diagnostic=f"was disabled: {old_reason}"[:500],
            action=action[:200],
            source=via[:16],
            # not a received message: a unique stand-in for the message hash
            message_hash=hashlib.sha256(
                f"enabled:{subscriber.id}:{now.isoformat()}:{secrets.token_hex(8)}".encode()
            ).hexdigest(),
            received_at=now,
        )
    )
    session.flush()
    return action
