"""Chat digests: each team endpoint in a frequency's mode gets the period's events for
its topics, rendered once per (platform, language, topics) segment and split into parts
the platform accepts. The email side is `digests.plan_emails`; `pipeline.plan_period`
runs both."""

from __future__ import annotations

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from newsletter.audience.endpoints import endpoint_topic_slugs
from newsletter.core.models import Edition, WebhookEndpoint, utcnow
from newsletter.core.periods import Period
from newsletter.delivery.outbox import enqueue, idempotency_key
from newsletter.planning.digests import DigestRenderer
from newsletter.planning.readers import events_for
from newsletter.rendering import labels as i18n
from newsletter.rendering.cards import event_items, render_messages
from newsletter.rendering.editions import Segment


def plan_chat_digests(
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
