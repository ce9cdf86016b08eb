"""The public archive: one issue per (frequency, period, language) that went out, rendered
from the period's events and topics (never from a reader's email), and its feeds."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from sqlalchemy import exists, func, select
from sqlmodel import Session

from newsletter.core.models import Delivery, Edition, Topic
from newsletter.core.periods import DIGEST_FREQUENCIES, Period, PeriodError, parse_period
from newsletter.delivery.outbox import DeliveryStatus
from newsletter.ingest.takes import get_take
from newsletter.planning.readers import period_events
from newsletter.rendering.editions import SLOT
from newsletter.rendering.issues import issue_context, issue_html, issue_text
from newsletter.rendering.labels import page_labels
from newsletter.topics.catalogue import SLUG, list_topics
from newsletter.web.public.errors import PageError

# XML 1.0 allows no C0 control but tab, LF and CR, not even as &#1;, and no U+FFFE/FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
FEED_SIZE = 50


@dataclass
class PublishedIssue:
    """A (frequency, period) that went out, the languages it went out in, and when."""

    frequency: str
    period: Period
    languages: list[str]
    published_at: dt.datetime

    def url(self, language: str) -> str:
        return f"/archive/{self.frequency}/{self.period.key}?lang={language}"


def _sent_email_editions():
    return (
        select(Edition.frequency, Edition.period, Edition.language, Edition.created_at)
        .where(Edition.format == "email", Edition.public.is_(True))
        .where(Edition.frequency.in_(DIGEST_FREQUENCIES))
        .where(
            exists().where(
                Delivery.edition_id == Edition.id, Delivery.status == DeliveryStatus.SENT
            )
        )
    )


def published_issues(session: Session, *, limit: int = 500) -> list[PublishedIssue]:
    """Every (frequency, period) with a sent public digest, newest period first."""
    sent = _sent_email_editions().subquery()
    rows = session.execute(
        select(
            sent.c.frequency, sent.c.period, sent.c.language, func.min(sent.c.created_at)
        ).group_by(sent.c.frequency, sent.c.period, sent.c.language)
    ).all()
    issues: dict[tuple[str, str], PublishedIssue] = {}
    for frequency, key, language, first_sent in rows:
        try:
            period = parse_period(frequency, key)
        except PeriodError:
            continue  # a period stored before today's window: nothing to show
        issue = issues.setdefault(
            (frequency, key), PublishedIssue(frequency, period, [], first_sent)
        )
        issue.languages = sorted({*issue.languages, language})
        issue.published_at = min(issue.published_at, first_sent)
    rank = {f: i for i, f in enumerate(("monthly", "weekly", "daily"))}
    ordered = sorted(issues.values(), key=lambda i: (i.period.start, -rank[i.frequency]))
    return list(reversed(ordered))[:limit]


def published_issue(session: Session, frequency: str, key: str) -> PublishedIssue:
    """The issue a URL names, or a 404 saying what exists."""
    if frequency not in DIGEST_FREQUENCIES:
        raise PageError(404, "err.bad_frequency")
    try:
        period = parse_period(frequency, key)
    except PeriodError as exc:
        example = {"monthly": "2025-07", "weekly": "2025-W31"}.get(frequency, "2025-07-31")
        raise PageError(404, "err.bad_period", frequency=frequency, example=example) from exc
    rows = session.execute(
        _sent_email_editions().where(Edition.frequency == frequency, Edition.period == period.key)
    ).all()
    if not rows:
        raise PageError(404, "err.no_issue")
    return PublishedIssue(
        frequency,
        period,
        sorted({r.language for r in rows}),
        min(r.created_at for r in rows),
    )


def sent_edition_issue(session: Session, edition_id: int) -> tuple[str, str, str] | None:
    """(frequency, period, language) of a sent public edition: old `/archive/<id>` links."""
    row = session.execute(
        _sent_email_editions().where(Edition.id == edition_id).add_columns(Edition.id)
    ).first()
    return (row.frequency, row.period, row.language) if row else None


def build_issue(
    session: Session,
    issue: PublishedIssue,
    language: str,
    *,
    only_topic: str | None = None,
    topics: list[Topic] | None = None,
) -> dict[str, Any]:
    take = None
    if issue.frequency == "monthly":
        found = get_take(session=session, period=issue.period.key, language=language)
        take = found.body_markdown if found else None
    context = issue_context(
        period=issue.period,
        language=language,
        topics=topics if topics is not None else list_topics(session=session),
        events=period_events(session=session, period=issue.period),
        take_markdown=take,
        only_topic=only_topic,
    )
    context["published_at"] = issue.published_at
    context["url"] = issue.url(language)
    return context


def check_topic(session: Session, topic: str | None) -> str | None:
    """A feed's topic filter: a bad slug is a 400, an unknown one a 404, never a feed that
    cannot parse."""
    if topic is None or topic == "":
        return None
    if not SLUG.match(topic):
        raise PageError(400, "err.bad_topic")
    if session.execute(select(Topic.id).where(Topic.slug == topic)).first() is None:
        raise PageError(404, "err.unknown_topic", topic=topic)
    return topic


def feed_issues(
    session: Session, *, topic: str | None, language: str | None
) -> list[dict[str, Any]]:
    """The newest issues as feed items, one per language (or in `language` only); with a
    topic, only issues that have events of it, and only that topic's section."""
    topics = list_topics(session=session)
    items: list[dict[str, Any]] = []
    for issue in published_issues(session, limit=FEED_SIZE):
        for lang in [language] if language else issue.languages:
            context = build_issue(session, issue, lang, only_topic=topic, topics=topics)
            if topic and not context["event_count"]:
                continue
            items.append(context)
        if len(items) >= FEED_SIZE:
            break
    return items[:FEED_SIZE]


def xml_safe(document: str) -> str:
    """Drop the characters XML 1.0 forbids, so stored text cannot make the feed unreadable."""
    return _NOT_XML.sub("", document)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _feed_title(topic_name: str | None, language: str | None) -> str:
    brand = page_labels(language or "en")["brand"]
    return brand + (f" · {topic_name}" if topic_name else "")


def _query(topic: str | None, language: str | None) -> str:
    pairs = [f"topic={topic}"] if topic else []
    pairs += [f"lang={language}"] if language else []
    return ("?" + "&".join(pairs)) if pairs else ""


def json_feed(
    items: list[dict[str, Any]], base: str, topic: str | None, language: str | None, env
) -> dict[str, Any]:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    suffix = _query(topic, language)
    feed: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": _feed_title(topic, language),
        "home_page_url": f"{base}/archive{suffix}",
        "feed_url": f"{base}/archive/feed.json{suffix}",
        "description": page_labels(language or "en")["archive_text"],
        "authors": [{"name": page_labels(language or "en")["brand"], "url": f"{base}/"}],
        "items": [
            {
                "id": base + item["url"],
                "url": base + item["url"],
                "title": item["title"],
                "summary": item["summary"],
                "content_html": xml_safe(issue_html(env, item, base)),
                "content_text": issue_text(item).replace(SLOT, ""),
                "date_published": _as_utc(item["published_at"]).isoformat(),
                "language": item["lang"],
                "tags": [s["name"] for s in item["sections"]],
            }
            for item in items
        ],
    }
    if language:
        feed["language"] = language
    return feed


def xml_feed(
    kind: str,
    items: list[dict[str, Any]],
    base: str,
    topic: str | None,
    language: str | None,
    env: Environment,
) -> str:
    suffix = _query(topic, language)
    return xml_safe(
        env.get_template(f"web/public/feed.{kind}.xml.j2").render(
            items=[
                {**item, "html": issue_html(env, item, base), "when": _as_utc(item["published_at"])}
                for item in items
            ],
            base=base,
            title=_feed_title(topic, language),
            description=page_labels(language or "en")["archive_text"],
            language=language,
            suffix=suffix,
            updated=max((_as_utc(i["published_at"]) for i in items), default=None),
        )
    )
