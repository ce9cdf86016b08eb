"""The tables: what the service stores, from topics and events to deliveries.

The data flows one way: an Event gets EventTopic matches; a plan turns recipients
(Subscriber, WebhookEndpoint) into Delivery rows that point at an immutable Edition;
the outbox records each DeliveryAttempt.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Index, Row, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- topics and events -------------------------------------------------------------------


class Topic(SQLModel, table=True):
    """A subject readers follow. `rules` decide which events it gets."""

    id: int = Field(default=None, primary_key=True)
    slug: str = Field(index=True, unique=True, max_length=64)
    name_en: str = Field(max_length=200)
    name_zh: str = Field(max_length=200)
    description: str = Field(default="", sa_type=Text)
    # the description shown on the Chinese pages (the English one when empty)
    description_zh: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    # {"include": [...], "exclude": [...], "regex": "..." | null}
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    position: int = Field(default=0)
    created_at: dt.datetime = Field(default_factory=utcnow)
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Something that happened, stored as plain text in one or more languages."""

    __table_args__ = (
        UniqueConstraint("url", name="uq_event_url"),
        UniqueConstraint("title_key", "occurred_on", name="uq_event_title_day"),
        # the admin list: newest first, a page at a time (keyset on day and id)
        Index("ix_event_day_id", "occurred_on", "id"),
    )

    id: int = Field(default=None, primary_key=True)
    # {"zh": "...", "en": "..."}: at least one language present
    title: dict[str, str] = Field(sa_type=JSON)
    summary: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    url: str = Field(max_length=2000)
    source: str = Field(default="", max_length=200, index=True)
    # the source's name per language, {"zh": "新华社", "en": "Xinhua"}; `source` is the
    # fallback for a language not given
    sources: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    region: str = Field(default="global", index=True, max_length=32)
    occurred_on: dt.date = Field(index=True)
    language: str = Field(default="en", max_length=8)
    importance: int | None = Field(default=None)
    # an editor's pick: in the monthly digest's picks for every reader, whatever their topics
    pinned: bool = Field(default=False)
    # normalised title used to find duplicates reported under another URL
    title_key: str = Field(max_length=600)
    # True when an admin chose the topics; rules then leave it alone
    manual_topics: bool = Field(default=False)
    feed_id: int | None = Field(default=None, foreign_key="feed.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow, index=True)
    # titles and summaries in every language, case-folded: what the admin search reads
    # (kept by `ingest.events.search_text` whenever an event is written)
    search_text: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})


class EventTopic(SQLModel, table=True):
    """An event's topic, and why it has it (the rule that matched, or manual)."""

    event_id: int = Field(foreign_key="event.id", primary_key=True, ondelete="CASCADE")
    topic_id: int = Field(foreign_key="topic.id", primary_key=True, ondelete="CASCADE", index=True)
    source: str = Field(default="rule", max_length=16)  # "rule" | "manual"
    reason: str = Field(default="", max_length=500)
    matched_at: dt.datetime = Field(default_factory=utcnow)


# --- recipients -----------------------------------------------------------------------------


class Subscriber(SQLModel, table=True):
    """A person who receives email digests."""

    # the admin search (address or name prefix) has indexes per dialect that only
    # migration 0010 defines (`db.DIALECT_INDEXES`): lower(name), and on PostgreSQL
    # text_pattern_ops ones for LIKE 'prefix%'

    id: int = Field(default=None, primary_key=True)
    email: str = Field(unique=True, index=True, max_length=320)
    name: str = Field(default="", max_length=200)
    language: str = Field(default="en", max_length=8)
    timezone: str = Field(default="UTC", max_length=64)
    frequency: str = Field(default="monthly", max_length=16)  # instant|daily|weekly|monthly
    # pending|active|unsubscribed|disabled (bounces or a complaint; see disabled_reason)
    status: str = Field(default="active", index=True, max_length=16)
    source: str = Field(default="admin", max_length=32)  # admin|import|roster|web
    created_at: dt.datetime = Field(default_factory=utcnow)
    confirmed_at: dt.datetime | None = None
    unsubscribed_at: dt.datetime | None = None
    # hard bounce 1, soft 0.5, at most one increment a day; restarts after a quiet period
    bounce_score: float = Field(default=0.0)
    bounce_scored_at: dt.datetime | None = None
    disabled_reason: str | None = Field(default=None, max_length=500)
    disabled_at: dt.datetime | None = None


class Subscription(SQLModel, table=True):
    """A subscriber follows a topic."""

    subscriber_id: int = Field(foreign_key="subscriber.id", primary_key=True, ondelete="CASCADE")
    topic_id: int = Field(foreign_key="topic.id", primary_key=True, ondelete="CASCADE", index=True)


class WebhookEndpoint(SQLModel, table=True):
    """A team's chat channel or signed generic webhook."""

    id: int = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=100)
    platform: str = Field(max_length=16)  # a name in delivery.platforms.PLATFORMS
    url: str = Field(max_length=2000)
    secret: str | None = Field(default=None, max_length=500)
    secret_env: str | None = Field(default=None, max_length=100)  # roster: secret from env var
    mode: str = Field(default="instant", max_length=16)  # instant|daily|weekly|monthly
    language: str = Field(default="en", max_length=8)
    timezone: str = Field(default="UTC", max_length=64)
    enabled: bool = Field(default=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    consecutive_failures: int = Field(default=0)
    first_failure_at: dt.datetime | None = None
    source: str = Field(default="admin", max_length=32)
    created_at: dt.datetime = Field(default_factory=utcnow)


class WebhookTopic(SQLModel, table=True):
    """A webhook endpoint follows a topic."""

    endpoint_id: int = Field(foreign_key="webhookendpoint.id", primary_key=True, ondelete="CASCADE")
    topic_id: int = Field(foreign_key="topic.id", primary_key=True, ondelete="CASCADE", index=True)


class Suppression(SQLModel, table=True):
    """An address that must never be mailed again; kept after personal data is deleted."""

    id: int = Field(default=None, primary_key=True)
    # sha256 of the normalised address: lets us refuse it without keeping it
    address_hash: str = Field(unique=True, index=True, max_length=64)
    reason: str = Field(max_length=200)  # unsubscribed|removed|bounced|complaint|admin
    created_at: dt.datetime = Field(default_factory=utcnow)


class Bounce(SQLModel, table=True):
    """A bounce, complaint or unsubscribe mail received, and what was done about it.

    `message_hash` (sha256 of the raw message) makes processing idempotent: the same
    message imported twice, or delivered twice by a relay, is counted once.
    """

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16, index=True)  # hard|soft|complaint|unsubscribe|unknown|enabled
    subscriber_id: int | None = Field(
        default=None, foreign_key="subscriber.id", index=True, ondelete="SET NULL"
    )
    delivery_id: int | None = Field(
        default=None, foreign_key="delivery.id", index=True, ondelete="SET NULL"
    )
    diagnostic: str = Field(default="", max_length=500)  # status and diagnostic code
    action: str = Field(default="", max_length=200)  # what was done (or why nothing)
    # import|smtp|imap, or the provider of a webhook: ses|postmark|sendgrid|mailgun
    source: str = Field(default="import", max_length=16)
    message_hash: str = Field(unique=True, max_length=64)
    received_at: dt.datetime = Field(default_factory=utcnow, index=True)


# --- editorial ------------------------------------------------------------------------------


class SharpTake(SQLModel, table=True):
    """The editor's monthly comment, in Markdown, per language."""

    __table_args__ = (UniqueConstraint("period", "language", name="uq_sharptake_period_lang"),)

    id: int = Field(default=None, primary_key=True)
    period: str = Field(max_length=7)  # YYYY-MM
    language: str = Field(max_length=8)
    body_markdown: str = Field(sa_type=Text)
    updated_at: dt.datetime = Field(default_factory=utcnow)
    # draft until an editor approves it; saving an edit makes it a draft again. The
    # scheduled monthly send waits for approval (see planning/take_gate.py)
    state: str = Field(default="draft", max_length=10)  # draft|approved
    approved_at: dt.datetime | None = None
    approved_by: str | None = Field(default=None, max_length=100)  # the token's name


class Feed(SQLModel, table=True):
    """An RSS/Atom source polled for events."""

    id: int = Field(default=None, primary_key=True)
    url: str = Field(unique=True, max_length=2000)
    name: str = Field(unique=True, max_length=200)
    region: str = Field(default="global", max_length=32)
    language: str = Field(default="en", max_length=8)
    etag: str | None = Field(default=None, max_length=500)
    last_modified: str | None = Field(default=None, max_length=100)
    last_polled_at: dt.datetime | None = None
    last_ok_at: dt.datetime | None = None
    last_error: str | None = Field(default=None, sa_type=Text)
    consecutive_failures: int = Field(default=0)
    last_new_events: int | None = None  # how many new events the last poll brought
    next_poll_at: dt.datetime | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)


# --- delivery -------------------------------------------------------------------------------


class Edition(SQLModel, table=True):
    """One rendered segment (topics, language, frequency, period, format); never changed."""

    __table_args__ = (UniqueConstraint("segment_key", name="uq_edition_segment"),)

    id: int = Field(default=None, primary_key=True)
    # "<format>|<frequency>|<period>|<language>|<topic,topic>"
    segment_key: str = Field(max_length=500)
    format: str = Field(max_length=16)  # email, or a chat platform's name
    frequency: str = Field(max_length=16)
    period: str = Field(max_length=32, index=True)
    language: str = Field(max_length=8)
    topic_slugs: list[str] = Field(default_factory=list, sa_type=JSON)
    event_ids: list[int] = Field(default_factory=list, sa_type=JSON)
    subject: str = Field(default="", max_length=500)
    body_html: str | None = Field(default=None, sa_type=Text)
    body_text: str | None = Field(default=None, sa_type=Text)
    # chat payloads: a JSON list of messages (a digest may need several)
    payload: list[Any] | None = Field(default=None, sa_type=JSON)
    content_hash: str = Field(max_length=64)
    public: bool = Field(default=True)
    created_at: dt.datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    """One message to send: the outbox row. Only the outbox writes its status."""

    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_delivery_key"),
        Index(
            "ix_delivery_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )

    id: int = Field(default=None, primary_key=True)
    # "<recipient>|<kind>|<period>", e.g. "subscriber:42|digest-monthly|2025-07"
    idempotency_key: str = Field(max_length=500)
    channel: str = Field(max_length=16, index=True)  # email, or a chat platform's name
    kind: str = Field(max_length=32)  # digest-monthly|alert|confirm|test ...
    period: str = Field(default="", max_length=32)
    subscriber_id: int | None = Field(default=None, foreign_key="subscriber.id", index=True)
    endpoint_id: int | None = Field(default=None, foreign_key="webhookendpoint.id", index=True)
    edition_id: int | None = Field(default=None, foreign_key="edition.id", index=True)
    # queued|sending|sent|failed|suppressed|cancelled
    status: str = Field(default="queued", max_length=16, index=True)
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = Field(default_factory=utcnow)
    claimed_by: str | None = Field(default=None, max_length=200)
    claimed_at: dt.datetime | None = None
    last_error: str | None = Field(default=None, sa_type=Text)
    message_id: str | None = Field(default=None, max_length=500)
    created_at: dt.datetime = Field(default_factory=utcnow, index=True)
    sent_at: dt.datetime | None = None


class DeliveryAttempt(SQLModel, table=True):
    """What happened on one try to send a delivery."""

    id: int = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="delivery.id", index=True, ondelete="CASCADE")
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    outcome: str = Field(max_length=16)  # sent|temporary|permanent
    status_code: int | None = None
    error: str | None = Field(default=None, sa_type=Text)
    worker: str | None = Field(default=None, max_length=200)


# --- admin ----------------------------------------------------------------------------------


class AdminToken(SQLModel, table=True):
    """A bearer token for the admin API, stored as a hash."""

    id: int = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=100)
    token_hash: str = Field(unique=True, max_length=64)
    # viewer: reads only; editor: runs the newsletter; owner: also tokens and personal data
    role: str = Field(default="owner", max_length=10)
    created_at: dt.datetime = Field(default_factory=utcnow)
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


class AdminWebSession(SQLModel, table=True):
    """A browser login to the admin UI, made with an admin token.

    The cookie carries a random id (signed); only its hash is stored. Logging out deletes
    the row and revoking the token ends it, so a copied cookie stops working server-side.
    """

    id: int = Field(default=None, primary_key=True)
    session_hash: str = Field(unique=True, max_length=64)
    token_id: int = Field(foreign_key="admintoken.id", index=True)
    created_at: dt.datetime = Field(default_factory=utcnow)
    expires_at: dt.datetime


class AdminAudit(SQLModel, table=True):
    """One change an admin made (through the admin UI or the API), and which token made it.

    The token's name is copied, so the record outlives a revoked or renamed token.
    """

    id: int = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, index=True)
    token_name: str = Field(max_length=100, index=True)
    action: str = Field(max_length=64)  # e.g. subscriber.suppress, outbox.retry
    target: str = Field(default="", max_length=500)  # what it was done to
    detail: str = Field(default="", sa_type=Text)  # what changed, in words


class DigestRun(SQLModel, table=True):
    """A digest period planned for the readers of one time zone: the scheduler's memory.

    Its unique key makes catch-up safe: a period is planned once per zone, however many
    schedulers run and however often they wake.
    """

    __table_args__ = (
        UniqueConstraint("frequency", "period", "timezone", name="uq_digestrun_period_zone"),
    )

    id: int = Field(default=None, primary_key=True)
    frequency: str = Field(max_length=16)
    period: str = Field(max_length=32)
    timezone: str = Field(max_length=64)
    due_at: dt.datetime
    started_at: dt.datetime = Field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    recipients: int = Field(default=0)
    enqueued: int = Field(default=0)
    outcome: str = Field(default="running", max_length=16)  # running|done|skipped|failed
    note: str | None = Field(default=None, max_length=500)


# --- clicks (only when NEWSLETTER_CLICK_TRACKING is on) ------------------------------------


class ClickCount(SQLModel, table=True):
    """Clicks on an event's link in emails, per topic section and day (UTC): a count only,
    never who clicked or from where."""

    event_id: int = Field(foreign_key="event.id", primary_key=True, ondelete="CASCADE")
    # the section the link was in: a topic's slug, or "picks"
    topic: str = Field(primary_key=True, max_length=64)
    day: dt.date = Field(primary_key=True, index=True)
    count: int = Field(default=0)


class ReaderClick(SQLModel, table=True):
    """Clicks per delivery (so per reader) and event: kept only while an owner has turned
    per-reader counts on (the `clicks.per_reader` option)."""

    delivery_id: int = Field(foreign_key="delivery.id", primary_key=True, ondelete="CASCADE")
    event_id: int = Field(foreign_key="event.id", primary_key=True, ondelete="CASCADE", index=True)
    count: int = Field(default=0)
    last_at: dt.datetime = Field(default_factory=utcnow)


class Option(SQLModel, table=True):
    """A setting changed at run time from the admin UI (owners), by name."""

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="", max_length=500)
    updated_at: dt.datetime = Field(default_factory=utcnow)


# a stored object, or a plain result row of its columns: the worker reads rows, as
# building thousands of tracked objects per batch cost more than the query
DeliveryRow = Delivery | Row[Any]
SubscriberRow = Subscriber | Row[Any]
