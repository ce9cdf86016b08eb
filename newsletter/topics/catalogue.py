"""Topics and their matching rules: the defaults we ship and admin CRUD."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.core.models import EventTopic, Subscription, Topic, WebhookTopic, utcnow
from newsletter.core.text import one_line
from newsletter.topics.defaults import DEFAULT_TOPICS
from newsletter.topics.matching import TopicRules, validate_rules

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class TopicError(ValueError):
    """A topic request that cannot be carried out, with the reason."""


class TopicIn(BaseModel):
    """What an admin gives to create a topic."""

    slug: str
    name_en: str = Field(min_length=1, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    description_zh: str = Field(default="", max_length=2000)
    rules: dict[str, Any] = Field(default_factory=dict)

    @field_validator("slug")
    @classmethod
    def _slug(cls, v: str) -> str:
        v = v.strip()
        if not SLUG.match(v):
            raise ValueError("slug must be lower-case letters, digits and hyphens (max 64)")
        return v

    @field_validator("name_en", "name_zh", "description", "description_zh")
    @classmethod
    def _text(cls, v: str) -> str:
        return one_line(v)

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, Any]) -> dict[str, Any]:
        return validate_rules(v)


class TopicUpdate(BaseModel):
    """Fields an admin may change; rule lists replace the old ones when given."""

    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    description_zh: str | None = Field(default=None, max_length=2000)
    rules: dict[str, Any] | None = None

    @field_validator("name_en", "name_zh", "description", "description_zh")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        return one_line(v) if v is not None else None

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return validate_rules(v) if v is not None else None


def rules_summary(rules: dict[str, Any], limit: int = 400) -> str:
    """A topic's rules in one line for the audit log: what an edit left behind."""
    parts = []
    for key in ("include", "exclude", "regex"):
        value = rules.get(key)
        if value:
            words = value if isinstance(value, list) else [value]
            parts.append(f"{key}: " + ", ".join(str(w) for w in words))
    text = "; ".join(parts) or "no rules"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def list_topics(*, session: Session) -> list[Topic]:
    return list(session.exec(select(Topic).order_by(Topic.position, Topic.slug)))


def get_topic(*, session: Session, slug: str) -> Topic:
    topic = session.exec(select(Topic).where(Topic.slug == slug)).first()
    if topic is None:
        raise TopicError(f"no topic {slug!r}")
    return topic


def topics_by_slug(*, session: Session, slugs: list[str]) -> list[Topic]:
    """Resolve slugs, failing with every unknown one named."""
    wanted = list(dict.fromkeys(s.strip() for s in slugs if s.strip()))
    found = {t.slug: t for t in session.exec(select(Topic).where(Topic.slug.in_(wanted)))}
    missing = [s for s in wanted if s not in found]
    if missing:
        known = ", ".join(t.slug for t in list_topics(session=session))
        raise TopicError(f"unknown topic(s): {', '.join(missing)} (known: {known})")
    return [found[s] for s in wanted]


def create_topic(*, session: Session, topic_in: TopicIn) -> Topic:
    if session.exec(select(Topic).where(Topic.slug == topic_in.slug)).first():
        raise TopicError(f"topic {topic_in.slug!r} already exists")
    position = session.exec(select(func.coalesce(func.max(Topic.position), 0))).one() + 1
    topic = Topic(**topic_in.model_dump(), position=position)
    session.add(topic)
    session.flush()
    return topic


def update_topic(*, session: Session, topic: Topic, topic_in: TopicUpdate) -> Topic:
    for key, value in topic_in.model_dump(exclude_none=True).items():
        setattr(topic, key, value)
    topic.updated_at = utcnow()
    session.add(topic)
    session.flush()
    return topic


def subscriber_count(*, session: Session, topic: Topic) -> tuple[int, int]:
    """How many subscribers and webhook endpoints follow the topic."""
    subs = session.exec(
        select(func.count()).select_from(Subscription).where(Subscription.topic_id == topic.id)
    ).one()
    hooks = session.exec(
        select(func.count()).select_from(WebhookTopic).where(WebhookTopic.topic_id == topic.id)
    ).one()
    return subs, hooks


@dataclass(frozen=True)
class RemovalImpact:
    """What removing a topic does: who follows it and which events have it, and how
    many of each have nothing else (such a reader or webhook gets no digests or alerts
    until it follows another topic; such an event is in no digest until a retag or an
    admin gives it a topic)."""

    readers: int
    webhooks: int
    events: int
    readers_only: int
    webhooks_only: int
    events_only: int


def removal_impact(*, session: Session, topic: Topic) -> RemovalImpact:
    def counts(model, owner) -> tuple[int, int]:
        mine = select(owner).where(model.topic_id == topic.id)
        total = session.exec(select(func.count()).select_from(mine.subquery())).one()
        if not total:
            return 0, 0
        lonely = (
            select(owner).where(owner.in_(mine)).group_by(owner).having(func.count() == 1)
        ).subquery()
        return total, session.exec(select(func.count()).select_from(lonely)).one()

    readers, readers_only = counts(Subscription, Subscription.subscriber_id)
    hooks, hooks_only = counts(WebhookTopic, WebhookTopic.endpoint_id)
    events, events_only = counts(EventTopic, EventTopic.event_id)
    return RemovalImpact(readers, hooks, events, readers_only, hooks_only, events_only)


def delete_topic(*, session: Session, topic: Topic, force: bool = False) -> None:
    subs, hooks = subscriber_count(session=session, topic=topic)
    if (subs or hooks) and not force:
        raise TopicError(
            f"topic {topic.slug!r} is followed by {subs} subscriber(s) and {hooks} webhook(s); "
            "use --force to remove it and drop it from their subscriptions"
        )
    for model, column in (
        (Subscription, Subscription.topic_id),
        (WebhookTopic, WebhookTopic.topic_id),
        (EventTopic, EventTopic.topic_id),
    ):
        for row in session.exec(select(model).where(column == topic.id)):
            session.delete(row)
    session.delete(topic)
    session.flush()


def ensure_default_topics(*, session: Session) -> int:
    """Create the shipped topics that are missing; never touches edited ones."""
    existing = {t.slug for t in list_topics(session=session)}
    created = 0
    for spec in DEFAULT_TOPICS:
        if spec["slug"] not in existing:
            create_topic(session=session, topic_in=TopicIn(**spec))
            created += 1
    return created


def compiled_rules(*, session: Session) -> list[TopicRules]:
    return [TopicRules.compile(t.slug, t.rules) for t in list_topics(session=session)]


def event_counts(*, session: Session) -> dict[int, int]:
    """How many events each topic has, by topic id (topics with none are absent)."""
    return dict(
        session.exec(select(EventTopic.topic_id, func.count()).group_by(EventTopic.topic_id)).all()
    )
