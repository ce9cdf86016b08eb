"""Planning: who gets which events for a period, grouped into segments, streamed in batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from .events import slugs_by_event
from .models import Event, Subscriber, Subscription, Suppression, Topic
from .periods import Period
from .subscribers import address_hash


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    language: str
    topic_slugs: tuple[str, ...]  # in topic display order


def period_events(*, session: Session, period: Period) -> list[tuple[Event, list[str]]]:
    """Events of the period with their topic slugs, most important first, then by date."""
    events = list(
        session.execute(
            select(Event)
            .where(Event.occurred_on >= period.start, Event.occurred_on < period.end)
            .order_by(Event.importance.desc().nulls_last(), Event.occurred_on, Event.id)
        ).scalars()
    )
    slugs = slugs_by_event(session, [e.id for e in events])
    return [(e, slugs[e.id]) for e in events]


def iter_recipients(
    *, session: Session, frequency: str, batch_size: int = 1000, timezone: str | None = None
) -> Iterator[list[Recipient]]:
    """Active, unsuppressed subscribers of a frequency, with their topics, in id order.

    Keyset pagination keeps memory flat however many subscribers there are.
    """
    order = {slug: pos for slug, pos in session.execute(select(Topic.slug, Topic.position))}
    last_id = 0
    while True:
        query = select(Subscriber.id, Subscriber.email, Subscriber.language).where(
            Subscriber.status == "active",
            Subscriber.frequency == frequency,
            Subscriber.id > last_id,
        )
        if timezone is not None:
            query = query.where(Subscriber.timezone == timezone)
        subs = session.execute(query.order_by(Subscriber.id).limit(batch_size)).all()
        if not subs:
            return
        first_id, last_id = subs[0][0], subs[-1][0]
        ids = [s[0] for s in subs]
        hashes = {address_hash(s[1]): s[0] for s in subs}
        suppressed = {
            hashes[h]
            for h in session.execute(
                select(Suppression.address_hash).where(Suppression.address_hash.in_(list(hashes)))
            ).scalars()
        }
        topics: dict[int, list[str]] = {i: [] for i in ids}
        # a range, not IN (2000 ids): cheaper to plan, and the primary key serves it
        for sub_id, slug in session.execute(
            select(Subscription.subscriber_id, Topic.slug)
            .join(Topic, Topic.id == Subscription.topic_id)
            .where(Subscription.subscriber_id.between(first_id, last_id))
        ):
            if sub_id in topics:
                topics[sub_id].append(slug)
        yield [
            Recipient(sid, lang, tuple(sorted(topics[sid], key=lambda s: (order.get(s, 0), s))))
            for sid, _email, lang in subs
            if sid not in suppressed and topics[sid]
        ]
        session.expunge_all()


def events_for(
    events: list[tuple[Event, list[str]]], topic_slugs: tuple[str, ...]
) -> list[tuple[Event, list[str]]]:
    """The period's events whose topics meet the recipient's."""
    wanted = set(topic_slugs)
    return [(e, slugs) for e, slugs in events if wanted.intersection(slugs)]
