"""Email digests: plan a period, render each segment once, enqueue one row per reader."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from .delivery import outbox
from .delivery.messages import build_digest_email
from .delivery.outbox import enqueue
from .models import Delivery, Edition, Event, utcnow
from .periods import DIGEST_FREQUENCIES, Period, PeriodError, parse_period
from .planning import Recipient, events_for, iter_recipients, period_events
from .rendering import Rendered, Segment, digest_context, render_digest
from .settings import Settings
from .subscribers import SubscriberError, get_subscriber, subscriber_topics
from .takes import get_take
from .topics import list_topics


class DigestError(ValueError):
    """A digest request that cannot be carried out, with the reason."""


def digest_kind(frequency: str) -> str:
    return f"digest-{frequency}"


def idempotency_key(subscriber_id: int, frequency: str, period: Period) -> str:
    return outbox.idempotency_key(digest_kind(frequency), period.key, subscriber_id=subscriber_id)


def check_frequency(frequency: str, period_key: str) -> Period:
    if frequency not in DIGEST_FREQUENCIES:
        raise DigestError(f"frequency must be one of {', '.join(DIGEST_FREQUENCIES)}")
    try:
        return parse_period(frequency, period_key)
    except PeriodError as exc:
        raise DigestError(str(exc)) from exc


class DigestRenderer:
    """Renders segments of one period, sharing the events, topics and takes."""

    def __init__(self, *, session: Session, env: Environment, settings: Settings, period: Period):
        self.session, self.env, self.settings, self.period = session, env, settings, period
        self.events = period_events(session=session, period=period)
        self.topics = list_topics(session=session)
        self._editions: dict[str, int] = {}

    def take_for(self, language: str) -> str | None:
        if self.period.frequency != "monthly":
            return None
        take = get_take(session=self.session, period=self.period.key, language=language)
        return take.body_markdown if take else None

    def render(self, segment: Segment, events: list[tuple[Event, list[str]]]) -> Rendered:
        context = digest_context(
            segment=segment,
            topics=self.topics,
            events=events,
            take_markdown=self.take_for(segment.language),
            base_url=self.settings.base_url,
        )
        return render_digest(self.env, context)

    def edition_id(self, segment: Segment, events: list[tuple[Event, list[str]]]) -> int:
        """The stored edition of a segment, rendering and storing it the first time."""
        key = segment.key
        if key in self._editions:
            return self._editions[key]
        found = self.session.execute(select(Edition.id).where(Edition.segment_key == key)).scalar()
        if found is None:
            rendered = self.render(segment, events)
            values = {
                "segment_key": key,
                "format": segment.format,
                "frequency": segment.frequency,
                "period": segment.period.key,
                "language": segment.language,
                "topic_slugs": list(segment.topic_slugs),
                "event_ids": [e.id for e, _ in events],
                "subject": rendered.subject,
                "body_html": rendered.body_html,
                "body_text": rendered.body_text,
                "content_hash": rendered.content_hash,
                "public": True,
                "created_at": utcnow(),
            }
            dialect = self.session.get_bind().dialect.name
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            # another planner may store the same segment at the same time: first one wins
            self.session.execute(
                insert(Edition)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["segment_key"])
            )
            found = self.session.execute(
                select(Edition.id).where(Edition.segment_key == key)
            ).scalar_one()
        self._editions[key] = found
        return found


@dataclass
class SendSummary:
    frequency: str
    period: str
    recipients: int = 0
    endpoints: int = 0
    endpoint_rows: int = 0
    skipped_empty: int = 0
    enqueued: int = 0
    segments: dict[str, int] = field(default_factory=dict)  # segment key -> event count
    segment_recipients: dict[str, int] = field(default_factory=dict)

    @property
    def already_enqueued(self) -> int:
        return self.recipients - self.enqueued


def send_digest(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    dry_run: bool = False,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    timezone: str | None = None,
) -> SendSummary:
    """Plan and enqueue a digest for every reader; enqueueing twice adds nothing."""
    period = check_frequency(frequency, period_key)
    renderer = DigestRenderer(session=session, env=env, settings=settings, period=period)
    summary = SendSummary(frequency=frequency, period=period.key)
    for batch in iter_recipients(
        session=session, frequency=frequency, batch_size=batch_size, timezone=timezone
    ):
        rows = []
        for r in batch:
            events = events_for(renderer.events, r.topic_slugs)
            if not events:
                summary.skipped_empty += 1
                continue
            segment = Segment("email", frequency, period, r.language, r.topic_slugs)
            summary.recipients += 1
            summary.segments[segment.key] = len(events)
            summary.segment_recipients[segment.key] = (
                summary.segment_recipients.get(segment.key, 0) + 1
            )
            if not dry_run:
                rows.append(_delivery_row(r, segment, renderer.edition_id(segment, events)))
        if rows:
            summary.enqueued += enqueue(session, rows)
            session.commit()
        if progress:
            progress(len(batch))
    from .alerts import enqueue_webhook_digests

    summary.endpoints, summary.endpoint_rows = enqueue_webhook_digests(
        session=session,
        env=env,
        settings=settings,
        renderer=renderer,
        dry_run=dry_run,
        timezone=timezone,
    )
    session.commit()
    return summary


def _delivery_row(r: Recipient, segment: Segment, edition_id: int) -> dict:
    return {
        "idempotency_key": idempotency_key(r.subscriber_id, segment.frequency, segment.period),
        "channel": "email",
        "kind": digest_kind(segment.frequency),
        "period": segment.period.key,
        "subscriber_id": r.subscriber_id,
        "edition_id": edition_id,
    }


@dataclass
class Preview:
    subject: str
    html: str
    text: str
    event_count: int
    message: bytes


def preview_digest(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    email: str,
) -> Preview:
    """Exactly what one reader would receive, rendered fresh and stored nowhere."""
    period = check_frequency(frequency, period_key)
    subscriber = get_subscriber(session=session, email=email)
    if subscriber is None:
        raise SubscriberError(f"no subscriber {email}")
    slugs = tuple(t.slug for t in subscriber_topics(session=session, subscriber=subscriber))
    renderer = DigestRenderer(session=session, env=env, settings=settings, period=period)
    events = events_for(renderer.events, slugs)
    if not events:
        raise DigestError(
            f"{subscriber.email} has no events in {period.key}: nothing would be sent"
        )
    segment = Segment("email", frequency, period, subscriber.language, slugs)
    rendered = renderer.render(segment, events)
    edition = Edition(
        segment_key=segment.key,
        format="email",
        frequency=frequency,
        period=period.key,
        language=subscriber.language,
        subject=rendered.subject,
        body_html=rendered.body_html,
        body_text=rendered.body_text,
        content_hash=rendered.content_hash,
    )
    delivery = Delivery(
        id=0,
        idempotency_key=idempotency_key(subscriber.id, frequency, period),
        channel="email",
        kind=digest_kind(frequency),
        created_at=utcnow(),
    )
    built = build_digest_email(
        settings=settings, delivery=delivery, edition=edition, subscriber=subscriber
    )
    parsed = message_from_bytes(built.data, policy=default_policy)
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    return Preview(rendered.subject, html, text, len(events), built.data)
