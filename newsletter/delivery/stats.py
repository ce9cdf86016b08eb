"""Delivery figures per UTC day, for the API's statistics and the admin dashboard's chart:
one place that knows how each database turns a timestamp into a UTC day."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from newsletter.core.models import Delivery, DeliveryAttempt
from newsletter.delivery.outbox import DeliveryStatus


def utc_day(engine: Engine, column):
    """The UTC calendar day of a timestamp column, as SQL."""
    if engine.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite stores UTC text


def as_date(value) -> dt.date:
    """A day as the driver returns it (a date, or ISO text on SQLite)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def since(first: dt.date) -> dt.datetime:
    return dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC)


def sent_and_failed(engine: Engine, first: dt.date) -> list[tuple[dt.date, str, str, int]]:
    """(day, channel, "sent" | "failed", count) from `first` on: sent rows on the day they
    were sent, failed ones on the day of their last try."""
    sent_day = utc_day(engine, Delivery.sent_at)
    sent = (
        select(sent_day, Delivery.channel, func.count())
        .where(Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since(first))
        .group_by(sent_day, Delivery.channel)
    )
    last_try = (
        select(
            DeliveryAttempt.delivery_id.label("delivery_id"),
            func.max(DeliveryAttempt.finished_at).label("at"),
        )
        .group_by(DeliveryAttempt.delivery_id)
        .subquery()
    )
    failed_day = utc_day(engine, last_try.c.at)
    failed = (
        select(failed_day, Delivery.channel, func.count())
        .join(last_try, last_try.c.delivery_id == Delivery.id)
        .where(Delivery.status == DeliveryStatus.FAILED, last_try.c.at >= since(first))
        .group_by(failed_day, Delivery.channel)
    )
    rows = []
    with engine.connect() as conn:
        for status, query in (("sent", sent), ("failed", failed)):
            for day, channel, count in conn.execute(query):
                rows.append((as_date(day), channel, status, count))
    return rows


def attempts_by_outcome(engine: Engine, first: dt.date) -> list[tuple[dt.date, str, int]]:
    """(day, outcome, attempts) from `first` on, by the day each attempt started."""
    column = DeliveryAttempt.started_at
    day = utc_day(engine, column)
    with engine.connect() as conn:
        rows = conn.execute(
            select(day, DeliveryAttempt.outcome, func.count())
            .where(column >= since(first))
            .group_by(day, DeliveryAttempt.outcome)
        ).all()
    return [(as_date(value), outcome, n) for value, outcome, n in rows]
