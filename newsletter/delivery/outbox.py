"""The outbox: durable, idempotent delivery rows; claims, leases, retries, attempts.

Only this module writes a delivery's status. A claim is one short transaction; the
send happens outside any transaction; the result is recorded in another.
"""

from __future__ import annotations

import datetime as dt
import random
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from ..metrics import MESSAGES, SEND_SECONDS
from ..models import Delivery, DeliveryAttempt, utcnow

STATUSES = ("queued", "sending", "sent", "failed", "held", "suppressed", "cancelled")


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
    values = _full_rows(rows, utcnow())
    if dialect == "postgresql":
        return _enqueue_postgres(session, values)
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
    defaults.update(status="queued", attempts=0, period="", next_attempt_at=now, created_at=now)
    out = []
    for r in rows:
        unknown = set(r) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"enqueue got unknown column(s): {', '.join(sorted(unknown))}")
        out.append({**defaults, **r})
    return out


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
_PG_ENQUEUE = text(
    f"INSERT INTO delivery ({', '.join(_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind})" for name, kind in _COLUMNS.items())
    + ") ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
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
    return session.execute(stmt, params).rowcount or 0


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
            .where(Delivery.status == "sending", Delivery.claimed_at < cutoff)
            .values(status="queued", claimed_by=None)
        )
        due = (
            select(Delivery.id)
            .where(Delivery.status == "queued", Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
        if engine.dialect.name == "postgresql":
            # a materialised CTE runs the locking subquery exactly once; inside IN (...)
            # PostgreSQL may re-run it and return more than `limit` rows
            due = due.with_for_update(skip_locked=True).cte("due").prefix_with("MATERIALIZED")
            target = select(due.c.id)
        else:
            target = due
        rows = conn.execute(
            update(Delivery)
            .where(Delivery.id.in_(target.scalar_subquery()), Delivery.status == "queued")
            .values(status="sending", claimed_by=worker, claimed_at=now)
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
                Delivery.status == "sending",
            )
            .values(status="queued", claimed_by=None, claimed_at=None)
        )
    return result.rowcount or 0


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
    delay = min(cap, base * (2 ** max(attempt - 1, 0)))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def record(
    engine: Engine,
    outcomes: Sequence[Outcome],
    *,
    worker: str,
    max_attempts: int,
    retry_base: float,
    retry_max: float,
) -> dict[str, int]:
    """Write each try's result and attempt row in one transaction; returns counts by status."""
    counts: dict[str, int] = {}
    if not outcomes:
        return counts
    now = utcnow()
    with Session(engine) as session:
        rows = {
            d.id: d
            for d in session.execute(
                select(Delivery).where(Delivery.id.in_([o.delivery_id for o in outcomes]))
            ).scalars()
        }
        for o in outcomes:
            d = rows.get(o.delivery_id)
            if d is None:
                continue
            if o.result == "deferred":  # rate-limited before trying: not an attempt
                d.status, d.claimed_by, d.claimed_at = "queued", None, None
                d.next_attempt_at = now + dt.timedelta(seconds=o.retry_after or 1)
                counts["deferred"] = counts.get("deferred", 0) + 1
                session.add(d)
                continue
            d.attempts += o.result in ("sent", "temporary", "permanent")
            d.last_error = o.error
            d.claimed_by, d.claimed_at = None, None
            if o.result == "sent":
                d.status, d.sent_at, d.message_id = "sent", now, o.message_id
            elif o.result == "temporary" and d.attempts < max_attempts:
                delay = backoff_seconds(d.attempts, base=retry_base, cap=retry_max)
                if o.retry_after:
                    delay = max(delay, o.retry_after)
                d.status, d.next_attempt_at = "queued", now + dt.timedelta(seconds=delay)
            elif o.result in ("temporary", "permanent"):
                d.status = "failed"
            else:
                d.status = o.result  # suppressed | cancelled
            counts[d.status] = counts.get(d.status, 0) + 1
            session.add(d)
            if o.result in ("sent", "temporary", "permanent"):
                MESSAGES.labels(d.channel, o.result).inc()
                if o.started_at is not None:
                    SEND_SECONDS.labels(d.channel).observe(
                        max(0.0, (now - o.started_at).total_seconds())
                    )
                session.add(
                    DeliveryAttempt(
                        delivery_id=d.id,
                        started_at=o.started_at or now,
                        finished_at=now,
                        outcome=o.result,
                        status_code=o.status_code,
                        error="\n".join(filter(None, [o.error, o.detail])) or None,
                        worker=worker,
                    )
                )
        session.commit()
    return counts


def hold_endpoint(session: Session, endpoint_id: int) -> int:
    """A disabled endpoint's queued messages wait, unclaimable, until it is enabled."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id, Delivery.status == "queued")
        .values(status="held")
    )
    return result.rowcount or 0


def resume_endpoint(session: Session, endpoint_id: int) -> int:
    result = session.execute(
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint_id, Delivery.status == "held")
        .values(status="queued", next_attempt_at=utcnow())
    )
    return result.rowcount or 0


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status.in_(["queued", "sending"]))
        ).scalar_one()


def next_due_in(engine: Engine) -> float | None:
    """Seconds until the next queued row is due (0 if one is due now), None if none queued."""
    with engine.connect() as conn:
        when = conn.execute(
            select(func.min(Delivery.next_attempt_at)).where(Delivery.status == "queued")
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


def last_errors(engine: Engine, limit: int = 10) -> list[tuple[int, str, str, str]]:
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
    return [tuple(r) for r in rows]
