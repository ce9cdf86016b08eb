"""Team deliveries: plan webhook digests and instant alerts into the outbox.

Instant alerts are one outbox row per (endpoint, event), due after a short batching
window; the worker sends all of an endpoint's due alerts as one message (split only
where the platform's limits require). Webhook digests are rendered once per segment
and part into editions, one outbox row per part.
"""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.core.models import (
    Edition,
    Event,
    Subscriber,
    Subscription,
    Topic,
    WebhookEndpoint,
    WebhookTopic,
    utcnow,
)
from newsletter.core.outbox import enqueue, idempotency_key
from newsletter.core.periods import Period
from newsletter.ingest.events import slugs_by_event
from newsletter.planning.digests import DigestRenderer
from newsletter.planning.readers import events_for
from newsletter.rendering import labels as i18n
from newsletter.rendering.cards import event_items, render_messages
from newsletter.rendering.editions import Segment


def endpoint_topic_slugs(session: Session) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for ep_id, slug in session.execute(
        select(WebhookTopic.endpoint_id, Topic.slug)
        .join(Topic, Topic.id == WebhookTopic.topic_id)
        .order_by(Topic.position)
    ):
        out.setdefault(ep_id, []).append(slug)
    return {k: tuple(v) for k, v in out.items()}


def alert_title(lang: str, topic_names: list[str], n: int) -> str:
    t = i18n.labels(lang)
    if n == 1:
        return t["alert_title"].format(brand=t["brand"], topics=(" / ".join(topic_names)))
    return t["alert_title_many"].format(brand=t["brand"], n=n)


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


def enqueue_webhook_digests(
    *,
    session: Session,
    env: Environment,
    settings,
    renderer: DigestRenderer,
    dry_run: bool = False,
    timezone: str | None = None,
) -> tuple[int, int]:
    """(endpoints planned, rows enqueued) for every endpoint whose mode is this frequency."""
    period: Period = renderer.period
    follows = endpoint_topic_slugs(session)
    planned = enqueued = 0
    query = select(WebhookEndpoint).where(WebhookEndpoint.mode == period.frequency)
    if timezone is not None:
        query = query.where(WebhookEndpoint.timezone == timezone)
    for ep in session.execute(query).scalars():
        slugs = follows.get(ep.id, ())
        events = events_for(renderer.events, slugs)
        if not events:
            continue
        planned += 1
        if dry_run:
            continue
        segment = Segment(ep.platform, period.frequency, period, ep.language, slugs)
        edition_ids = digest_editions(
            session=session,
            env=env,
            settings=settings,
            renderer=renderer,
            segment=segment,
            events=events,
        )
        rows = [
            {
                "idempotency_key": idempotency_key(
                    f"digest-{period.frequency}", period.key, endpoint_id=ep.id, extra=[f"part:{n}"]
                ),
                "channel": ep.platform,
                "kind": f"digest-{period.frequency}",
                "period": period.key,
                "endpoint_id": ep.id,
                "edition_id": edition_id,
            }
            for n, edition_id in enumerate(edition_ids, start=1)
        ]
        enqueued += enqueue(session, rows)
    return planned, enqueued


def digest_editions(
    *, session, env, settings, renderer: DigestRenderer, segment: Segment, events
) -> list[int]:
    """The stored parts of a chat digest segment, rendering them the first time."""
    existing = session.execute(
        select(Edition.id, Edition.segment_key).where(
            Edition.segment_key.like(segment.key + "|part:%")
        )
    ).all()
    if existing:
        return [
            i for i, _ in sorted(existing, key=lambda r: int(r[1].rsplit(":", 1)[1].split("/")[0]))
        ]
    lang = segment.language
    t = i18n.labels(lang)
    title = t["subject"].format(
        brand=t["brand"], kind=t[f"digest.{segment.frequency}"], period=segment.period.label(lang)
    )
    messages = render_messages(
        env,
        platform=segment.format,
        kind="digest",
        lang=lang,
        title=title,
        items=event_items(events, renderer.topics, lang),
        take=renderer.take_for(lang),
        period=segment.period.key,
        archive_url=settings.base_url.rstrip("/") + "/archive",
        timestamp=utcnow().isoformat(timespec="seconds"),
    )
    try:
        with session.begin_nested():
            return _store_parts(session, segment, title, events, messages)
    except IntegrityError:
        # another planner stored this segment's parts first: use theirs
        return digest_editions(
            session=session,
            env=env,
            settings=settings,
            renderer=renderer,
            segment=segment,
            events=events,
        )


def _store_parts(session: Session, segment: Segment, title: str, events, messages) -> list[int]:
    ids = []
    for n, payload in enumerate(messages, start=1):
        edition = Edition(
            segment_key=f"{segment.key}|part:{n}/{len(messages)}",
            format=segment.format,
            frequency=segment.frequency,
            period=segment.period.key,
            language=segment.language,
            topic_slugs=list(segment.topic_slugs),
            event_ids=[e.id for e, _ in events],
            subject=title,
            payload=[payload],
            content_hash="",
            public=False,
        )
        session.add(edition)
        session.flush()
        ids.append(edition.id)
    return ids
