"""Planning: who gets which events for a period, grouped into segments in the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session

from newsletter.audience.subscribers import address_hash
from newsletter.core.models import Event, Subscriber, Subscription, Suppression, Topic
from newsletter.core.periods import Period
from newsletter.ingest.events import PICKS_FREQUENCIES, is_pick, slugs_by_event


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int
    language: str
    topic_slugs: tuple[str, ...]  # in topic display order


def period_events(*, session: Session, period: Period) -> list[tuple[Event, list[str]]]:
    """Events of the period with their topic slugs, most important first, then by date."""
    events = list(
        session.execute(
            select(Event)
            .where(Event.occurred_on >= period.start, Event.occurred_on < period.end)
            .order_by(Event.importance.desc().nulls_last(), Event.occurred_on, Event.id)
        ).scalars()
    )
    slugs = slugs_by_event(session, [e.id for e in events])
    return [(e, slugs[e.id]) for e in events]


def iter_recipients(
    *, session: Session, frequency: str, batch_size: int = 1000, timezone: str | None = None
) -> Iterator[list[Recipient]]:
    """Active, unsuppressed subscribers of a frequency, with their topics, in id order.

    Keyset pagination keeps memory flat however many subscribers there are. This walks
    every reader in Python: the plain statement of who gets a digest, kept as the
    reference the set-based planning below is tested against (`send_digest` uses that).
    """
    order = {slug: pos for slug, pos in session.execute(select(Topic.slug, Topic.position))}
    last_id = 0
    while True:
        query = select(Subscriber.id, Subscriber.email, Subscriber.language).where(
            Subscriber.status == "active",
            Subscriber.frequency == frequency,
            Subscriber.id > last_id,
        )
        if timezone is not None:
            query = query.where(Subscriber.timezone == timezone)
        subs = session.execute(query.order_by(Subscriber.id).limit(batch_size)).all()
        if not subs:
            return
        first_id, last_id = subs[0][0], subs[-1][0]
        ids = [s[0] for s in subs]
        hashes: dict[str, list[int]] = {}  # one mailbox may be stored in two spellings
        for sid, email, _lang in subs:
            hashes.setdefault(address_hash(email), []).append(sid)
        suppressed = {
            sid
            for h in session.execute(
                select(Suppression.address_hash).where(Suppression.address_hash.in_(list(hashes)))
            ).scalars()
            for sid in hashes[h]
        }
        topics: dict[int, list[str]] = {i: [] for i in ids}
        # a range, not IN (2000 ids): cheaper to plan, and the primary key serves it
        for sub_id, slug in session.execute(
            select(Subscription.subscriber_id, Topic.slug)
            .join(Topic, Topic.id == Subscription.topic_id)
            .where(Subscription.subscriber_id.between(first_id, last_id))
        ):
            if sub_id in topics:
                topics[sub_id].append(slug)
        yield [
            Recipient(sid, lang, tuple(sorted(topics[sid], key=lambda s: (order.get(s, 0), s))))
            for sid, _email, lang in subs
            if sid not in suppressed and topics[sid]
        ]
        session.expunge_all()


def events_for(
    events: list[tuple[Event, list[str]]],
    topic_slugs: tuple[str, ...],
    frequency: str | None = None,
) -> list[tuple[Event, list[str]]]:
    """The period's events whose topics meet the recipient's; for a monthly digest, also
    the editor's picks (pinned or importance 5), which every reader gets."""
    wanted = set(topic_slugs)
    picks = frequency in PICKS_FREQUENCIES
    return [
        (e, slugs) for e, slugs in events if wanted.intersection(slugs) or (picks and is_pick(e))
    ]


# --- set-based planning ----------------------------------------------------------------------
#
# `iter_recipients` above brings every reader through Python; planning a million readers
# that way spends minutes moving rows. The functions below do the same selection in the
# database: one grouping query finds the segments (readers sharing a language and a topic
# set), and the delivery rows are then written by `INSERT ... SELECT`, one statement per
# range of subscriber ids, without a reader's row ever reaching Python.

# Subscriber ids per enqueue statement (and per commit): bounds a transaction's size
# without making the statements so small that their fixed cost shows.
ID_CHUNK = 100_000

# The ASCII characters Python's str.strip() removes: an ASCII address without them at
# either end hashes in SQL exactly as `address_hash` hashes it in Python.
_ASCII_SPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# Topics per word of a reader's topic mask: a mask is a sum of distinct powers of two,
# which fits a signed 64-bit integer with bits 0-61.
MASK_BITS = 62


@dataclass(frozen=True)
class ReaderGroup:
    """Readers of one language and topic set, within one range of subscriber ids."""

    language: str
    topic_slugs: tuple[str, ...]  # in topic display order
    bucket: int  # subscriber ids bucket * ID_CHUNK .. (bucket + 1) * ID_CHUNK - 1
    readers: int
    first_id: int


@dataclass
class ReaderQuery:
    """The SQL selecting the readers a digest goes to: `id`, `language`, and the
    reader's topic set as bit masks `m0`, `m1`, ... (one bit per topic, in display
    order): exact whatever order the database aggregates a reader's topics in.
    """

    sql: str
    params: dict[str, Any]
    slugs: list[str]  # topic slugs in display order: bit i of the masks is slugs[i]
    where: list[str]  # the conditions on the subscriber (alias s), without the id range

    @property
    def words(self) -> int:
        return max(1, -(-len(self.slugs) // MASK_BITS))

    def masks(self, slugs: tuple[str, ...]) -> tuple[int, ...]:
        rank = {s: i for i, s in enumerate(self.slugs)}
        out = [0] * self.words
        for s in slugs:
            out[rank[s] // MASK_BITS] |= 1 << (rank[s] % MASK_BITS)
        return tuple(out)

    def topic_slugs(self, masks: tuple[int, ...]) -> tuple[str, ...]:
        return tuple(
            slug
            for i, slug in enumerate(self.slugs)
            if masks[i // MASK_BITS] >> (i % MASK_BITS) & 1
        )

    def id_span(self, session: Session) -> tuple[int, int] | None:
        """(lowest, highest) id of the subscribers the query may select, None if none."""
        where = " AND ".join(w for w in self.where if "ss." not in w)
        lo, hi = session.execute(
            text(f"SELECT min(s.id), max(s.id) FROM subscriber s WHERE {where}"), self.params
        ).one()
        return None if lo is None else (int(lo), int(hi))

    def buckets(self, session: Session) -> range:
        """The ranges of ID_CHUNK subscriber ids that hold the query's readers."""
        span = self.id_span(session)
        return range(span[0] // ID_CHUNK, span[1] // ID_CHUNK + 1) if span else range(0)

    def range_params(self, bucket: int) -> dict[str, Any]:
        return {**self.params, "lo": bucket * ID_CHUNK, "hi": (bucket + 1) * ID_CHUNK}

    def grouped(self, session: Session, bucket: int) -> list[ReaderGroup]:
        """The readers of one range of ids by language and topic set, first reader first."""
        words = ", ".join(f"r.m{k}" for k in range(self.words))
        rows = session.execute(
            text(
                f"SELECT r.language, count(*), min(r.id) AS first, {words}"
                f" FROM ({self.sql}) r GROUP BY r.language, {words} ORDER BY first"
            ),
            self.range_params(bucket),
        ).all()
        return [
            ReaderGroup(lang, self.topic_slugs(tuple(masks)), bucket, int(n), int(first))
            for lang, n, first, *masks in rows
        ]


def reader_query(*, session: Session, frequency: str, timezone: str | None = None) -> ReaderQuery:
    """Active, unsuppressed subscribers of a frequency that follow at least one topic,
    with ids in a half-open range `:lo` to `:hi` (see `ReaderQuery.range_params`)."""
    dialect = session.get_bind().dialect.name
    topics = sorted(
        session.execute(select(Topic.id, Topic.slug, Topic.position)).all(),
        key=lambda t: (t[2], t[1]),
    )
    params: dict[str, Any] = {"frequency": frequency}
    where = ["s.status = 'active'", "s.frequency = :frequency"]
    if timezone is not None:
        where.append("s.timezone = :timezone")
        params["timezone"] = timezone
    if session.execute(select(Suppression.id).limit(1)).first() is not None:
        where.append(_not_suppressed(session, dialect, where, params))
    # the range on both tables, so that each is read by a range of its primary key
    in_range = ["s.id >= :lo AND s.id < :hi", "ss.subscriber_id >= :lo AND ss.subscriber_id < :hi"]
    words = []
    for k in range(max(1, -(-len(topics) // MASK_BITS))):
        part = topics[k * MASK_BITS : (k + 1) * MASK_BITS]
        cases = " ".join(f"WHEN {tid} THEN {1 << i}" for i, (tid, _, _) in enumerate(part))
        words.append(f"sum(CASE ss.topic_id {cases} ELSE 0 END) AS m{k}" if part else "0 AS m0")
    sql = (
        f"SELECT s.id AS id, s.language AS language, {', '.join(words)}"
        " FROM subscriber s JOIN subscription ss ON ss.subscriber_id = s.id"
        f" WHERE {' AND '.join(where + in_range)} GROUP BY s.id, s.language"
    )
    return ReaderQuery(sql, params, [slug for _, slug, _ in topics], where)


def _not_suppressed(session: Session, dialect: str, where: list[str], params: dict) -> str:
    """A condition leaving out subscribers whose address hash is on the suppression list."""
    if dialect != "postgresql":
        # SQLite calls Python's own address_hash (db.make_engine gives every connection it)
        return (
            "NOT EXISTS (SELECT 1 FROM suppression x"
            " WHERE x.address_hash = nl_address_hash(s.email))"
        )
    # PostgreSQL hashes plain ASCII addresses itself (lower-casing A-Z only, whatever the
    # database's locale); the rare others are hashed here, and the suppressed among them
    # left out by id.
    plain = "(octet_length(s.email) = char_length(s.email) AND s.email = btrim(s.email, :nl_ws))"
    params["nl_ws"] = _ASCII_SPACE
    odd = session.execute(
        text(
            "SELECT s.id, s.email FROM subscriber s WHERE "
            + " AND ".join(where)
            + f" AND NOT {plain}"
        ),
        params,
    ).all()
    hashes: dict[str, list[int]] = {}  # one mailbox may be stored in two spellings
    for sid, email in odd:
        hashes.setdefault(address_hash(email), []).append(sid)
    suppressed_odd: list[int] = []
    keys = list(hashes)
    for i in range(0, len(keys), 1000):
        suppressed_odd += [
            sid
            for h in session.execute(
                select(Suppression.address_hash).where(
                    Suppression.address_hash.in_(keys[i : i + 1000])
                )
            ).scalars()
            for sid in hashes[h]
        ]
    params["nl_odd"] = suppressed_odd
    params["nl_upper"], params["nl_lower"] = _UPPER, _UPPER.lower()
    return (
        "s.id <> ALL(CAST(:nl_odd AS int[])) AND NOT (" + plain + " AND EXISTS (SELECT 1 FROM "
        "suppression x WHERE x.address_hash = encode(sha256(convert_to("
        "translate(s.email, :nl_upper, :nl_lower), 'UTF8')), 'hex')))"
    )
