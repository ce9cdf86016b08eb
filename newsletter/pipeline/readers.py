"""What an admin does to one reader beyond editing them: send the confirmation email
again, unsubscribe them, put them on or take them off the suppression list."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.subscribers import SubscriberError
from newsletter.core.models import Subscriber, utcnow
from newsletter.delivery.outbox import enqueue, idempotency_key


def resend_confirmation(*, session: Session, subscriber: Subscriber) -> bool:
    """Queue the double opt-in email again for a reader who has not confirmed yet.

    At most one a minute per reader (the idempotency key holds the minute): a second click
    queues nothing and returns False. Refused for a reader who is not pending, or whose
    address is suppressed for a reason a signup cannot lift.
    """
    if subscriber.status != "pending":
        raise SubscriberError(
            f"{subscriber.email} is {subscriber.status}: only a reader who signed up and "
            "has not confirmed yet (pending) is sent a confirmation"
        )
    if not subscribers.may_opt_in(session=session, email=subscriber.email):
        raise SubscriberError(
            subscribers.why_not_addable(session=session, email=subscriber.email)
            or f"{subscriber.email} is on the suppression list"
        )
    now = utcnow()
    hour, minute = now.strftime("%Y%m%d%H"), now.strftime("%Y%m%d%H%M")
    return (
        enqueue(
            session,
            [
                {
                    "idempotency_key": idempotency_key(
                        "confirm", hour, subscriber_id=subscriber.id, extra=[f"admin:{minute}"]
                    ),
                    "channel": "email",
                    "kind": "confirm",
                    "period": hour,
                    "subscriber_id": subscriber.id,
                }
            ],
        )
        > 0
    )


def unsubscribe(*, session: Session, subscriber: Subscriber) -> None:
    """Stop all mail to a reader, as their own unsubscribe would (they may come back by
    signing up again)."""
    if subscriber.status == "unsubscribed":
        raise SubscriberError(f"{subscriber.email} is unsubscribed already")
    subscribers.unsubscribe(session=session, subscriber=subscriber)
    session.flush()


def suppress(*, session: Session, subscriber: Subscriber) -> bool:
    return subscribers.suppress_by_admin(session=session, subscriber=subscriber)


def lift_suppression(*, session: Session, subscriber: Subscriber, force: bool = False) -> str:
    return subscribers.lift_suppression(session=session, subscriber=subscriber, force=force)
