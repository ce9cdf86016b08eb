"""Where returned mail comes from, in bulk: files holding one raw message or an mbox, and
batches of messages processed in one transaction per chunk (so a large import or a
relay's burst costs a commit per chunk, not per message). Also the recent records."""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import Engine, select
from sqlmodel import Session

from newsletter.core.models import Bounce, Subscriber
from newsletter.core.settings import Settings
from newsletter.feedback.process import Result, process_message

log = logging.getLogger("newsletter.feedback")

CHUNK = 500


def read_messages(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """One raw message, or each message of an mbox (a `From ` line after a blank line
    starts one; `>From ` quoting is undone), read as they come: an mbox of any size costs
    the memory of its largest message. A message over `max_bytes` is cut just past it
    (the processing refuses it as too large) and the rest of it skipped. Yields (raw
    message, whether it came from an mbox)."""
    first = stream.readline()
    if not first.startswith(b"From "):
        rest = stream.read(max_bytes + 1 - len(first)) if len(first) <= max_bytes else b""
        yield first + rest, False
        return
    current: list[bytes] = []
    size = 0
    blank = True
    for line in stream:
        if blank and line.startswith(b"From "):
            yield b"".join(current), True
            current, size, blank = [], 0, False
            continue
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            line = line[1:]
        blank = line in (b"\n", b"\r\n")
        if size <= max_bytes:
            current.append(line)
            size += len(line)
    yield b"".join(current), True


def split_messages(data: bytes, max_bytes: int = 1 << 62) -> list[bytes]:
    """`read_messages` of bytes in memory."""
    return [raw for raw, _mbox in read_messages(io.BytesIO(data), max_bytes)]


def process_all(
    engine: Engine,
    settings: Settings,
    messages: Iterable[tuple[str, bytes]],
    *,
    source: str = "import",
    chunk: int = CHUNK,
) -> Iterator[tuple[str, Result]]:
    """(name, result) for each (name, raw message), committing every `chunk` messages."""
    pending = 0
    session = Session(engine, expire_on_commit=False)
    try:
        for name, raw in messages:
            yield name, process_message(session, settings, raw, source=source)
            pending += 1
            if pending >= chunk:
                session.commit()
                session.expunge_all()
                pending = 0
        session.commit()
    finally:
        session.close()


def process_chunk(
    engine: Engine, settings: Settings, raws: list[bytes], *, source: str
) -> list[Result]:
    """Process messages in one transaction and commit it; a database error rolls the
    whole chunk back and is raised (its messages count as not yet read)."""
    if not raws:
        return []
    with Session(engine, expire_on_commit=False) as session:
        results = [process_message(session, settings, raw, source=source) for raw in raws]
        session.commit()
    return results


@dataclass
class BounceRecord:
    received_at: dt.datetime
    kind: str
    email: str | None
    delivery_id: int | None
    diagnostic: str
    action: str
    source: str

    def as_dict(self) -> dict:
        return {**self.__dict__, "received_at": self.received_at.isoformat()}


def recent(
    session: Session,
    since: dt.datetime,
    *,
    limit: int = 1000,
    kinds: tuple[str, ...] = (),
    subscriber_id: int | None = None,
) -> list[BounceRecord]:
    """Bounces and complaints received since `since`, newest first."""
    query = (
        select(Bounce, Subscriber.email)
        .outerjoin(Subscriber, Subscriber.id == Bounce.subscriber_id)
        .where(Bounce.received_at >= since)
        .order_by(Bounce.received_at.desc(), Bounce.id.desc())
        .limit(limit)
    )
    if kinds:
        query = query.where(Bounce.kind.in_(kinds))
    if subscriber_id is not None:
        query = query.where(Bounce.subscriber_id == subscriber_id)
    return [
        BounceRecord(b.received_at, b.kind, email, b.delivery_id, b.diagnostic, b.action, b.source)
        for b, email in session.execute(query)
    ]


def on_deliveries(session: Session, delivery_ids: list[int]) -> dict[int, BounceRecord]:
    """The latest bounce or complaint received for each of these deliveries (one query)."""
    if not delivery_ids:
        return {}
    query = (
        select(Bounce)
        .where(Bounce.delivery_id.in_(sorted(set(delivery_ids))))
        .order_by(Bounce.received_at, Bounce.id)
    )
    found: dict[int, BounceRecord] = {}
    for b in session.execute(query).scalars():
        if b.delivery_id is not None:  # always, by the query; for the type checker
            found[b.delivery_id] = BounceRecord(
                b.received_at, b.kind, None, b.delivery_id, b.diagnostic, b.action, b.source
            )
    return found
