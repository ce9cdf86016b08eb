"""Finding stored events for the admin list and the API: a search over titles and
summaries in every language, filters (month, topic, region, source), newest first, a
page at a time.

Pages are keyset pages: a cursor names the last event of a page (its day and id), and
the next page starts after it, so page 2,000 costs what page 1 costs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select, text, tuple_
from sqlmodel import Session

from newsletter.core.models import Event, EventTopic, Topic
from newsletter.ingest.events import month_bounds
from newsletter.topics.catalogue import topics_by_slug

PAGE_SIZE = 50
MAX_TERMS = 8
MAX_QUERY = 200
#: what a region code means to an editor
REGION_NAMES = {"global": "International", "china": "China"}
_CURSOR = re.compile(r"(\d{4}-\d{2}-\d{2})_(\d{1,10})")
MAX_ID = 2**31 - 1
# the same value, as an expression no index gives in order
_OFF_INDEX = {"sqlite": "+%s", "postgresql": "%s + 0"}


class SearchError(ValueError):
    """A filter or cursor that cannot be used, said in words an editor can act on."""


@dataclass(frozen=True)
class EventFilter:
    q: str = ""
    month: str = ""
    topic: str = ""
    region: str = ""
    source: str = ""

    def as_params(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    @property
    def terms(self) -> list[str]:
        return [t for t in self.q.casefold().split() if t][:MAX_TERMS]


@dataclass
class EventPage:
    rows: list[Event]
    next: str | None  # the cursor of the following page (None on the last one)


def cursor_of(event: Event) -> str:
    return f"{event.occurred_on.isoformat()}_{event.id}"


def parse_cursor(value: str) -> tuple[dt.date, int]:
    m = _CURSOR.fullmatch(value.strip())
    try:
        if not m or not 0 < int(m.group(2)) <= MAX_ID:
            raise ValueError
        return dt.date.fromisoformat(m.group(1)), int(m.group(2))
    except ValueError:
        raise SearchError(
            f"the page cursor {value[:40]!r} is not one this list gave (day_id)"
        ) from None


def conditions(session: Session, match: EventFilter) -> list[Any]:
    """The WHERE clauses of a filter (SearchError for an unknown topic or a bad month)."""
    if len(match.q) > MAX_QUERY:
        raise SearchError(f"the search is longer than {MAX_QUERY} characters")
    where: list[Any] = []
    # a plain substring test (the text is case-folded already): instr / strpos need no
    # escaping and skip LIKE's own case handling
    postgres = session.get_bind().dialect.name == "postgresql"
    for term in match.terms:
        where.append(func.strpos(Event.search_text, term) > 0 if postgres
                     else func.instr(Event.search_text, term) > 0)  # fmt: skip
    if match.month:
        try:
            start, end = month_bounds(match.month)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        where += [Event.occurred_on >= start, Event.occurred_on < end]
    if match.topic:
        try:
            (topic,) = topics_by_slug(session=session, slugs=[match.topic])
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        where.append(
            select(EventTopic.event_id)
            .where(EventTopic.event_id == Event.id, EventTopic.topic_id == topic.id)
            .exists()
        )
    if match.region:
        where.append(Event.region == match.region.strip().lower())
    if match.source:
        where.append(Event.source == match.source.strip())
    return where


def find(
    session: Session,
    match: EventFilter,
    *,
    before: str | None = None,
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> EventPage:
    """A page of matching events, newest first (by day, then the latest added): the one
    after the cursor `before` (fast at any depth), or `offset` rows in."""
    where = conditions(session, match)
    if before:
        day, event_id = parse_cursor(before)
        where.append(tuple_(Event.occurred_on, Event.id) < tuple_(day, event_id))
    order: list[Any] = [Event.occurred_on.desc(), Event.id.desc()]
    if match.terms:
        # Walking the day index in order and reading each row it points at is quick for a
        # word most events hold, and for a word few hold reads every row at random (at
        # 100,000 events: 200 ms on SQLite, 160 ms on PostgreSQL). An order the index
        # cannot give makes it one scan and a sort of what matched (45 and 65 ms).
        order = [literal_column(_OFF_INDEX[session.get_bind().dialect.name] % c).desc()
                 for c in ("event.occurred_on", "event.id")]  # fmt: skip
    rows = list(
        session.execute(
            select(Event).where(*where).order_by(*order).offset(offset).limit(limit + 1)
        ).scalars()
    )
    page = rows[:limit]
    return EventPage(page, cursor_of(page[-1]) if len(rows) > limit and page else None)


def count(
    session: Session,
    match: EventFilter,
    *,
    page: EventPage | None = None,
    paged: bool = False,
    limit: int = PAGE_SIZE,
) -> int:
    """How many events match. A first page that is not full holds them all: no second
    pass over the table (what a search for a rare word costs)."""
    if page is not None and not paged and page.next is None and len(page.rows) < limit:
        return len(page.rows)
    return session.execute(
        select(func.count()).select_from(Event).where(*conditions(session, match))
    ).scalar_one()


# The distinct values of an indexed column, one index seek each (a "loose index scan"):
# milliseconds however many events share each value, where DISTINCT reads every row.
_DISTINCT = """
WITH RECURSIVE found(v, n) AS (
  SELECT (SELECT min({col}) FROM event WHERE {col} > ''), 1
  UNION ALL
  SELECT (SELECT min({col}) FROM event WHERE {col} > found.v), n + 1
  FROM found WHERE found.v IS NOT NULL AND n < :limit
)
SELECT v FROM found WHERE v IS NOT NULL
"""


def _distinct(session: Session, column: str, limit: int) -> list[str]:
    assert column in ("source", "region")
    query = text(_DISTINCT.format(col=column)).bindparams(limit=limit)
    return [v for (v,) in session.execute(query)]


def sources(session: Session, limit: int = 300) -> list[str]:
    """The sources stored events name (for the filter), in order."""
    return _distinct(session, "source", limit)


def regions(session: Session) -> list[str]:
    """International and China first, then any other region stored events have."""
    return list(dict.fromkeys([*REGION_NAMES, *_distinct(session, "region", 100)]))


def by_ids(session: Session, ids: list[int]) -> list[Event]:
    """These events, in the order given (those that exist)."""
    if not ids:
        return []
    found = {e.id: e for e in session.execute(select(Event).where(Event.id.in_(ids))).scalars()}
    return [found[i] for i in ids if i in found]


def matches_by_event(session: Session, ids: list[int]) -> dict[int, list[tuple[Topic, EventTopic]]]:
    """Each event's (topic, why) pairs in topic display order: one query for a page."""
    found: dict[int, list[tuple[Topic, EventTopic]]] = {i: [] for i in ids}
    if ids:
        for topic, match in session.execute(
            select(Topic, EventTopic)
            .join(EventTopic, EventTopic.topic_id == Topic.id)
            .where(EventTopic.event_id.in_(ids))
            .order_by(Topic.position, Topic.slug)
        ):
            found[match.event_id].append((topic, match))
    return found
