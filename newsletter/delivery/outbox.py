"""The outbox: durable, idempotent delivery rows; claims, leases, retries, attempts.

Only this module writes a delivery's status (a test scans the package for writes
elsewhere). A claim is one short transaction; the send happens outside any
transaction; the results of a batch are recorded in another, together with what they
imply: hard bounces suppressed, webhook endpoints' health noted (and an endpoint that
is gone disabled, its queued rows held).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import random
import re
import traceback
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Integer,
    String,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.sql import Insert, Select
from sqlalchemy.sql.selectable import TextualSelect
from sqlmodel import Session

from newsletter.core.db import among
from newsletter.core.metrics import MESSAGES, SEND_SECONDS
from newsletter.core.models import Delivery, DeliveryAttempt, WebhookEndpoint, utcnow
from newsletter.core.periods import DIGEST_FREQUENCIES

log = logging.getLogger("newsletter.delivery.outbox")


class DeliveryStatus(StrEnum):
    """Where a delivery row stands. Equal to its stored text (`"sent"`, ...)."""

    QUEUED = "queued"  # waiting for its next_attempt_at (a first try or a retry)
    SENDING = "sending"  # claimed by a worker (its lease ends at claimed_at + lease)
    SENT = "sent"
    FAILED = "failed"  # gave up: a permanent error, or the last of max_attempts
    HELD = "held"  # its webhook endpoint is disabled; queued again when enabled
    SUPPRESSED = "suppressed"  # the address is on the suppression list, or the reader left
    CANCELLED = "cancelled"  # its recipient or content is gone


STATUSES = tuple(s.value for s in DeliveryStatus)


def idempotency_key(
    kind: str,
    period: str,
    *,
    subscriber_id: int | None = None,
    endpoint_id: int | None = None,
    extra: Iterable[str] = (),
) -> str:
    """The one spelling of a delivery's idempotency key: `<recipient>|<kind>|<period>`,
    then any extra parts, e.g. `subscriber:42|digest-monthly|2025-07` or
    `endpoint:3|digest-weekly|2025-W28|part:2`.

    A planned row whose key exists already is not enqueued again, so this spelling must
    never change: a re-planned period would otherwise be sent a second time.
    """
    if (subscriber_id is None) == (endpoint_id is None):
        raise ValueError("a delivery key names either a subscriber or an endpoint")
    recipient = (
        f"subscriber:{subscriber_id}" if subscriber_id is not None else f"endpoint:{endpoint_id}"
    )
    return "|".join((recipient, kind, period, *extra))


def idempotency_key_sql(kind: str, period: str, subscriber_id):
    """The same key as a SQL expression over a subscriber id column, for planning that
    enqueues with one INSERT ... SELECT: `idempotency_key(kind, period, subscriber_id=n)`
    for every row."""
    return literal("subscriber:") + cast(subscriber_id, String) + literal(f"|{kind}|{period}")


def enqueue(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert delivery rows; rows whose idempotency key exists are skipped. Returns inserted.

    Callers give only the columns that matter to them (an alert for a reader has no
    endpoint, one for a webhook no subscriber); every row is widened to the same full
    column set first, because a multi-row insert takes its columns from one row and
    would fail, or silently drop values, on rows of another shape.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    values = _hold_for_disabled_endpoints(session, _full_rows(rows, utcnow()))
    if dialect == "postgresql":
        return _enqueue_postgres(session, values)
    stmt: Insert
    if dialect == "sqlite":
        stmt = sqlite_insert(Delivery).on_conflict_do_nothing(index_elements=["idempotency_key"])
    else:  # pragma: no cover - other databases: check first, then insert
        keys = [r["idempotency_key"] for r in values]
        have = set(
            session.execute(
                select(Delivery.idempotency_key).where(Delivery.idempotency_key.in_(keys))
            ).scalars()
        )
        values = [v for v in values if v["idempotency_key"] not in have]
        stmt = insert(Delivery)
        if not values:
            return 0
    # RETURNING counts what was really inserted, on every driver
    return len(session.connection().execute(stmt.returning(Delivery.id), values).all())


def _full_rows(rows: Sequence[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """Every row with every enqueue column, defaults filled in; unknown keys are a bug."""
    defaults: dict[str, Any] = dict.fromkeys(_COLUMNS)
    defaults.update(
        status=DeliveryStatus.QUEUED.value,
        attempts=0,
        period="",
        next_attempt_at=now,
        created_at=now,
    )
    out = []
    for r in rows:
        unknown = set(r) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"enqueue got unknown column(s): {', '.join(sorted(unknown))}")
        out.append({**defaults, **r})
    return out


def _hold_for_disabled_endpoints(session: Session, values: list[dict[str, Any]]):
    """A row for a disabled webhook endpoint waits, held, until the endpoint is enabled."""
    endpoints = {v["endpoint_id"] for v in values if v["endpoint_id"] is not None}
    if endpoints:
        disabled = set(
            session.execute(
                select(WebhookEndpoint.id).where(
                    WebhookEndpoint.id.in_(endpoints), WebhookEndpoint.enabled.is_(False)
                )
            ).scalars()
        )
        for v in values:
            if v["endpoint_id"] in disabled and v["status"] == DeliveryStatus.QUEUED:
                v["status"] = DeliveryStatus.HELD.value
    return values


_COLUMNS = {
    "idempotency_key": "text[]",
    "channel": "text[]",
    "kind": "text[]",
    "period": "text[]",
    "subscriber_id": "int[]",
    "endpoint_id": "int[]",
    "edition_id": "int[]",
    "status": "text[]",
    "attempts": "int[]",
    "next_attempt_at": "timestamptz[]",
    "created_at": "timestamptz[]",
}


def _unnest_insert(table: str, types: dict[str, str], tail: str = ""):
    """An INSERT of many rows as one statement with one array parameter per column: a
    multi-row VALUES list (or psycopg's executemany) costs more than the insert itself."""
    arrays = ", ".join(f"CAST(:{name} AS {kind})" for name, kind in types.items())
    return text(f"INSERT INTO {table} ({', '.join(types)}) SELECT * FROM unnest({arrays}){tail}")


_PG_ENQUEUE = _unnest_insert(
    "delivery", _COLUMNS, " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
)


def _enqueue_postgres(session: Session, values: list[dict[str, Any]]) -> int:
    """One statement with array parameters: a multi-row VALUES list costs more to parse
    than to insert once it holds thousands of rows."""
    params = {name: [v.get(name) for v in values] for name in _COLUMNS}
    return len(session.connection().execute(_PG_ENQUEUE, params).all())


def enqueue_select(session: Session, columns: Sequence[str], select_sql: str, params: dict) -> int:
    """Insert the delivery rows a SELECT produces, in the database, skipping every row
    whose idempotency key exists. Returns how many were inserted.

    For plans too large to pass through Python row by row: `select_sql` yields one
    value per name in `columns` (which must include the idempotency key); a `:now`
    parameter, if the SELECT uses it, is bound as a timestamp.
    """
    unknown = set(columns) - set(_COLUMNS)
    if unknown or "idempotency_key" not in columns:
        raise ValueError(f"enqueue_select got bad column(s): {', '.join(sorted(unknown))}")
    stmt = text(
        f"INSERT INTO delivery ({', '.join(columns)}) {select_sql}"
        " ON CONFLICT (idempotency_key) DO NOTHING"
    )
    if ":now" in select_sql:
        stmt = stmt.bindparams(bindparam("now", type_=Delivery.__table__.c.created_at.type))
    return _rowcount(session.execute(stmt, params))


# a plan adding this many rows refreshes the table's statistics (see refresh_statistics)
BULK_ROWS = 10_000


def refresh_statistics(session: Session) -> None:
    """After a bulk enqueue PostgreSQL's statistics still describe the table as it was,
    and until autovacuum catches up each claim sorts every queued row instead of reading
    the due index (measured: 70 ms a claim at 100k rows, 3.5 ms after ANALYZE). SQLite's
    claim names its index, so only PostgreSQL needs this."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE delivery"))


def claim(engine: Engine, *, worker: str, limit: int, lease_seconds: float) -> list[int]:
    """Atomically take up to `limit` due rows for this worker.

    Rows left in `sending` by a worker that died become due again once their lease ends.
    On PostgreSQL concurrent claimers skip each other's rows (SKIP LOCKED); SQLite
    serialises writers, so the UPDATE ... RETURNING is atomic there.
    """
    now = utcnow()
    cutoff = now - dt.timedelta(seconds=lease_seconds)
    with engine.begin() as conn:
        conn.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.SENDING, Delivery.claimed_at < cutoff)
            .values(status=DeliveryStatus.QUEUED, claimed_by=None)
        )
        due = (
            select(Delivery.id)
            .where(Delivery.status == DeliveryStatus.QUEUED, Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
        target: Select[Any] | TextualSelect
        if engine.dialect.name == "postgresql":
            # a materialised CTE runs the locking subquery exactly once; inside IN (...)
            # PostgreSQL may re-run it and return more than `limit` rows
            locked = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            target = select(locked.c.id)
        elif engine.dialect.name == "sqlite":
            # without statistics SQLite picks the status index and sorts every queued
            # row on each claim (7 ms at 20,000 rows, 25 ms at 100,000): name the index
            # that holds them in order
            target = (
                text(
                    "SELECT id FROM delivery INDEXED BY ix_delivery_due"
                    " WHERE status = 'queued' AND next_attempt_at <= :now"
                    " ORDER BY next_attempt_at, id LIMIT :limit"
                )
                .bindparams(bindparam("now", now, type_=DateTime), limit=limit)
                .columns(id=Integer)
            )
        else:
            target = due
        rows = conn.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(target.scalar_subquery()), Delivery.status == DeliveryStatus.QUEUED
            )
            .values(status=DeliveryStatus.SENDING, claimed_by=worker, claimed_at=now)
            .returning(Delivery.id)
        ).all()
    return sorted(r[0] for r in rows)


def release(engine: Engine, *, worker: str, ids: Sequence[int]) -> int:
    """Give back rows this worker claimed but did not try (e.g. on shutdown)."""
    if not ids:
        return 0
    with engine.begin() as conn:
        result = conn.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(list(ids)),
                Delivery.claimed_by == worker,
                Delivery.status == DeliveryStatus.SENDING,
            )
            .values(status=DeliveryStatus.QUEUED, claimed_by=None, claimed_at=None)
        )
    return result.rowcount or 0


def renew(engine: Engine, *, worker: str, ids: Sequence[int]) -> set[int]:
    """Start the lease of claimed rows again, just before they are sent; returns the ids
    this worker still holds (a row whose lease ended may be another worker's now, and
    must not be sent by this one as well)."""
    if not ids:
        return set()
    with engine.begin() as conn:
        rows = conn.execute(
            update(Delivery)
            .where(
                Delivery.id.in_(list(ids)),
                Delivery.claimed_by == worker,
                Delivery.status == DeliveryStatus.SENDING,
            )
            .values(claimed_at=utcnow())
            .returning(Delivery.id)
        ).all()
    return {r[0] for r in rows}


@dataclass
class Outcome:
    """What one try to send produced."""

    delivery_id: int
    result: str  # sent | temporary | permanent | deferred | held | suppressed | cancelled
    error: str | None = None
    status_code: int | None = None
    message_id: str | None = None
    retry_after: float | None = None
    started_at: dt.datetime | None = None
    suppress: bool = False  # a hard bounce: never mail this address again
    disable: bool = False  # the webhook endpoint is gone
    endpoint_id: int | None = None
    detail: str | None = None  # kept in the attempt only: e.g. the traceback of a crash


def crashed(ids: Sequence[int], exc: BaseException, **kw: Any) -> list[Outcome]:
    """Outcomes for rows whose preparation or send raised something unexpected (a bug, a
    template error, an address the libraries cannot encode): a permanent failure of
    these rows only, with the exception and a short traceback in the attempt, so one bad
    row cannot stop the worker or come back on every restart."""
    error = f"unexpected {type(exc).__name__}: {exc}"[:500]
    detail = "".join(traceback.format_exception(exc, limit=-6))[-3000:]
    return [Outcome(i, "permanent", error, detail=detail, **kw) for i in ids]


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    delay = min(cap, base * (2 ** min(max(attempt - 1, 0), 60)))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


ATTEMPTED = ("sent", "temporary", "permanent")  # results that count as a try


@dataclass
class _Batch:
    """The writes one batch of outcomes needs, grouped by the columns they set."""

    sent: list[dict[str, Any]]
    retry: list[dict[str, Any]]
    defer: list[dict[str, Any]]
    end: list[dict[str, Any]]
    attempts: list[dict[str, Any]]


# columns each group sets (claimed_by and claimed_at are cleared for all); PostgreSQL types
_SETS = {
    "sent": ("status", "attempts", "last_error", "sent_at", "message_id"),
    "retry": ("status", "attempts", "last_error", "next_attempt_at"),
    "defer": ("status", "next_attempt_at"),
    "end": ("status", "attempts", "last_error"),
}
_PG_TYPES = {
    "id": "int[]",
    "status": "text[]",
    "attempts": "int[]",
    "last_error": "text[]",
    "sent_at": "timestamptz[]",
    "message_id": "text[]",
    "next_attempt_at": "timestamptz[]",
}


SideEffects = Callable[..., list[tuple[int, str]]]


def _no_side_effects(session: Session, tried: list[Outcome], **_limits) -> list[tuple[int, str]]:
    return []


def record(
    engine: Engine,
    outcomes: Sequence[Outcome],
    *,
    worker: str,
    max_attempts: int,
    retry_base: float,
    retry_max: float,
    webhook_disable_after_failures: int = 10,
    webhook_disable_after_hours: float = 24.0,
    side_effects: SideEffects | None = None,
) -> dict[str, int]:
    """Write a batch of results in one transaction; returns counts by status.

    A few statements whatever the batch size: one read of the rows' attempt counts, one
    UPDATE per kind of result (sent, retried, deferred, ended), one INSERT of the
    attempts. In the same transaction, `side_effects` (the delivery stage's
    `outcomes.note`: hard bounces suppressed, endpoint health noted) sees the rows that
    were tried; it returns the endpoints it disabled.

    `deferred` (rate-limited before trying) is not an attempt: the row is queued again
    after `retry_after`. A temporary failure is retried with backoff until the row has
    had `max_attempts` tries, then it is `failed`, as is a permanent failure.
    """
    counts: dict[str, int] = {}
    if not outcomes:
        return counts
    latest = {o.delivery_id: o for o in outcomes}
    now = utcnow()
    dialect = engine.dialect.name
    with Session(engine) as session:
        conn = session.connection()
        rows = select(
            Delivery.id, Delivery.attempts, Delivery.channel, Delivery.status, Delivery.claimed_by
        ).where(among(dialect, Delivery.id, latest))
        if dialect == "postgresql":  # no claim may slip in between this read and the writes
            rows = rows.with_for_update()
        known: dict[int, tuple[int, str, str, str | None]] = {
            i: (attempts, channel, status, claimed_by)
            for i, attempts, channel, status, claimed_by in conn.execute(rows)
        }
        batch = _Batch([], [], [], [], [])
        tried: list[tuple[str, Outcome]] = []
        lost: list[int] = []
        for o in latest.values():
            if o.delivery_id not in known:
                continue  # deleted meanwhile
            attempts, channel, status, claimed_by = known[o.delivery_id]
            if o.result in ATTEMPTED:
                tried.append((channel, o))
            if status != DeliveryStatus.SENDING or claimed_by != worker:
                # our lease ran out and the row went back to the queue, or to another
                # worker: its state is theirs now. The try happened: keep its history.
                lost.append(o.delivery_id)
                if o.result in ATTEMPTED:
                    batch.attempts.append(_attempt(o, o.error, o.result, now, worker))
                continue
            try:
                status = _plan(batch, o, attempts, now, worker, max_attempts, retry_base, retry_max)
            except (ArithmeticError, ValueError) as exc:
                # a result this cannot schedule (a date past the calendar's end): fail
                # this row, with the reason, not the batch's recording
                log.exception("recording the result of delivery %s", o.delivery_id)
                bad = Outcome(o.delivery_id, "permanent", f"{o.error} (not recorded: {exc})")
                status = _plan(batch, bad, attempts, now, worker, max_attempts, 1, 1)
            counts[status] = counts.get(status, 0) + 1
        held = [r["id"] for r in batch.end if r["status"] == DeliveryStatus.HELD]
        if held:
            _unhold_enabled(conn, dialect, batch, held, now, counts)
        for group in ("sent", "retry", "defer", "end"):
            _update_rows(conn, dialect, _SETS[group], getattr(batch, group), worker)
        _insert_attempts(conn, dialect, batch.attempts)
        disabled = (side_effects or _no_side_effects)(
            session,
            [o for _, o in tried],
            after_failures=webhook_disable_after_failures,
            after_hours=webhook_disable_after_hours,
        )
        session.commit()
    for channel, o in tried:  # once stored
        MESSAGES.labels(channel, o.result).inc()
        if o.started_at is not None:
            SEND_SECONDS.labels(channel).observe(max(0.0, (now - o.started_at).total_seconds()))
    for endpoint_id, why in disabled:
        log.warning("webhook endpoint %s disabled: %s", endpoint_id, why)
    if lost:
        log.warning(
            "%d result(s) came after the lease ended and were kept as history only "
            "(the rows were claimed again): %s",
            len(lost),
            ", ".join(f"#{i}" for i in sorted(lost)[:20]),
        )
    return counts


def _unhold_enabled(conn, dialect, batch: _Batch, held: list[int], now, counts) -> None:
    """Rows the worker held because their endpoint was disabled are queued instead if it
    has been enabled since: enabling queues only rows already `held`, not these, which
    were still `sending`, so they would wait for an enable that has happened. On
    PostgreSQL the endpoints are read FOR SHARE, so an enable in progress is waited for
    (or waits for this transaction, and then finds these rows held)."""
    endpoints = (
        select(WebhookEndpoint.id, WebhookEndpoint.enabled)
        .join(Delivery, Delivery.endpoint_id == WebhookEndpoint.id)
        .where(Delivery.id.in_(held))
    )
    if dialect == "postgresql":
        endpoints = endpoints.with_for_update(read=True, of=WebhookEndpoint)
    enabled = {i for i, on in conn.execute(endpoints) if on}
    if not enabled:
        return
    rows = {
        i
        for (i,) in conn.execute(
            select(Delivery.id).where(Delivery.id.in_(held), Delivery.endpoint_id.in_(enabled))
        )
    }
    keep = []
    for r in batch.end:
        if r["id"] in rows:
            batch.retry.append({**r, "status": DeliveryStatus.QUEUED.value, "next_attempt_at": now})
            counts["held"] -= 1
            counts["queued"] = counts.get("queued", 0) + 1
        else:
            keep.append(r)
    batch.end[:] = keep
    if not counts["held"]:
        del counts["held"]


def _plan(
    batch: _Batch,
    o: Outcome,
    attempts: int,
    now: dt.datetime,
    worker: str,
    max_attempts: int,
    retry_base: float,
    retry_max: float,
) -> str:
    """Add one outcome's writes to the batch; returns the status it leaves the row in
    (or `deferred`)."""
    if o.result == "deferred":  # rate-limited before trying: not an attempt
        after = now + dt.timedelta(seconds=_wait(o.retry_after) or 1)
        batch.defer.append(
            {"id": o.delivery_id, "status": DeliveryStatus.QUEUED.value, "next_attempt_at": after}
        )
        return "deferred"
    error, result = o.error, o.result
    if result not in ATTEMPTED and result not in {s.value for s in DeliveryStatus}:
        # a bug in whoever made the outcome: fail this row, with the reason, not the batch
        error, result = f"unknown outcome {o.result!r}: {o.error}", "permanent"
    attempts += result in ATTEMPTED
    row = {"id": o.delivery_id, "attempts": attempts, "last_error": error}
    if result == "sent":
        status = DeliveryStatus.SENT
        batch.sent.append(
            {**row, "status": status.value, "sent_at": now, "message_id": o.message_id}
        )
    elif result == "temporary" and attempts < max_attempts:
        delay = backoff_seconds(attempts, base=retry_base, cap=retry_max)
        delay = max(delay, _wait(o.retry_after))
        status = DeliveryStatus.QUEUED
        after = now + dt.timedelta(seconds=delay)
        batch.retry.append({**row, "status": status.value, "next_attempt_at": after})
    else:
        status = DeliveryStatus.FAILED if result in ATTEMPTED else DeliveryStatus(result)
        batch.end.append({**row, "status": status.value})
    if result in ATTEMPTED:
        batch.attempts.append(_attempt(o, error, result, now, worker))
    return status.value


#: the longest a receiver's Retry-After puts a row off: it is the receiver's to choose
#: (a header, or a JSON body, where Python reads `Infinity` too), and a date past the
#: calendar's end would fail the whole batch's recording
MAX_RETRY_AFTER = 24 * 3600.0


def _wait(retry_after: float | None) -> float:
    """A receiver's Retry-After in seconds, within [0, MAX_RETRY_AFTER]; 0 when absent."""
    if retry_after is None or math.isnan(retry_after):
        return 0.0
    return min(max(float(retry_after), 0.0), MAX_RETRY_AFTER)


def _attempt(o: Outcome, error, result: str, now: dt.datetime, worker: str) -> dict[str, Any]:
    return {
        "delivery_id": o.delivery_id,
        "started_at": o.started_at or now,
        "finished_at": now,
        "outcome": result,
        "status_code": o.status_code,
        "error": "\n".join(filter(None, [error, o.detail])) or None,
        "worker": worker,
    }


def _update_rows(
    conn, dialect: str, columns: Sequence[str], rows: list[dict[str, Any]], worker: str
) -> None:
    """One UPDATE of many rows by id, each only while this worker still has it claimed:
    on PostgreSQL a join with unnest()ed arrays (one statement, one round trip),
    elsewhere the driver's executemany."""
    if not rows:
        return
    if dialect == "postgresql":
        names = ("id", *columns)
        conn.execute(
            text(
                "UPDATE delivery SET "
                + ", ".join(f"{c} = v.{c}" for c in columns)
                + ", claimed_by = NULL, claimed_at = NULL FROM unnest("
                + ", ".join(f"CAST(:{c} AS {_PG_TYPES[c]})" for c in names)
                + f") AS v({', '.join(names)}) WHERE delivery.id = v.id"
                + " AND delivery.status = 'sending' AND delivery.claimed_by = :worker"
            ),
            {"worker": worker, **{c: [r[c] for r in rows] for c in names}},
        )
        return
    sets = ", ".join(f"{c} = ?" for c in columns)
    _driver_executemany(
        conn,
        f"UPDATE delivery SET {sets}, claimed_by = NULL, claimed_at = NULL"
        " WHERE id = ? AND status = 'sending' AND claimed_by = ?",
        Delivery.__table__,
        [*columns, "id"],
        rows,
        worker,
    )


@functools.lru_cache(maxsize=64)
def _bind_processor(dialect, column):
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _converters(dialect, table, columns: Sequence[str]):
    return [(name, _bind_processor(dialect, table.c[name])) for name in columns]


def _driver_executemany(conn, sql: str, table, columns: Sequence[str], rows, *extra) -> None:
    """The driver's executemany with values converted as SQLAlchemy would bind them
    (SQLite stores timestamps as text): SQLAlchemy's own per-row parameter handling cost
    five times the statements themselves. A batch shares most values (one timestamp),
    so each distinct value is converted once. `sql` uses qmark placeholders for
    `columns`, then for `extra` (the same for every row)."""
    converters: list[tuple[str, Any, dict[Any, Any]]] = [
        (name, process, {}) for name, process in _converters(conn.dialect, table, columns)
    ]
    params = []
    for r in rows:
        values = []
        for name, process, seen in converters:
            value = r[name]
            if process is not None and value is not None:
                try:
                    value = seen[value]
                except KeyError:
                    value = seen[value] = process(value)
                except TypeError:  # not hashable
                    value = process(value)
            values.append(value)
        params.append((*values, *extra))
    conn.exec_driver_sql(sql, params)


_ATTEMPT_TYPES = {
    "delivery_id": "int[]",
    "started_at": "timestamptz[]",
    "finished_at": "timestamptz[]",
    "outcome": "text[]",
    "status_code": "int[]",
    "error": "text[]",
    "worker": "text[]",
}
_PG_ATTEMPTS = _unnest_insert("deliveryattempt", _ATTEMPT_TYPES)


def _insert_attempts(conn, dialect: str, rows: list[dict[str, Any]]) -> None:
    """One INSERT of every attempt: unnest()ed arrays on PostgreSQL (its driver would
    otherwise send one statement per row), a multi-row insert elsewhere."""
    if not rows:
        return
    if dialect == "postgresql":
        conn.execute(_PG_ATTEMPTS, {c: [r[c] for r in rows] for c in _ATTEMPT_TYPES})
    else:
        names = list(_ATTEMPT_TYPES)
        _driver_executemany(
            conn,
            f"INSERT INTO deliveryattempt ({', '.join(names)})"
            f" VALUES ({', '.join('?' * len(names))})",
            DeliveryAttempt.__table__,
            names,
            rows,
        )


# --- state changes made by operators and by the rest of the service ------------------------


def _bulk(session: Session, stmt) -> int:
    return _rowcount(session.execute(stmt.execution_options(synchronize_session=False)))


def _rowcount(result: Result[Any]) -> int:
    """Rows an INSERT/UPDATE/DELETE touched (Session.execute types its result as a plain
    Result; for these statements it is a CursorResult)."""
    return typing.cast(CursorResult[Any], result).rowcount or 0


def hold_endpoint(session: Session, endpoint_id: int) -> int:
    """A disabled endpoint's queued messages wait, unclaimable, until it is enabled."""
    return _bulk(
        session,
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.HELD.value),
    )


def resume_endpoint(session: Session, endpoint_id: int) -> int:
    """An enabled endpoint's held messages are due again now. Returns how many."""
    return _bulk(
        session,
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id, Delivery.status == DeliveryStatus.HELD)
        .values(status=DeliveryStatus.QUEUED.value, next_attempt_at=utcnow()),
    )


def detach_endpoint(session: Session, endpoint_id: int) -> int:
    """Before an endpoint is deleted: what waits for it is cancelled, and its rows (kept as
    history) no longer point at it. Returns how many were cancelled."""
    cancelled = _bulk(
        session,
        update(Delivery)
        .where(
            Delivery.endpoint_id == endpoint_id,
            Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.HELD]),
        )
        .values(status=DeliveryStatus.CANCELLED.value),
    )
    _bulk(
        session,
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id)
        .values(endpoint_id=None, idempotency_key=_detached_key()),
    )
    return cancelled


def _detached_key():
    """The key of a row kept as history once its recipient is gone: it names the
    recipient's id no more. On SQLite a later reader or endpoint may be given the same
    id, and planning would take the old keys for theirs (already served)."""
    return (
        literal("detached:")
        + cast(Delivery.id, String)
        + literal("|")
        + Delivery.kind
        + literal("|")
        + Delivery.period
    )


def detach_subscriber(session: Session, subscriber_id: int) -> int:
    """Before a subscriber's personal data is deleted: what is queued for them is
    cancelled, and their rows (kept as history) no longer point at them."""
    cancelled = _bulk(
        session,
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.CANCELLED.value),
    )
    _bulk(
        session,
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber_id)
        .values(subscriber_id=None, idempotency_key=_detached_key()),
    )
    return cancelled


def note_bounce(session: Session, delivery_id: int, kind: str, diagnostic: str) -> bool:
    """A bounce or complaint received after the send, noted on its delivery.

    A hard bounce means the message never arrived: a row recorded as `sent` becomes
    `failed`. A soft bounce or a complaint leaves the status as it is (the receiver will
    retry, or the reader did receive it). Returns whether the row exists."""
    note = f"{kind} bounce received: {diagnostic}" if kind in ("hard", "soft") else diagnostic
    values: dict[str, Any] = {"last_error": note[:2000]}
    stmt = update(Delivery).where(Delivery.id == delivery_id)
    if kind == "hard":
        values["status"] = case(
            (Delivery.status == DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value),
            else_=Delivery.status,
        )
    return _bulk(session, stmt.values(**values)) > 0


#: what a delivery carries: a confirmation, a welcome once confirmed, an instant alert,
#: or a digest of a period
KINDS = ("confirm", "welcome", "alert", *(f"digest-{f}" for f in DIGEST_FREQUENCIES))


#: the largest id a delivery can have (an INTEGER column on PostgreSQL)
MAX_ID = 2**31 - 1


@dataclass
class Retried:
    queued: int  # due now
    held: int  # for a disabled webhook endpoint: queued when it is enabled again

    @property
    def total(self) -> int:
        return self.queued + self.held


@dataclass(frozen=True)
class DeliveryFilter:
    """Which deliveries an admin list shows, and which rows its retry or cancel takes.

    Every given part must match: statuses, channel, one recipient (a reader or a webhook
    endpoint), created in [created_from, created_before), kinds.
    """

    statuses: tuple[str, ...] = ()
    channel: str | None = None
    subscriber_id: int | None = None
    endpoint_id: int | None = None
    created_from: dt.datetime | None = None
    created_before: dt.datetime | None = None
    kinds: tuple[str, ...] = ()

    def conditions(self) -> list[Any]:
        unknown = sorted(set(self.statuses) - set(STATUSES))
        if unknown:
            raise ValueError(f"unknown status {unknown[0]!r}; statuses: {', '.join(STATUSES)}")
        where: list[Any] = []
        if self.statuses:
            where.append(Delivery.status.in_(sorted(set(self.statuses))))
        if self.channel:
            where.append(Delivery.channel == self.channel)
        if self.subscriber_id is not None:
            where.append(Delivery.subscriber_id == self.subscriber_id)
        if self.endpoint_id is not None:
            where.append(Delivery.endpoint_id == self.endpoint_id)
        if self.created_from is not None:
            where.append(Delivery.created_at >= self.created_from)
        if self.created_before is not None:
            where.append(Delivery.created_at < self.created_before)
        if self.kinds:
            where.append(Delivery.kind.in_(sorted(set(self.kinds))))
        return where

    @property
    def empty(self) -> bool:
        return self == DeliveryFilter()


def cancel(
    session: Session, *, ids: Sequence[int] = (), match: DeliveryFilter | None = None
) -> int:
    """Cancel deliveries that wait (`queued` or `held`): by id, or every waiting row the
    filter matches. A row a worker has claimed (`sending`), or one already finished, is
    left alone. Returns how many were cancelled."""
    if any(i < 1 or i > MAX_ID for i in ids):
        raise ValueError("delivery ids are whole numbers from 1 to 2147483647")
    where = [Delivery.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.HELD.value])]
    if match is not None:
        where += match.conditions()
    if not ids and (match is None or match.empty):
        raise ValueError("say which queued deliveries to cancel (ids or a filter)")
    unique = sorted(set(ids))
    parts: list[list[int] | None] = [unique[n : n + 10_000] for n in range(0, len(unique), 10_000)]
    done = 0
    for part in parts or [None]:
        these = [*where, Delivery.id.in_(part)] if part is not None else where
        done += _bulk(
            session,
            update(Delivery)
            .where(*these)
            .values(status=DeliveryStatus.CANCELLED.value, claimed_by=None, claimed_at=None),
        )
    return done


def waiting_alerts(session: Session, event_id: int) -> list[int]:
    """Ids of the alert deliveries that carry this event and wait to be sent (`queued`,
    or `held` for a disabled endpoint): what `cancel` would take if it went."""
    return list(
        session.execute(
            select(Delivery.id).where(
                Delivery.status.in_([DeliveryStatus.QUEUED.value, DeliveryStatus.HELD.value]),
                Delivery.kind == "alert",
                Delivery.period == f"event:{event_id}",
            )
        ).scalars()
    )


def retry(
    session: Session,
    *,
    ids: Sequence[int] = (),
    endpoint_id: int | None = None,
    since: dt.datetime | None = None,
    kinds: Sequence[str] = (),
    everything: bool = False,
    match: DeliveryFilter | None = None,
) -> Retried:
    """Queue `failed` deliveries again, due now; nothing else is touched (a sent row is
    never sent twice). The filters combine: given ids, an endpoint's rows, rows whose last
    try was at or after `since`, rows of these kinds; `everything` (and no filter) takes
    every failed row.

    A retried row starts a fresh set of tries (attempts back to 0; the history of its
    earlier attempts is kept). It is checked again when it is sent: an address on the
    suppression list ends `suppressed`, a recipient or edition that is gone `cancelled`.
    Rows for a disabled webhook endpoint are held until it is enabled. `match` (an admin
    list's filter) narrows further; its statuses other than `failed` match nothing.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    if any(i < 1 for i in ids):
        raise ValueError("delivery ids are positive whole numbers")
    too_big = [i for i in ids if i > MAX_ID]
    if too_big:  # matches nothing, and the drivers refuse (or crash on) such a number
        raise ValueError(f"no delivery has id {too_big[0]}")
    where = [Delivery.status == DeliveryStatus.FAILED]
    if endpoint_id is not None:
        where.append(Delivery.endpoint_id == endpoint_id)
    if since is not None:
        where.append(
            exists().where(
                DeliveryAttempt.delivery_id == Delivery.id, DeliveryAttempt.finished_at >= since
            )
        )
    if kinds:
        where.append(Delivery.kind.in_(sorted(set(kinds))))
    if match is not None:
        where += match.conditions()
    if len(where) == 1 and not ids and not everything:
        raise ValueError(
            "say which failed deliveries to retry (ids, endpoint, since, kind), or all"
        )
    fresh = {"attempts": 0, "next_attempt_at": utcnow(), "claimed_by": None, "claimed_at": None}
    disabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(False))
    got = Retried(queued=0, held=0)
    unique = sorted(set(ids))
    # ids in slices: a statement binds at most 65535 parameters on PostgreSQL
    parts: list[list[int] | None] = [unique[n : n + 10_000] for n in range(0, len(unique), 10_000)]
    for part in parts or [None]:
        these = [*where, Delivery.id.in_(part)] if part is not None else where
        got.held += _bulk(
            session,
            update(Delivery)
            .where(*these, Delivery.endpoint_id.in_(disabled))
            .values(status=DeliveryStatus.HELD.value, **fresh),
        )
        got.queued += _bulk(
            session,
            update(Delivery).where(*these).values(status=DeliveryStatus.QUEUED.value, **fresh),
        )
    return got


_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """`2025-07-01`, `2025-07-01T08:00` (UTC unless it says otherwise), or a duration back
    from now: `90m`, `12h`, `2d`, `1w`, `1d12h`."""
    now = now or utcnow()
    raw = value.strip()
    compact = raw.replace(" ", "").lower()
    if compact and re.fullmatch(r"([0-9]+[smhdw])+", compact):
        try:
            back = dt.timedelta(
                seconds=sum(int(n) * _UNITS[u] for n, u in _DURATION.findall(compact))
            )
            return now - back
        except OverflowError:
            raise ValueError(f"since {value!r} is too far back") from None
    try:
        if not raw.isascii():
            raise ValueError
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            "since must be an ISO date or time (2025-07-01, 2025-07-01T08:00) or a duration "
            f"like 90m, 12h, 7d; got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    try:  # 0001-01-01T00:00+14:00 is a valid time before year 1 in UTC, as stored
        when = when.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"since {value!r} is too far back") from None
    if when > now:
        raise ValueError(f"since {value!r} is in the future")
    return when


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.SENDING]))
        ).scalar_one()


def next_due_in(engine: Engine) -> float | None:
    """Seconds until the next queued row is due (0 if one is due now), None if none queued."""
    with engine.connect() as conn:
        when = conn.execute(
            select(func.min(Delivery.next_attempt_at)).where(
                Delivery.status == DeliveryStatus.QUEUED
            )
        ).scalar()
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - utcnow()).total_seconds())


def status_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """{channel: {status: count}}"""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Delivery.channel, Delivery.status, func.count()).group_by(
                Delivery.channel, Delivery.status
            )
        ).all()
    out: dict[str, dict[str, int]] = {}
    for channel, status, n in rows:
        out.setdefault(channel, {})[status] = n
    return out


def last_errors(engine: Engine, limit: int = 10) -> list[tuple[int, str, str, str | None]]:
    """(delivery id, key, outcome, error) of the most recent failed attempts."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                DeliveryAttempt.delivery_id,
                Delivery.idempotency_key,
                DeliveryAttempt.outcome,
                DeliveryAttempt.error,
            )
            .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
            .where(DeliveryAttempt.outcome != "sent")
            .order_by(DeliveryAttempt.id.desc())
            .limit(limit)
        ).all()
    return [(i, key, outcome, error) for i, key, outcome, error in rows]
