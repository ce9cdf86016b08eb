"""Click counts from the signed links in emails (rendering/click_links.py).

A click adds one to a daily count per event and digest section (one UPSERT); nothing
about the reader, their address or their IP is stored. Only while an owner has turned
per-reader counts on, a click whose link names its delivery also adds one to that
delivery's count for the event; turning the option off deletes those counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.core.models import (
    ClickCount,
    Delivery,
    Event,
    ReaderClick,
    Subscriber,
    Topic,
    utcnow,
)
from newsletter.core.options import CLICKS_PER_READER, get_flag, set_flag
from newsletter.ingest.events import localised
from newsletter.rendering.click_links import ClickToken, url_hash

MAX_DAYS = 366
TOP_EVENTS = 10
PICKS = "picks"


class ClickError(ValueError):
    """A click link that must not be followed (its event or URL is not the one signed)."""


def _insert(session: Session):
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def target(session: Session, token: ClickToken) -> str:
    """Where a verified token leads: its event's URL, only while it is the one signed."""
    url = session.execute(select(Event.url).where(Event.id == token.event_id)).scalar()
    if url is None:
        raise ClickError("the event is gone")
    if url_hash(url) != token.url_hash:
        raise ClickError("the link is not the event's")
    # stored URLs are checked on input; a row that escaped the check (written before it,
    # or by hand) must still not make a signed link lead to a script, a file or an app
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ClickError("the event's URL is not a web page")
    return url


def count_click(
    session: Session,
    token: ClickToken,
    *,
    delivery_id: int | None = None,
    day: dt.date | None = None,
) -> None:
    """One more click on the token's event in its section today (UTC); and on the
    delivery's count when it is given and per-reader counts are on."""
    day = day or utcnow().date()
    insert = _insert(session)
    stmt = insert(ClickCount).values(
        event_id=token.event_id, topic=token.topic[:64], day=day, count=1
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["event_id", "topic", "day"],
            set_={"count": ClickCount.count + 1},
        )
    )
    if delivery_id is None or not get_flag(session, CLICKS_PER_READER):
        return
    # a delivery kept without its reader (erased) counts for nobody
    still_theirs = select(Delivery.id).where(
        Delivery.id == delivery_id, Delivery.subscriber_id.is_not(None)
    )
    if session.execute(still_theirs).scalar() is None:
        return
    stmt = insert(ReaderClick).values(
        delivery_id=delivery_id, event_id=token.event_id, count=1, last_at=utcnow()
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=["delivery_id", "event_id"],
            set_={"count": ReaderClick.count + 1, "last_at": stmt.excluded.last_at},
        )
    )


def set_per_reader(session: Session, on: bool) -> int:
    """Turn per-reader counts on or off; off deletes them. Returns the rows deleted."""
    set_flag(session, CLICKS_PER_READER, on)
    if on:
        return 0
    return session.execute(delete(ReaderClick)).rowcount or 0  # type: ignore[attr-defined]


def per_reader(session: Session) -> bool:
    return get_flag(session, CLICKS_PER_READER)


def forget_reader(session: Session, subscriber_id: int) -> None:
    """Delete a reader's per-reader counts (their personal data is being erased)."""
    deliveries = select(Delivery.id).where(Delivery.subscriber_id == subscriber_id)
    session.execute(delete(ReaderClick).where(ReaderClick.delivery_id.in_(deliveries)))


def reader_clicks(session: Session, subscriber_id: int) -> int:
    """All clicks counted for one reader (0 when per-reader counts were never on)."""
    return int(
        session.execute(
            select(func.coalesce(func.sum(ReaderClick.count), 0))
            .join(Delivery, Delivery.id == ReaderClick.delivery_id)
            .where(Delivery.subscriber_id == subscriber_id)
        ).scalar_one()
    )


def event_clicks(session: Session, event_id: int) -> int:
    """All clicks counted on one event (every section and day): they go with the event."""
    return int(
        session.execute(
            select(func.coalesce(func.sum(ClickCount.count), 0)).where(
                ClickCount.event_id == event_id
            )
        ).scalar_one()
    )


@dataclass
class ReaderEventClicks:
    event_id: int
    title: str
    clicks: int
    last_at: dt.datetime


READER_EVENTS = 50


def reader_event_clicks(
    session: Session, subscriber_id: int, *, limit: int = READER_EVENTS
) -> list[ReaderEventClicks]:
    """One reader's per-reader counts by event (summed over their deliveries), most
    clicked first; empty when per-reader counts were never on for them."""
    total = func.sum(ReaderClick.count)
    theirs = (
        select(
            ReaderClick.event_id,
            total.label("clicks"),
            func.max(ReaderClick.last_at).label("last_at"),
        )
        .join(Delivery, Delivery.id == ReaderClick.delivery_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .group_by(ReaderClick.event_id)
        .order_by(total.desc(), ReaderClick.event_id.desc())
        .limit(limit)
        .subquery()
    )
    rows = session.execute(
        select(Event.id, Event.title, theirs.c.clicks, theirs.c.last_at)
        .join(theirs, theirs.c.event_id == Event.id)
        .order_by(theirs.c.clicks.desc(), Event.id.desc())
    ).all()
    return [
        ReaderEventClicks(event_id=i, title=localised(title, "en"), clicks=int(n), last_at=at)
        for i, title, n, at in rows
    ]


def top_readers(session: Session, *, limit: int = 50) -> list[tuple[str, int]]:
    """(address, clicks) of the readers with the most per-reader clicks (erased readers'
    are gone with them)."""
    total = func.sum(ReaderClick.count)
    rows = session.execute(
        select(Subscriber.email, total)
        .join(Delivery, Delivery.id == ReaderClick.delivery_id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .group_by(Subscriber.id, Subscriber.email)
        .order_by(total.desc(), Subscriber.email)
        .limit(limit)
    ).all()
    return [(email, int(n)) for email, n in rows]


@dataclass
class EventClicks:
    event_id: int
    title: str
    url: str
    clicks: int


@dataclass
class TopicClicks:
    topic: str
    name: str
    clicks: int


@dataclass
class ClickStats:
    days: int
    since: dt.date
    total: int = 0
    events: list[EventClicks] = field(default_factory=list)
    topics: list[TopicClicks] = field(default_factory=list)
    readers: int = 0  # readers with a per-reader count (0 unless that option is on)


def click_stats(session: Session, *, days: int = 30, today: dt.date | None = None) -> ClickStats:
    """The last `days` days (UTC, today included): the most clicked events, clicks per
    topic section, and the total."""
    if not 1 <= days <= MAX_DAYS:
        raise ClickError(f"days must be between 1 and {MAX_DAYS}")
    today = today or utcnow().date()
    since = today - dt.timedelta(days=days - 1)
    stats = ClickStats(days=days, since=since)
    in_range = ClickCount.day >= since
    total = func.sum(ClickCount.count)
    top = (
        select(ClickCount.event_id, total.label("clicks"))
        .where(in_range)
        .group_by(ClickCount.event_id)
        .order_by(total.desc(), ClickCount.event_id)
        .limit(TOP_EVENTS)
        .subquery()
    )
    rows = session.execute(
        select(Event.id, Event.title, Event.url, top.c.clicks)
        .join(top, top.c.event_id == Event.id)
        .order_by(top.c.clicks.desc(), Event.id)
    ).all()
    stats.events = [
        EventClicks(event_id=i, title=localised(title, "en"), url=url, clicks=int(n))
        for i, title, url, n in rows
    ]
    names = dict(session.execute(select(Topic.slug, Topic.name_en)).all())
    names.setdefault(PICKS, "Editor's picks")
    by_topic = session.execute(
        select(ClickCount.topic, total)
        .where(in_range)
        .group_by(ClickCount.topic)
        .order_by(total.desc(), ClickCount.topic)
    ).all()
    stats.topics = [TopicClicks(topic=t, name=names.get(t, t), clicks=int(n)) for t, n in by_topic]
    stats.total = sum(t.clicks for t in stats.topics)
    stats.readers = int(
        session.execute(
            select(func.count(func.distinct(Delivery.subscriber_id)))
            .select_from(ReaderClick)
            .join(Delivery, Delivery.id == ReaderClick.delivery_id)
            .where(ReaderClick.last_at >= dt.datetime.combine(since, dt.time(), dt.UTC))
        ).scalar_one()
    )
    return stats
