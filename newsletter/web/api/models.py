"""Request and response models of the admin API; responses are the `...Public` ones.

Request models extend the domain's input models (TopicIn, EventIn, SubscriberIn) so
their validation runs unchanged; the extensions only make the schema precise and add
the column limits the database enforces (PostgreSQL refuses longer values).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from typing_extensions import TypedDict

from newsletter.audience.subscribers import SubscriberIn
from newsletter.core import platforms
from newsletter.core.periods import parse_period
from newsletter.delivery.outbox import KINDS, MAX_ID
from newsletter.ingest.events import EventIn
from newsletter.topics.catalogue import SLUG, TopicIn, TopicUpdate
from newsletter.topics.matching import (
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_REGEX_LENGTH,
    validate_rules,
)

SLUG_PATTERN = SLUG.pattern
MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
PERIOD_PATTERN = r"^\d{4}-(\d{2}|W\d{2}|\d{2}-\d{2})$"
WEBHOOK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
REGION_PATTERN = r"^[A-Za-z][A-Za-z0-9-]{1,31}$"
LANGUAGE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,4})?$"  # fits the 8-character column
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
HTTP_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+([/?#]\S*)?$"
NOT_BLANK = r"\S"

# derived from the platform registry: a new platform appears here by itself
Platform = Literal[platforms.NAMES]  # type: ignore[valid-type]
Mode = Literal["instant", "daily", "weekly", "monthly"]
DigestFrequency = Literal["daily", "weekly", "monthly"]
Language = Literal["zh", "en"]
Slug = Annotated[str, Field(max_length=64, pattern=SLUG_PATTERN)]
Timezone = Annotated[str, Field(max_length=64, examples=["Asia/Shanghai"])]


class Page(BaseModel):
    count: int = Field(description="How many items there are in all (before limit/offset).")


# --- topics -----------------------------------------------------------------------------------


def _compiles(regex: str | None) -> str | None:
    """The regex compiles (re.compile raises OverflowError, not re.error, for a{9999999999})."""
    if regex:
        try:
            re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"invalid regex {regex!r}: {exc}") from exc
    return regex


# the limits of matching.validate_rules, also in the schema (and checked before any work)
Keywords = Annotated[
    list[Annotated[str, Field(max_length=MAX_KEYWORD_LENGTH)]], Field(max_length=MAX_KEYWORDS)
]


class RulesIn(TypedDict, total=False):
    """Topic rules: keywords that include, keywords that veto, and an optional regex."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    include: Keywords
    exclude: Keywords
    regex: Annotated[str | None, Field(max_length=MAX_REGEX_LENGTH), AfterValidator(_compiles)]


class RulesPublic(BaseModel):
    include: list[str] = []
    exclude: list[str] = []
    regex: str | None = None


class TopicCreate(TopicIn):
    slug: Slug
    name_en: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    name_zh: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    rules: RulesIn = Field(default_factory=dict)  # type: ignore[assignment]


class TopicChange(TopicUpdate):
    """Only the fields given change; a rules object replaces the old rules."""

    name_en: str | None = Field(default=None, min_length=1, max_length=200, pattern=NOT_BLANK)
    name_zh: str | None = Field(default=None, min_length=1, max_length=200, pattern=NOT_BLANK)
    rules: RulesIn | None = None  # type: ignore[assignment]


class TopicPublic(BaseModel):
    id: int
    slug: str
    name_en: str
    name_zh: str
    description: str
    description_zh: str
    rules: RulesPublic
    position: int
    events: int = Field(description="Events tagged with the topic.")
    subscribers: int = Field(description="Subscribers following the topic.")
    webhooks: int = Field(description="Webhook endpoints following the topic.")
    created_at: dt.datetime
    updated_at: dt.datetime


class TopicsPublic(Page):
    data: list[TopicPublic]


class RulesCheckIn(BaseModel):
    """Rules to try against the stored events before saving them."""

    rules: RulesIn
    slug: Slug | None = Field(
        default=None, description="Compare with this topic's current tagging."
    )
    month: str | None = Field(default=None, pattern=MONTH_PATTERN, examples=["2025-07"])
    region: str | None = Field(default=None, pattern=REGION_PATTERN)
    limit: int = Field(default=100, ge=1, le=1000, description="Most events listed.")

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: RulesIn) -> RulesIn:
        return validate_rules(dict(v))  # type: ignore[return-value]


class RuleMatchPublic(BaseModel):
    id: int
    title: dict[str, str]
    occurred_on: dt.date
    reason: str = Field(description='Why the rules match, e.g. keyword "chip*" in title.en.')
    tagged: bool | None = Field(
        default=None, description="Whether the event has the topic now (when a slug is given)."
    )
    new: bool | None = Field(
        default=None,
        description="Whether retagging would add the topic (when a slug is given); never for "
        "an event whose topics were chosen by hand.",
    )


class RulesCheckPublic(BaseModel):
    examined: int
    matched: int
    events: list[RuleMatchPublic]
    dropped: list[int] = Field(
        default=[], description="Events tagged by the current rules that these would not match."
    )


class SuggestionPublic(BaseModel):
    term: str
    events: int = Field(description="Hand-picked events the rules miss that contain the term.")
    elsewhere: int = Field(description="Stored events outside the topic that contain it too.")


class SuggestionsPublic(BaseModel):
    manual: int = Field(description="Events an admin put in the topic by hand.")
    missed: int = Field(description="Of those, events the topic's rules do not match.")
    data: list[SuggestionPublic]


# --- events -----------------------------------------------------------------------------------


class EventLimits(EventIn):
    """EventIn within the lengths of the event table's columns."""

    url: str = Field(max_length=2000)
    language: str = Field(default="en", max_length=8)


LanguageKey = Annotated[str, Field(pattern=LANGUAGE_PATTERN)]


class EventCreate(EventLimits):
    title: dict[LanguageKey, str] | str = Field(  # type: ignore[assignment]
        description="A string in the event's language, or {language: text}; one line."
    )
    summary: dict[LanguageKey, str] | str = Field(default_factory=dict)  # type: ignore[assignment]
    url: str = Field(max_length=2000, pattern=HTTP_URL)
    region: str = Field(default="global", pattern=REGION_PATTERN, examples=["global", "china"])
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)
    topics: list[Slug] | None = Field(
        default=None, max_length=50, description="Topic slugs chosen by hand (override rules)."
    )


class EventChange(BaseModel):
    """What an admin may change on a stored event (more to come; text is re-imported)."""

    model_config = ConfigDict(extra="forbid")

    pinned: bool | None = Field(
        default=None,
        description="True puts the event in the monthly digest's editor's picks, for every "
        "reader whatever their topics; importance 5 events are there anyway.",
    )
    importance: int | None = Field(default=None, ge=1, le=5)


class TopicMatchPublic(BaseModel):
    slug: str
    name_en: str
    name_zh: str
    source: str = Field(description="rule or manual")
    reason: str


class EventPublic(BaseModel):
    id: int
    title: dict[str, str]
    summary: dict[str, str]
    url: str
    source: str
    sources: dict[str, str] = Field(description="The source's name per language.")
    region: str
    occurred_on: dt.date
    language: str
    importance: int | None
    pinned: bool = Field(description="In the monthly editor's picks for every reader.")
    topics: list[str]
    manual_topics: bool
    created_at: dt.datetime | None


class EventDetailPublic(EventPublic):
    matches: list[TopicMatchPublic] = Field(description="Each topic and why the event has it.")


class EventCreatedPublic(EventDetailPublic):
    alerts_enqueued: int


class EventsPublic(Page):
    data: list[EventPublic]
    next: str | None = Field(
        default=None, description="Pass as `before` for the next page; null on the last one."
    )


class ImportProblemPublic(BaseModel):
    where: str = Field(examples=["line 3", "record 2"])
    reason: str


class ImportReportPublic(BaseModel):
    format: str
    new: int
    duplicate: int
    invalid: list[ImportProblemPublic]
    new_ids: list[int]
    alerts_enqueued: int


class RetagPublic(BaseModel):
    examined: int
    changed: int
    kept_manual: int


# --- subscribers ------------------------------------------------------------------------------


class SubscriberCreate(SubscriberIn):
    email: str = Field(max_length=320, json_schema_extra={"format": "email"})
    language: Language = "en"
    timezone: Timezone = "UTC"
    frequency: Mode = "monthly"
    topics: list[Slug] = Field(min_length=1, max_length=50)


class SubscriberChange(BaseModel):
    """Only the fields given change; topics replace the old ones."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    language: Language | None = None
    timezone: Timezone | None = None
    frequency: Mode | None = None
    topics: list[Slug] | None = Field(default=None, min_length=1, max_length=50)


class SubscriberPublic(BaseModel):
    id: int
    email: str
    name: str
    language: str
    timezone: str
    frequency: str
    status: str
    source: str
    topics: list[str]
    created_at: dt.datetime
    confirmed_at: dt.datetime | None
    unsubscribed_at: dt.datetime | None
    bounce_score: float = Field(
        description="Hard bounce 1, soft 0.5, at most one increment a day; restarts after "
        "NEWSLETTER_BOUNCE_DECAY_DAYS without bounces."
    )
    bounce_scored_at: dt.datetime | None = Field(description="The last increment.")
    disabled_reason: str | None = Field(
        description="Why the reader was disabled (status `disabled`): bounces or a complaint."
    )


class SubscribersPublic(Page):
    data: list[SubscriberPublic]
    next_after: int | None = Field(
        default=None,
        description="Pass as `after` for the next page (keyset: as fast on page 1000 as on "
        "page 1); null on the last page.",
    )


class SuppressionPublic(BaseModel):
    email: str
    suppressed: bool
    reason: str | None = Field(
        description="unsubscribed, removed, bounced, complaint or admin; for a lift, the "
        "reason the address had."
    )


class ConfirmationPublic(BaseModel):
    queued: bool = Field(
        description="False when one was queued for this reader in the last minute already."
    )


# --- webhooks ---------------------------------------------------------------------------------


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=WEBHOOK_NAME_PATTERN)
    platform: Platform
    url: str = Field(
        max_length=2000, pattern=HTTP_URL, description="https, resolving to public addresses only."
    )
    secret: str | None = Field(
        default=None,
        max_length=500,
        pattern=NO_CONTROL,
        description=platforms.secret_help(),
    )
    topics: list[Slug] = Field(min_length=1, max_length=50)
    mode: Mode = "instant"
    language: Language = "en"
    timezone: Timezone = "UTC"


class WebhookChange(BaseModel):
    """Only the fields given change; topics replace the old ones."""

    model_config = ConfigDict(extra="forbid")

    platform: Platform | None = Field(
        default=None,
        description="A new platform must take the endpoint's secret (or a new one) as it is.",
    )
    url: str | None = Field(default=None, max_length=2000, pattern=HTTP_URL)
    secret: str | None = Field(default=None, max_length=500, pattern=NO_CONTROL)
    topics: list[Slug] | None = Field(default=None, min_length=1, max_length=50)
    mode: Mode | None = None
    language: Language | None = None
    timezone: Timezone | None = None


class WebhookPublic(BaseModel):
    id: int
    name: str
    platform: str
    url: str = Field(description="Masked: scheme and host, the rest shortened.")
    secret: str = Field(description="Masked; `$NAME` when read from an environment variable.")
    topics: list[str]
    mode: str
    language: str
    timezone: str
    enabled: bool
    disabled_reason: str | None
    consecutive_failures: int
    first_failure_at: dt.datetime | None
    last_success_at: dt.datetime | None = Field(
        description="When its latest message was delivered (null: none yet)."
    )
    queued: int = Field(description="Messages waiting to be sent (removing it cancels them).")
    held: int = Field(
        description="Messages held while it is disabled: queued again when it is enabled "
        "(removing it cancels them)."
    )
    source: str
    created_at: dt.datetime
    generated_secret: str | None = Field(
        default=None,
        description="Only in the answer to creating a generic endpoint without a secret: the "
        "generated `whsec_` secret, shown this once for the receiver to verify signatures.",
    )


class WebhooksPublic(Page):
    data: list[WebhookPublic]


class WebhookDisableIn(BaseModel):
    reason: str = Field(default="disabled by an admin", min_length=1, max_length=500)


class WebhookEnabledPublic(BaseModel):
    webhook: WebhookPublic
    requeued: int = Field(description="Held messages queued again.")


class WebhookTestPublic(BaseModel):
    answer: str = Field(description="What the platform answered.")


# --- sharp takes, feeds -----------------------------------------------------------------------


class TakeIn(BaseModel):
    body_markdown: str = Field(min_length=1, max_length=20_000)


class TakePublic(BaseModel):
    period: str
    language: str
    body_markdown: str
    html: str = Field(description="The Markdown rendered as in the digest (raw HTML is escaped).")
    updated_at: dt.datetime
    state: Literal["draft", "approved"] = Field(
        description="draft until an editor approves it; saving a changed text makes it a draft."
    )
    approved_at: dt.datetime | None = None
    approved_by: str | None = Field(default=None, description="The approving token's name.")


class FeedCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, pattern=HTTP_URL)
    name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f\x7f]+$"
    )
    region: str = Field(default="global", pattern=REGION_PATTERN)
    language: str = Field(default="en", pattern=LANGUAGE_PATTERN)


class FeedChange(BaseModel):
    """Only the fields given change; a new URL is checked like a new feed's."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=2000, pattern=HTTP_URL)
    name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[^/\x00-\x1f\x7f]+$"
    )
    region: str | None = Field(default=None, pattern=REGION_PATTERN)
    language: str | None = Field(default=None, pattern=LANGUAGE_PATTERN)


class FeedPublic(BaseModel):
    id: int
    name: str
    url: str
    region: str
    language: str
    last_polled_at: dt.datetime | None
    last_ok_at: dt.datetime | None
    last_error: str | None
    last_new_events: int | None = Field(
        description="New events the last poll brought (null before the first poll)"
    )
    consecutive_failures: int
    next_poll_at: dt.datetime | None = Field(
        description="When the feed is due; the scheduler polls due feeds every minute "
        "(null: at its next check)"
    )
    created_at: dt.datetime


class FeedsPublic(Page):
    data: list[FeedPublic]


class PollResultPublic(BaseModel):
    feed: str
    status: Literal["new", "not-modified", "error"]
    new_ids: list[int]
    duplicates: int
    invalid: int
    error: str | None


# --- digests, outbox, statistics --------------------------------------------------------------


class DigestPreviewPublic(BaseModel):
    email: str
    subject: str
    html: str
    text: str
    event_count: int


class DigestSendIn(BaseModel):
    frequency: DigestFrequency
    period: str = Field(
        pattern=PERIOD_PATTERN,
        description="2025-07 (monthly), 2025-W31 (weekly), 2025-07-31 (daily)",
    )
    dry_run: bool = False

    @field_validator("period")
    @classmethod
    def _period(cls, v: str, info: ValidationInfo) -> str:
        if "frequency" in info.data:
            parse_period(info.data["frequency"], v)
        return v


class DigestProofIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frequency: DigestFrequency = "monthly"
    period: str = Field(
        pattern=PERIOD_PATTERN,
        description="2025-07 (monthly), 2025-W31 (weekly), 2025-07-31 (daily)",
    )
    to: list[Annotated[str, Field(max_length=320)]] = Field(
        min_length=1,
        max_length=10,
        description="The editors' addresses the proof goes to (and nowhere else).",
    )
    email: str | None = Field(
        default=None,
        max_length=320,
        description="Whose digest: this subscriber's exactly. Else `topics` and `language`.",
    )
    topics: list[Slug] | None = Field(
        default=None, max_length=50, description="Without `email`: these topics (empty: all)."
    )
    language: Language = "en"

    @field_validator("period")
    @classmethod
    def _period(cls, v: str, info: ValidationInfo) -> str:
        if "frequency" in info.data:
            parse_period(info.data["frequency"], v)
        return v


class DigestProofPublic(BaseModel):
    to: list[str]
    subject: str = Field(description='The subject as sent, starting with "[Proof]".')
    event_count: int
    view: str = Field(description="Whose digest the proof shows.")


class DigestSendPublic(BaseModel):
    frequency: str
    period: str
    dry_run: bool
    recipients: int = Field(description="Readers with events in the period.")
    enqueued: int = Field(description="Emails queued by this call.")
    already_enqueued: int
    skipped_empty: int = Field(description="Readers with no events in the period.")
    endpoints: int = Field(description="Webhook endpoints planned.")
    endpoint_rows: int = Field(description="Webhook messages queued by this call.")
    segments: dict[str, int] = Field(description="Segment key -> event count.")


class OutboxErrorPublic(BaseModel):
    delivery_id: int
    key: str
    outcome: str
    error: str | None


class OutboxPublic(BaseModel):
    channels: dict[str, dict[str, int]] = Field(description="{channel: {status: count}}")
    totals: dict[str, int] = Field(description="{status: count} over every channel")
    last_errors: list[OutboxErrorPublic]


class DeliveryStatPublic(BaseModel):
    day: dt.date = Field(description="UTC day.")
    channel: str
    status: Literal["sent", "failed"]
    count: int


DeliveryKind = Literal[KINDS]  # type: ignore[valid-type]

RecipientName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=320,
        pattern=NO_CONTROL,
        description="A reader's address, or a webhook endpoint's name.",
    ),
]


class OutboxRetryIn(BaseModel):
    """Which failed deliveries to queue again; the filters combine (all must match)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default=[], max_length=10_000, description="Failed deliveries by id."
    )
    endpoint: str | None = Field(
        default=None,
        pattern=WEBHOOK_NAME_PATTERN,
        description="Only deliveries to this webhook endpoint (its name).",
    )
    since: str | None = Field(
        default=None,
        max_length=64,
        description="Only deliveries whose last try was at or after this: an ISO date or "
        "time (UTC unless an offset is given), or a duration back from now such as "
        "`90m`, `12h`, `7d`.",
        examples=["12h", "2025-07-01"],
    )
    kinds: list[DeliveryKind] = Field(default=[], max_length=10, description="Only these kinds.")
    all: bool = Field(
        default=False, description="Every failed delivery; needed when no filter is given."
    )
    channel: str | None = Field(
        default=None, max_length=16, pattern=r"^[a-z]{1,16}$", description="Only this channel."
    )
    recipient: RecipientName | None = None
    created_from: dt.date | None = Field(default=None, description="Created on or after (UTC).")
    created_to: dt.date | None = Field(default=None, description="Created on or before (UTC).")


class OutboxFilterIn(BaseModel):
    """Which deliveries: every given filter must match."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(default=None, max_length=16, pattern=r"^[a-z]{1,16}$")
    recipient: RecipientName | None = None
    kinds: list[DeliveryKind] = Field(default=[], max_length=10, description="Only these kinds.")
    created_from: dt.date | None = Field(default=None, description="Created on or after (UTC).")
    created_to: dt.date | None = Field(default=None, description="Created on or before (UTC).")


class OutboxCancelIn(OutboxFilterIn):
    """Which waiting (queued or held) deliveries to cancel; the filters combine."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default=[], max_length=10_000, description="Deliveries by id."
    )


class OutboxCancelPublic(BaseModel):
    cancelled: int = Field(description="Queued or held deliveries cancelled.")


class DeliveryPublic(BaseModel):
    id: int
    recipient: str = Field(
        description="The reader's address or the team endpoint's name (`removed ...` once "
        "they were deleted)."
    )
    recipient_kind: Literal["subscriber", "endpoint", "removed"]
    carries: str = Field(
        description="What it carries, e.g. `July 2025 monthly digest (zh)`, `alert: <title>`."
    )
    channel: str
    kind: str
    period: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    sent_at: dt.datetime | None


class AttemptPublic(BaseModel):
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str = Field(description="sent, temporary or permanent.")
    status_code: int | None = Field(description="SMTP reply or HTTP status code.")
    error: str | None
    worker: str | None


class DeliveryDetailPublic(DeliveryPublic):
    attempts_made: list[AttemptPublic] = Field(description="Every try, oldest first.")


class DeliveriesPublic(BaseModel):
    data: list[DeliveryPublic]
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class OutboxRetryPublic(BaseModel):
    requeued: int = Field(description="Failed deliveries queued again.")
    held: int = Field(
        description="Of those, how many wait for their disabled webhook endpoint to be enabled."
    )


class BouncePublic(BaseModel):
    received_at: dt.datetime
    kind: str = Field(
        description="hard, soft, complaint, unsubscribe, delayed or unknown; enabled when an "
        "admin re-enabled the reader."
    )
    email: str | None = Field(description="The reader it was about, when one was found.")
    delivery_id: int | None
    diagnostic: str = Field(description="Status and diagnostic code the receiver reported.")
    action: str = Field(description="What was done, or why nothing was.")
    source: str = Field(description="import, smtp or imap; cli or api for enabled.")


class EnableRequest(BaseModel):
    force: bool = Field(
        default=False, description="Also a reader who reported our mail as spam (they asked)."
    )


class BouncesPublic(BaseModel):
    data: list[BouncePublic]


class AuditEntryPublic(BaseModel):
    id: int
    at: dt.datetime
    token_name: str = Field(description="The admin token that made the change.")
    action: str = Field(description="e.g. subscriber.suppressed, outbox.retry.")
    target: str
    detail: str


class AuditPublic(BaseModel):
    data: list[AuditEntryPublic]
    next_before: int | None
