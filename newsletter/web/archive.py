"""The public archive: editions that were actually sent, without personal data."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from sqlalchemy import exists, select
from sqlmodel import Session

from ..models import Delivery, Edition


def sent_editions(session: Session, *, topic: str | None, language: str | None) -> list[Edition]:
    query = (
        select(Edition)
        .where(Edition.format == "email", Edition.public.is_(True))
        .where(exists().where(Delivery.edition_id == Edition.id, Delivery.status == "sent"))
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
        .where(exists().where(Delivery.edition_id == Edition.id, Delivery.status == "sent"))
    ).scalars():
        return e
    return None


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
    return env.get_template(f"web/public/feed.{kind}.xml.j2").render(
        editions=editions,
        base=base,
        topic=topic,
        suffix=suffix,
        summary=_summary,
        updated=(editions[0].created_at if editions else None),
    )
