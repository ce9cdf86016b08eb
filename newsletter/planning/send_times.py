"""When digests are due: each reader's local send time, catch-up after downtime, once only.

Everything here takes `now` as an argument, so tests drive it with a controllable clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.core.models import DigestRun, Subscriber, WebhookEndpoint, utcnow
from newsletter.core.periods import DIGEST_FREQUENCIES, Period, previous_period
from newsletter.ingest.takes import draft_languages
from newsletter.planning.digests import SendSummary

log = logging.getLogger("newsletter.planning.send_times")
STALE_RUN = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class Due:
    frequency: str
    timezone: str
    due_at: dt.datetime  # UTC
    period: Period


def send_moments(
    frequency: str, tz: str, send_time: dt.time, start: dt.datetime, end: dt.datetime
) -> list[Due]:
    """Every scheduled send in (start, end], in UTC, with the period it covers.

    Daily at send_time; weekly on Mondays; monthly on the 1st; all in local time, so a
    DST change moves the UTC instant, not the local hour.
    """
    zone = ZoneInfo(tz)
    day = start.astimezone(zone).date() - dt.timedelta(days=1)
    last = end.astimezone(zone).date()
    out = []
    while day <= last:
        if (
            frequency == "daily"
            or (frequency == "weekly" and day.isoweekday() == 1)
            or (frequency == "monthly" and day.day == 1)
        ):
            moment = dt.datetime.combine(day, send_time, tzinfo=zone).astimezone(dt.UTC)
            if start < moment <= end:
                out.append(Due(frequency, tz, moment, previous_period(frequency, day)))
        day += dt.timedelta(days=1)
    return out


def zones(session: Session, frequency: str) -> dict[str, dt.datetime]:
    """The time zones that have readers (or team endpoints) of this frequency, each with
    the moment its first one was added."""
    subs = session.execute(
        select(Subscriber.timezone, func.min(Subscriber.created_at))
        .where(Subscriber.frequency == frequency, Subscriber.status == "active")
        .group_by(Subscriber.timezone)
    ).all()
    hooks = session.execute(
        select(WebhookEndpoint.timezone, func.min(WebhookEndpoint.created_at))
        .where(WebhookEndpoint.mode == frequency)
        .group_by(WebhookEndpoint.timezone)
    ).all()
    first: dict[str, dt.datetime] = {}
    for tz, created in [*subs, *hooks]:
        created = created.replace(tzinfo=dt.UTC) if created.tzinfo is None else created
        first[tz] = min(first.get(tz, created), created)
    return dict(sorted(first.items()))


def _claim_run(session: Session, due: Due, now: dt.datetime) -> bool:
    """Insert the run row; False if another scheduler (or an earlier tick) has it."""
    # a run left 'running' by a scheduler that died is taken over after a while
    session.execute(
        delete(DigestRun).where(
            DigestRun.outcome == "running", DigestRun.started_at < now - STALE_RUN
        )
    )
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    result = session.execute(
        insert(DigestRun)
        .values(
            frequency=due.frequency,
            period=due.period.key,
            timezone=due.timezone,
            due_at=due.due_at,
            started_at=now,
            recipients=0,
            enqueued=0,
            outcome="running",
        )
        .on_conflict_do_nothing(index_elements=["frequency", "period", "timezone"])
        .returning(DigestRun.id)
    ).first()
    session.commit()
    return result is not None


def _finish(session: Session, due: Due, **values) -> None:
    session.execute(
        update(DigestRun)
        .where(
            DigestRun.frequency == due.frequency,
            DigestRun.period == due.period.key,
            DigestRun.timezone == due.timezone,
        )
        .values(finished_at=utcnow(), **values)
    )
    session.commit()


def run_due_digests(
    *,
    engine: Engine,
    env: Environment,
    settings,
    plan: Callable[..., SendSummary],
    now: dt.datetime | None = None,
) -> list[tuple[Due, str]]:
    """Plan every digest whose local send time has passed and that no run has claimed.

    `plan` plans one (frequency, period, time zone): `pipeline.plan_period`, which calls
    this through `pipeline.plan_due_periods`.

    Looks back over the catch-up horizon (plus one period, to log what it skips; a send
    from before the first reader or team of that frequency and time zone was added is
    not a missed one, so a new database reports none).
    Returns what this call did: (due, "done" | "skipped" | "failed").
    """
    now = now or utcnow()
    horizon = dt.timedelta(hours=settings.catch_up_hours)
    send_time = dt.time.fromisoformat(settings.digest_send_time)
    done: list[tuple[Due, str]] = []
    with Session(engine, expire_on_commit=False) as session:
        for frequency in DIGEST_FREQUENCIES:
            held = hold(settings, frequency)
            start = now - horizon - held - LOOKBACK[frequency]
            for tz, first_reader in zones(session, frequency).items():
                for due in send_moments(frequency, tz, send_time, start, now):
                    if due.due_at < now - horizon and due.due_at < first_reader:
                        continue  # nobody took this digest yet: not missed, nothing to log
                    if take_deadline(session, settings, due, now) is not None:
                        # not claimed: every tick (of this or a restarted scheduler) asks again
                        continue
                    if _claim_run(session, due, now):
                        oldest = now - horizon - held
                        done.append((due, _run_one(session, env, settings, plan, due, oldest)))
    return done


def hold(settings, frequency: str) -> dt.timedelta:
    """How long after its time a send may wait for its sharp takes to be approved."""
    if frequency != "monthly":
        return dt.timedelta(0)
    return dt.timedelta(hours=settings.take_deadline_hours)


def take_deadline(session: Session, settings, due: Due, now: dt.datetime) -> dt.datetime | None:
    """When a due monthly send waits for a sharp take to be approved: the moment it goes
    out regardless (NEWSLETTER_TAKE_UNAPPROVED then says whether the draft goes with
    it). None when it may go now: every take of the month approved (or none written), or
    the deadline passed."""
    deadline = due.due_at + hold(settings, due.frequency)
    if now >= deadline:
        return None
    return deadline if draft_languages(session=session, period=due.period.key) else None


@dataclass(frozen=True)
class Waiting:
    """A monthly send held for its sharp takes: what the dashboard and Send page show."""

    period: str
    timezone: str
    due_at: dt.datetime
    deadline: dt.datetime
    languages: list[str]  # the takes still drafts
    unapproved: str  # omit|include: what happens at the deadline


def waiting_sends(*, session: Session, settings, now: dt.datetime | None = None) -> list[Waiting]:
    """The monthly sends that are due and waiting for a take's approval, soonest first."""
    now = now or utcnow()
    held = hold(settings, "monthly")
    if not held:
        return []
    send_time = dt.time.fromisoformat(settings.digest_send_time)
    out = []
    for tz in zones(session, "monthly"):
        for due in send_moments("monthly", tz, send_time, now - held, now):
            deadline = take_deadline(session, settings, due, now)
            if deadline is None:
                continue
            planned = session.execute(
                select(DigestRun.id).where(
                    DigestRun.frequency == "monthly",
                    DigestRun.period == due.period.key,
                    DigestRun.timezone == tz,
                )
            ).first()
            if planned is None:
                languages = draft_languages(session=session, period=due.period.key)
                out.append(
                    Waiting(
                        due.period.key,
                        tz,
                        due.due_at,
                        deadline,
                        languages,
                        settings.take_unapproved,
                    )
                )
    return sorted(out, key=lambda w: (w.deadline, w.timezone))


def next_sends(*, session: Session, settings, now: dt.datetime | None = None) -> list[Due]:
    """The next scheduled digest of each (frequency, time zone) that has readers or team
    endpoints, soonest first: what `schedule show` tells an admin."""
    now = now or utcnow()
    send_time = dt.time.fromisoformat(settings.digest_send_time)
    upcoming = []
    for frequency in DIGEST_FREQUENCIES:
        for tz in zones(session, frequency):
            moments = send_moments(frequency, tz, send_time, now, now + LOOKBACK[frequency])
            upcoming.extend(moments[:1])
    return sorted(upcoming, key=lambda due: (due.due_at, due.frequency, due.timezone))


LOOKBACK = {
    "daily": dt.timedelta(days=2),
    "weekly": dt.timedelta(days=8),
    "monthly": dt.timedelta(days=32),
}


def _run_one(
    session: Session, env: Environment, settings, plan, due: Due, oldest: dt.datetime
) -> str:
    what = f"{due.frequency} digest {due.period.key} for {due.timezone}"
    if due.due_at < oldest:
        log.warning(
            "skipping %s: due %s, older than the catch-up horizon", what, due.due_at.isoformat()
        )
        _finish(session, due, outcome="skipped", note="older than the catch-up horizon")
        return "skipped"
    try:
        summary = plan(
            session=session,
            env=env,
            settings=settings,
            frequency=due.frequency,
            period_key=due.period.key,
            timezone=due.timezone,
        )
    except Exception:
        session.rollback()
        # forget the claim so the next tick tries again; enqueueing is idempotent
        session.execute(
            delete(DigestRun).where(
                DigestRun.frequency == due.frequency,
                DigestRun.period == due.period.key,
                DigestRun.timezone == due.timezone,
            )
        )
        session.commit()
        log.exception("%s failed", what)
        return "failed"
    sent = summary.enqueued + summary.endpoint_rows
    _finish(
        session,
        due,
        outcome="done",
        recipients=summary.recipients + summary.endpoints,
        enqueued=sent,
    )
    log.info("%s: %d reader(s), %d new message(s)", what, summary.recipients, sent)
    return "done"
