"""The public archive: editions that were actually sent, without personal data."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException
from jinja2 import Environment
from sqlalchemy import exists, select
from sqlmodel import Session

from newsletter.core.models import Delivery, Edition, Topic
from newsletter.delivery.outbox import DeliveryStatus
from newsletter.topics.catalogue import SLUG

# XML 1.0 allows no C0 control but tab, LF and CR, not even as &#1;, and no U+FFFE/FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
FEED_SIZE = 50


def sent_editions(session: Session, *, topic: str | None, language: str | None) -> list[Edition]:
    query = (
        select(Edition)
        .where(Edition.format == "email", Edition.public.is_(True))
        .where(
            exists().where(
                Delivery.edition_id == Edition.id, Delivery.status == DeliveryStatus.SENT
            )
        )
        .order_by(Edition.created_at.desc(), Edition.id.desc())
        .limit(500)
    )
    if language:
        query = query.where(Edition.language == language)
    editions = list(session.execute(query).scalars())
    if topic:
        editions = [e for e in editions if topic in (e.topic_slugs or [])]
    return editions


def sent_edition(session: Session, edition_id: int) -> Edition | None:
    for e in session.execute(
        select(Edition)
        .where(Edition.id == edition_id, Edition.format == "email", Edition.public.is_(True))
        .where(
            exists().where(
                Delivery.edition_id == Edition.id, Delivery.status == DeliveryStatus.SENT
            )
        )
    ).scalars():
        return e
    return None


def feed_editions(session: Session, topic: str | None) -> list[Edition]:
    """The editions of a feed, filtered by a topic slug; a bad slug is a 400, an unknown one
    (no such topic now, and no edition carries it) a 404, never a feed that cannot parse."""
    if topic is None or topic == "":
        return sent_editions(session, topic=None, language=None)[:FEED_SIZE]
    if not SLUG.match(topic):
        raise HTTPException(400, "topic must be a topic slug such as open-source")
    editions = sent_editions(session, topic=topic, language=None)[:FEED_SIZE]
    if (
        not editions
        and session.execute(select(Topic.id).where(Topic.slug == topic)).first() is None
    ):
        raise HTTPException(404, f"no topic named {topic}")
    return editions


def xml_safe(document: str) -> str:
    """Drop the characters XML 1.0 forbids, so stored text cannot make the feed unreadable."""
    return _NOT_XML.sub("", document)


def _summary(e: Edition) -> str:
    return f"{e.frequency} · {e.period} · {e.language} · {', '.join(e.topic_slugs or [])}"


def json_feed(editions: list[Edition], base: str, topic: str | None) -> dict[str, Any]:
    suffix = f"?topic={topic}" if topic else ""
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "AI Industry Brief" + (f" · {topic}" if topic else ""),
        "home_page_url": f"{base}/archive{suffix}",
        "feed_url": f"{base}/archive/feed.json{suffix}",
        "items": [
            {
                "id": f"{base}/archive/{e.id}",
                "url": f"{base}/archive/{e.id}",
                "title": e.subject,
                "summary": _summary(e),
                "content_text": (e.body_text or "").replace("\x1e", ""),
                "date_published": e.created_at.isoformat(),
                "language": e.language,
                "tags": list(e.topic_slugs or []),
            }
            for e in editions
        ],
    }


def xml_feed(
    kind: str, editions: list[Edition], base: str, topic: str | None, env: Environment
) -> str:
    suffix = f"?topic={topic}" if topic else ""
    return xml_safe(
        env.get_template(f"web/public/feed.{kind}.xml.j2").render(
            editions=editions,
            base=base,
            topic=topic,
            suffix=suffix,
            summary=_summary,
            updated=(editions[0].created_at if editions else None),
        )
    )
