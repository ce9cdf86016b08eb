"""Email digests: plan a period, render each segment once, enqueue one row per reader."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy

from jinja2 import Environment
from sqlalchemy import Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberError, get_subscriber, subscriber_topics
from newsletter.core.models import Delivery, Edition, Event, Subscriber, utcnow
from newsletter.core.periods import DIGEST_FREQUENCIES, Period, PeriodError, parse_period
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.delivery.messages import build_digest_email
from newsletter.delivery.outbox import enqueue_select
from newsletter.ingest.takes import get_take
from newsletter.planning.readers import ReaderQuery, events_for, period_events, reader_query
from newsletter.rendering.click_links import click_linker
from newsletter.rendering.editions import Rendered, Segment, digest_context, render_digest
from newsletter.topics.catalogue import list_topics


class DigestError(ValueError):
    """A digest request that cannot be carried out, with the reason."""


class NothingToSend(DigestError):
    """The digest asked for would have no events."""


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

    def __init__(
        self,
        *,
        session: Session,
        env: Environment,
        settings: Settings,
        period: Period,
        drafts: bool | None = None,
    ):
        self.session, self.env, self.settings, self.period = session, env, settings, period
        self.events = period_events(session=session, period=period)
        self.topics = list_topics(session=session)
        self._editions: dict[str, int] = {}
        self.links = click_linker(session, settings, period.key)
        # a take not approved yet: in a reader's digest only as NEWSLETTER_TAKE_UNAPPROVED
        # says (omit by default); a proof shows it, being where an editor reads it first
        self.drafts = settings.take_unapproved == "include" if drafts is None else drafts

    def take_for(self, language: str) -> str | None:
        if self.period.frequency != "monthly":
            return None
        take = get_take(session=self.session, period=self.period.key, language=language)
        if take is None or (take.state != "approved" and not self.drafts):
            return None
        return take.body_markdown

    def render(self, segment: Segment, events: list[tuple[Event, list[str]]]) -> Rendered:
        context = digest_context(
            segment=segment,
            topics=self.topics,
            events=events,
            take_markdown=self.take_for(segment.language),
            base_url=self.settings.base_url,
            links=self.links,
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


# Connections that write delivery rows at the same time on PostgreSQL: while the database
# inserts one range of readers, it can insert another on a second core.
ENQUEUE_CONNECTIONS = 2


def plan_emails(
    *,
    session: Session,
    renderer: DigestRenderer,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    timezone: str | None = None,
) -> SendSummary:
    """Plan and enqueue the period's email digest for every reader; twice adds nothing.

    Readers are taken a range of `readers.ID_CHUNK` subscriber ids at a time: the
    database groups the range's readers by language and topic set, each new segment's
    edition is rendered and stored once, and the database writes the range's delivery
    rows itself (`INSERT ... SELECT`, see `_enqueue_range`); no reader's row passes
    through Python. On PostgreSQL the ranges are written on `ENQUEUE_CONNECTIONS`
    connections at once. Chat digests are `chat_digests.plan_chat_digests`; both run
    from `pipeline.plan_period`.
    """
    period = renderer.period
    frequency = period.frequency
    summary = SendSummary(frequency=frequency, period=period.key)
    readers = reader_query(session=session, frequency=frequency, timezone=timezone)
    buckets = readers.buckets(session)
    bind = session.get_bind()
    parallel = (
        not dry_run
        and ENQUEUE_CONNECTIONS > 1
        and len(buckets) > 1
        and isinstance(bind, Engine)  # a session on one connection keeps to it
        and bind.dialect.name == "postgresql"
    )
    segment_events: dict[tuple[str, tuple[str, ...]], list] = {}
    editions: dict[tuple[str, tuple[str, ...]], int] = {}
    with ThreadPoolExecutor(ENQUEUE_CONNECTIONS) if parallel else nullcontext() as pool:
        running: list[tuple[Future, int]] = []
        for bucket in buckets:
            in_range = 0
            stored_new = False
            for g in readers.grouped(session, bucket):
                in_range += g.readers
                key = (g.language, g.topic_slugs)
                if key not in segment_events:
                    segment_events[key] = events_for(renderer.events, g.topic_slugs, frequency)
                events = segment_events[key]
                if not events:
                    summary.skipped_empty += g.readers
                    continue
                segment = Segment("email", frequency, period, g.language, g.topic_slugs)
                summary.recipients += g.readers
                summary.segments[segment.key] = len(events)
                summary.segment_recipients[segment.key] = (
                    summary.segment_recipients.get(segment.key, 0) + g.readers
                )
                if not dry_run and key not in editions:
                    editions[key] = renderer.edition_id(segment, events)
                    stored_new = True
            if stored_new:
                session.commit()  # the editions, before rows (on any connection) point at them
            if dry_run or not in_range or not editions:  # nothing this range could get
                if progress:
                    progress(in_range)
                continue
            args = (frequency, period, readers, dict(editions), bucket)
            if pool is None:
                summary.enqueued += _enqueue_range(session, *args)
                session.commit()
                if progress:
                    progress(in_range)
                continue
            running.append((pool.submit(_enqueue_apart, bind, *args), in_range))
            while len(running) > ENQUEUE_CONNECTIONS or (running and running[0][0].done()):
                future, n = running.pop(0)
                summary.enqueued += future.result()
                if progress:
                    progress(n)
        for future, n in running:
            summary.enqueued += future.result()
            if progress:
                progress(n)
    return summary


def _enqueue_apart(engine, *args) -> int:
    """`_enqueue_range` in a transaction of its own, on a connection of its own."""
    with Session(engine) as session:
        n = _enqueue_range(session, *args)
        session.commit()
    return n


def _enqueue_range(
    session: Session,
    frequency: str,
    period: Period,
    readers: ReaderQuery,
    editions: dict[tuple[str, tuple[str, ...]], int],
    bucket: int,
) -> int:
    """Enqueue, in the database, the email rows of the readers in one range of ids."""
    key_prefix, key_suffix = idempotency_key(0, frequency, period).split("0", 1)
    params = {
        **readers.range_params(bucket),
        "key_prefix": key_prefix,
        "key_suffix": key_suffix,
        "kind": digest_kind(frequency),
        "period": period.key,
        "now": utcnow(),
    }
    words = range(readers.words)
    segments = [(lang, readers.masks(slugs), eid) for (lang, slugs), eid in editions.items()]
    if session.get_bind().dialect.name == "postgresql":
        arrays = ", ".join(f"CAST(:m_w{k} AS bigint[])" for k in words)
        names = ", ".join(f"w{k}" for k in words)
        segment_map = (
            f"unnest(CAST(:m_language AS text[]), {arrays}, CAST(:m_edition AS int[]))"
            f" AS m(language, {names}, edition_id)"
        )
        params["m_language"] = [lang for lang, _, _ in segments]
        for k in words:
            params[f"m_w{k}"] = [masks[k] for _, masks, _ in segments]
        params["m_edition"] = [eid for _, _, eid in segments]
    else:
        cols = "".join(f" json_extract(value, '$[{k + 1}]') AS w{k}," for k in words)
        segment_map = (
            f"(SELECT json_extract(value, '$[0]') AS language,{cols}"
            f" json_extract(value, '$[{readers.words + 1}]') AS edition_id"
            " FROM json_each(:m_json)) m"
        )
        params["m_json"] = json.dumps([[lang, *masks, eid] for lang, masks, eid in segments])
    on = " AND ".join(["m.language = r.language"] + [f"m.w{k} = r.m{k}" for k in words])
    select_sql = (
        "SELECT :key_prefix || CAST(r.id AS TEXT) || :key_suffix, 'email', :kind, :period,"
        " r.id, m.edition_id, 'queued', 0, :now, :now"
        f" FROM ({readers.sql}) r JOIN {segment_map} ON {on}"
        " WHERE true ORDER BY r.id"  # WHERE: SQLite reads ON CONFLICT after it unambiguously
    )
    columns = [
        "idempotency_key",
        "channel",
        "kind",
        "period",
        "subscriber_id",
        "edition_id",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ]
    return enqueue_select(session, columns, select_sql, params)


@dataclass
class Preview:
    subject: str
    html: str
    text: str
    event_count: int
    message: bytes


@dataclass
class ReaderView:
    """One reader's digest of a period, rendered and stored nowhere: the edition they
    would get and the reader it is personalised for (perhaps one made up for a proof)."""

    edition: Edition
    subscriber: Subscriber
    event_count: int


def reader_view(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    email: str | None = None,
    topics: list[str] | None = None,
    language: str = "en",
    drafts: bool | None = None,
    count_clicks: bool = True,
) -> ReaderView:
    """The digest of the subscriber `email`, or of someone following `topics` in
    `language` (every topic when `topics` is empty). Without `count_clicks` its links
    are the events' own even when click counting is on (a proof's clicks count for
    nobody)."""
    period = check_frequency(frequency, period_key)
    if email:
        subscriber = get_subscriber(session=session, email=email)
        if subscriber is None:
            raise SubscriberError(f"no subscriber {email}")
        slugs = tuple(t.slug for t in subscriber_topics(session=session, subscriber=subscriber))
        who = subscriber.email
    else:
        if language not in ("en", "zh"):
            raise DigestError("language must be en or zh")
        known = [t.slug for t in list_topics(session=session)]
        unknown = sorted(set(topics or []) - set(known))
        if unknown:
            raise DigestError(f"unknown topic {', '.join(unknown)}")
        wanted = set(topics or known)
        slugs = tuple(slug for slug in known if slug in wanted)
        subscriber = Subscriber(id=0, email="reader@example.com", name="", language=language)
        who = f"a {language} reader of {', '.join(slugs) or 'no topics'}"
    renderer = DigestRenderer(
        session=session, env=env, settings=settings, period=period, drafts=drafts
    )
    if not count_clicks:
        renderer.links = None
    events = events_for(renderer.events, slugs, frequency)
    if not events:
        raise NothingToSend(f"{who} has no events in {period.key}: nothing would be sent")
    segment = Segment("email", frequency, period, subscriber.language, slugs)
    rendered = renderer.render(segment, events)
    edition = Edition(
        segment_key=segment.key,
        format="email",
        frequency=frequency,
        period=period.key,
        language=subscriber.language,
        topic_slugs=list(slugs),
        subject=rendered.subject,
        body_html=rendered.body_html,
        body_text=rendered.body_text,
        content_hash=rendered.content_hash,
    )
    return ReaderView(edition, subscriber, len(events))


def preview_digest(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    email: str | None,
    topics: list[str] | None = None,
    language: str = "en",
) -> Preview:
    """Exactly what one reader would receive, rendered fresh and stored nowhere; without
    `email`, what a reader of `topics` (all when empty) in `language` would."""
    view = reader_view(
        session=session,
        env=env,
        settings=settings,
        frequency=frequency,
        period_key=period_key,
        email=email,
        topics=topics,
        language=language,
        drafts=True,  # the take as written: an editor previews it before approving
    )
    period = parse_period(frequency, period_key)
    delivery = Delivery(
        id=0,
        idempotency_key=idempotency_key(view.subscriber.id, frequency, period),
        channel="email",
        kind=digest_kind(frequency),
        created_at=utcnow(),
    )
    built = build_digest_email(
        settings=settings, delivery=delivery, edition=view.edition, subscriber=view.subscriber
    )
    html, text = message_bodies(built.data)
    return Preview(view.edition.subject, html, text, view.event_count, built.data)


def message_bodies(data: bytes) -> tuple[str, str]:
    """The HTML and the text part of a built digest message."""
    parsed = message_from_bytes(data, policy=default_policy)
    html_part, text_part = parsed.get_body(("html",)), parsed.get_body(("plain",))
    assert html_part is not None and text_part is not None, "a digest has both parts"
    return html_part.get_content(), text_part.get_content()
