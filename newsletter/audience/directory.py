"""Finding readers: search by address or name prefix and filters, a page at a time
(keyset on id, so a deep page costs what the first does at a million rows), and the
same selection streamed as CSV.

The search uses indexes made by migration 0010: on SQLite a range over the unique
email index and over lower(name); on PostgreSQL LIKE 'prefix%' over text_pattern_ops
indexes (correct under any collation).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlmodel import Session

from newsletter.audience.subscribers import EXPORT_FIELDS, LANGUAGES
from newsletter.core.models import Subscriber, Subscription, Topic
from newsletter.core.periods import FREQUENCIES
from newsletter.core.text import csv_cell

STATUSES = ("pending", "active", "unsubscribed", "disabled")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
EXPORT_BATCH = 2000
SEARCH_MAX_LENGTH = 320
_TOP = "\U0010ffff"  # sorts after every character: [term, term + _TOP) is "starts with term"


class DirectoryError(ValueError):
    """A search or filter that cannot be run, with the reason."""


@dataclass(frozen=True)
class SubscriberFilter:
    """What the admin list shows: every given part must match."""

    q: str = ""  # start of the address, or of the name (case-insensitive)
    status: str | None = None
    topic: str | None = None  # a topic slug
    frequency: str | None = None
    language: str | None = None

    def check(self) -> None:
        if len(self.q) > SEARCH_MAX_LENGTH:
            raise DirectoryError(f"the search text is longer than {SEARCH_MAX_LENGTH} characters")
        if any(c in self.q for c in "\x00\r\n"):
            raise DirectoryError("the search text contains line breaks or control characters")
        for name, value, allowed in (
            ("status", self.status, STATUSES),
            ("frequency", self.frequency, FREQUENCIES),
            ("language", self.language, LANGUAGES),
        ):
            if value and value not in allowed:
                raise DirectoryError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")

    def as_params(self) -> dict[str, str]:
        """The filter as query parameters (for links to the next page and to the CSV)."""
        return {k: v for k, v in self.__dict__.items() if v}


def _like_prefix(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def conditions(session: Session, match: SubscriberFilter) -> list[Any]:
    """SQL conditions for `match` (DirectoryError for a bad value or an unknown topic)."""
    match.check()
    where: list[Any] = []
    term = match.q.strip().lower()
    if term:
        postgres = session.get_bind().dialect.name == "postgresql"
        name = func.lower(Subscriber.name)
        on_email: Any
        on_name: Any
        if postgres:
            on_email = Subscriber.email.like(_like_prefix(term), escape="\\")
            on_name = name.like(_like_prefix(term), escape="\\")
        else:
            on_email = (Subscriber.email >= term) & (Subscriber.email < term + _TOP)
            on_name = (name >= term) & (name < term + _TOP)
        where.append(on_email if "@" in term else or_(on_email, on_name))
    if match.status:
        where.append(Subscriber.status == match.status)
    if match.frequency:
        where.append(Subscriber.frequency == match.frequency)
    if match.language:
        where.append(Subscriber.language == match.language)
    if match.topic:
        topic_id = session.execute(select(Topic.id).where(Topic.slug == match.topic)).scalar()
        if topic_id is None:
            raise DirectoryError(f"unknown topic {match.topic!r}")
        where.append(
            exists().where(
                Subscription.subscriber_id == Subscriber.id, Subscription.topic_id == topic_id
            )
        )
    return where


@dataclass
class SubscriberPage:
    rows: list[tuple[Subscriber, list[str]]]  # each reader and their topic slugs
    next_after: int | None  # pass as `after` for the next page; None on the last page


def find(
    session: Session,
    match: SubscriberFilter,
    *,
    after: int | None = None,
    limit: int = PAGE_SIZE,
) -> SubscriberPage:
    """One page of readers in id order, after the reader `after` (keyset)."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = select(Subscriber).where(*conditions(session, match))
    if after is not None:
        query = query.where(Subscriber.id > after)
    found = list(session.execute(query.order_by(Subscriber.id).limit(limit + 1)).scalars())
    more = len(found) > limit
    page = found[:limit]
    topics = topics_of(session, [s.id for s in page])
    return SubscriberPage(
        [(s, topics.get(s.id, [])) for s in page], page[-1].id if more and page else None
    )


def topics_of(session: Session, ids: list[int]) -> dict[int, list[str]]:
    """{subscriber id: topic slugs} for these readers, in one query."""
    out: dict[int, list[str]] = {}
    if not ids:
        return out
    for sub_id, slug in session.execute(
        select(Subscription.subscriber_id, Topic.slug)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(Subscription.subscriber_id.in_(ids))
        .order_by(Topic.position, Topic.slug)
    ):
        out.setdefault(sub_id, []).append(slug)
    return out


def count(session: Session, match: SubscriberFilter) -> int:
    query = select(func.count()).select_from(Subscriber).where(*conditions(session, match))
    return session.execute(query).scalar_one()


def export_csv(
    open_session: Callable[[], AbstractContextManager[Session]], match: SubscriberFilter
) -> Iterator[str]:
    """The readers `match` selects as CSV text, a batch at a time (the columns of
    `subscribers export`). Each batch reads in its own short session, so a long download
    holds no transaction open; the filter is checked before the first line."""
    with open_session() as session:
        conditions(session, match)  # raises now, not halfway through the download
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    yield out.getvalue()
    after: int | None = None
    while True:
        with open_session() as session:
            page = find(session, match, after=after, limit=EXPORT_BATCH)
        out.seek(0)
        out.truncate()
        for sub, slugs in page.rows:
            row = {k: getattr(sub, k) for k in EXPORT_FIELDS if k != "topics"}
            row["topics"] = ",".join(slugs)
            writer.writerow({k: csv_cell(v) for k, v in row.items()})
        yield out.getvalue()
        if page.next_after is None:
            return
        after = page.next_after
