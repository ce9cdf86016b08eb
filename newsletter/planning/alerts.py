"""Team deliveries: plan webhook digests and instant alerts into the outbox.

Instant alerts are one outbox row per (endpoint, event), due after a short batching
window; the worker sends all of an endpoint's due alerts as one message (split only
where the platform's limits require). Webhook digests are rendered once per segment
and part into editions, one outbox row per part.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.endpoints import endpoint_topic_slugs
from newsletter.core.models import (
    Event,
    Subscriber,
    Subscription,
    Topic,
    WebhookEndpoint,
    utcnow,
)
from newsletter.delivery.outbox import enqueue, idempotency_key
from newsletter.ingest.events import slugs_by_event

# Events looked at per round of enqueue_alerts.
ALERT_CHUNK = 1000


def enqueue_alerts(
    *, session: Session, settings, event_ids: list[int], now: dt.datetime | None = None
) -> int:
    """One alert row per instant endpoint and instant reader whose topics meet each event's."""
    if not event_ids:
        return 0
    now = now or utcnow()
    if len(event_ids) > ALERT_CHUNK:  # e.g. a large import: memory stays flat
        readers = instant_readers(session)  # once, not once per round
        return sum(
            _enqueue_alerts(session, settings, event_ids[i : i + ALERT_CHUNK], now, readers)
            for i in range(0, len(event_ids), ALERT_CHUNK)
        )
    return _enqueue_alerts(session, settings, event_ids, now, None)


def _enqueue_alerts(session: Session, settings, event_ids, now, readers) -> int:
    due = now + dt.timedelta(seconds=settings.alert_batch_seconds)
    event_slugs = {i: set(s) for i, s in slugs_by_event(session, event_ids).items()}
    endpoints = (
        session.execute(select(WebhookEndpoint).where(WebhookEndpoint.mode == "instant"))
        .scalars()
        .all()
    )
    follows = endpoint_topic_slugs(session)
    created = dict(
        session.execute(select(Event.id, Event.created_at).where(Event.id.in_(event_ids))).all()
    )
    rows = []
    for ep in endpoints:
        wanted = set(follows.get(ep.id, ()))
        for event_id in event_ids:
            if created.get(event_id) and created[event_id] < ep.created_at:
                continue  # arrived before the endpoint existed
            if wanted & event_slugs.get(event_id, set()):
                rows.append(
                    {
                        "idempotency_key": idempotency_key(
                            "alert", f"event:{event_id}", endpoint_id=ep.id
                        ),
                        "channel": ep.platform,
                        "kind": "alert",
                        "period": f"event:{event_id}",
                        "endpoint_id": ep.id,
                        "next_attempt_at": due,
                    }
                )
    rows += reader_alert_rows(session, event_ids, event_slugs, created, due, readers)
    return enqueue(session, rows)


def instant_readers(session: Session) -> tuple[dict[int, set[str]], dict[int, dt.datetime]]:
    """({subscriber id: topic slugs}, {subscriber id: created at}) of instant readers."""
    follows: dict[int, set[str]] = {}
    for sub_id, slug in session.execute(
        select(Subscription.subscriber_id, Topic.slug)
        .join(Topic, Topic.id == Subscription.topic_id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscriber.frequency == "instant", Subscriber.status == "active")
    ):
        follows.setdefault(sub_id, set()).add(slug)
    since = dict(
        session.execute(
            select(Subscriber.id, Subscriber.created_at).where(Subscriber.id.in_(list(follows)))
        ).all()
    )
    return follows, since


def reader_alert_rows(
    session: Session, event_ids, event_slugs, created, due, readers=None
) -> list[dict]:
    """Alert rows for subscribers who chose `instant`; the worker groups a reader's due rows."""
    follows, since = readers or instant_readers(session)
    rows = []
    for sub_id, wanted in follows.items():
        for event_id in event_ids:
            if created.get(event_id) and created[event_id] < since[sub_id]:
                continue
            if wanted & event_slugs.get(event_id, set()):
                rows.append(
                    {
                        "idempotency_key": idempotency_key(
                            "alert", f"event:{event_id}", subscriber_id=sub_id
                        ),
                        "channel": "email",
                        "kind": "alert",
                        "period": f"event:{event_id}",
                        "subscriber_id": sub_id,
                        "next_attempt_at": due,
                    }
                )
    return rows


def enqueue_recent_alerts(*, session: Session, settings, now: dt.datetime | None = None) -> int:
    """Alerts for events that arrived recently; safe to run any number of times.

    Only events stored after an endpoint was added reach it, so a new endpoint is not
    flooded with the backlog.
    """
    now = now or utcnow()
    since = now - dt.timedelta(hours=settings.alert_lookback_hours)
    ids = list(session.execute(select(Event.id).where(Event.created_at >= since)).scalars())
    return enqueue_alerts(session=session, settings=settings, event_ids=ids, now=now)
