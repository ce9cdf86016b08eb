"""Topics and their matching rules: the defaults we ship and admin CRUD."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.core.models import EventTopic, Subscription, Topic, WebhookTopic, utcnow
from newsletter.core.text import one_line
from newsletter.topics.matching import TopicRules, validate_rules

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class TopicError(ValueError):
    """A topic request that cannot be carried out, with the reason."""


DEFAULT_TOPICS: list[dict[str, Any]] = [
    {
        "slug": "governance",
        "name_en": "Governance & policy",
        "name_zh": "治理与政策",
        "description": "Laws, regulation, export controls, standards and global AI governance.",
        "description_zh": "法律法规、监管、出口管制、标准与全球 AI 治理。",
        "rules": {
            "include": [
                "法案",
                "监管",
                "治理",
                "法规",
                "立法",
                "合规",
                "政策",
                "倡议",
                "伦理",
                "指引",
                "指南",
                "管制",
                "禁令",
                "限售",
                "行动计划",
                "牌照",
                "战略",
                "补贴",
                "regulation",
                "regulat*",
                "law",
                "laws",
                "legislation",
                "lawmakers",
                "policy",
                "policies",
                "governance",
                "compliance",
                "compliant",
                "guideline*",
                "guidance",
                "export control*",
                "ban",
                "banned",
                "sanction*",
                "code of practice",
                "ethics",
                "ethical",
                "oversight",
                "treaty",
                "strategy",
                "action plan",
                "restrict*",
                "subsid*",
            ],
            "exclude": [],
            # a named law: "AI Act", "CHIPS and Science Act", not "act fast" or "Act-Two"
            "regex": r"\b(?:[A-Z][A-Za-z]*\s+)+Act\b(?!-)",
        },
    },
    {
        "slug": "capital",
        "name_en": "Capital & deals",
        "name_zh": "资本与交易",
        "description": "Funding rounds, investment, acquisitions, valuations and AI funds.",
        "description_zh": "融资、投资、并购、估值与 AI 基金。",
        "rules": {
            "include": [
                "融资",
                "注资",
                "估值",
                "投资",
                "收购",
                "并购",
                "风投",
                "风险投资",
                "领投",
                "募资",
                "首次公开募股",
                "亿元项目",
                "funding",
                "raises",
                "raised",
                "stake",
                "invest",
                "invests",
                "investing",
                "investment*",
                "investor*",
                "acquire*",
                "acquisition*",
                "acquihire",
                "valuation",
                "valued at",
                "venture capital",
                "VC",
                "fund",
                "funds",
                "IPO",
                "capex",
                "capital expenditure",
                "merger",
                "buys",
                "buyout",
            ],
            "exclude": ["raised concerns", "raises concerns", "raises questions"],
            # 基金 is a fund, 基金会 a foundation
            "regex": "基金(?!会)",
        },
    },
    {
        "slug": "hardware",
        "name_en": "Chips & hardware",
        "name_zh": "芯片与硬件",
        "description": "Chips, accelerators, compute and data centres, AI devices and robots.",
        "description_zh": "芯片、加速器、算力与数据中心、AI 终端与机器人。",
        "rules": {
            "include": [
                "芯片",
                "GPU",
                "算力",
                "数据中心",
                "服务器",
                "半导体",
                "硬件",
                "眼镜",
                "端侧",
                "车端",
                "机器人",
                "加速器",
                "英伟达",
                "光刻",
                "chip",
                "chips",
                "chipmaker*",
                "GPU*",
                "accelerator*",
                "semiconductor*",
                "compute",
                "data center*",
                "data centre*",
                "datacenter*",
                "hardware",
                "device",
                "devices",
                "glasses",
                "robot*",
                "humanoid*",
                "TPU*",
                "Nvidia",
                "H20",
                "wafer*",
                "server*",
                "supercomput*",
                "on-device",
            ],
            "exclude": ["chip in", "chipped in", "chips in", "blue-chip", "potato chip*"],
            "regex": None,
        },
    },
    {
        "slug": "open-source",
        "name_en": "Open source",
        "name_zh": "开源",
        "description": "Open-sourced models, open weights, and open-source initiatives.",
        "description_zh": "开源模型、开放权重与开源倡议。",
        "rules": {
            "include": [
                "开源",
                "开放权重",
                "权重",
                "开放模型",
                "open-source",
                "open-sourced",
                "open-sources",
                "open-sourcing",
                "open-weight*",
                "open model*",
                "Apache 2.0",
                "MIT license",
                "Hugging Face",
            ],
            "exclude": [],
            "regex": None,
        },
    },
]


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
