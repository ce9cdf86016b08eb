"""APScheduler wiring: persistent jobs in the service's database, each a thin call into
the domain (`schedule`, `alerts`, `feeds`, and the bounce mailbox when one is configured).
Every job is safe to run twice or in two processes at once: the outbox's idempotency
keys, the digest-run rows and the bounces' message hashes see to it.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import contextmanager
from dataclasses import dataclass

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine, text
from sqlmodel import Session

from newsletter import pipeline
from newsletter.core.settings import Settings
from newsletter.feedback import mailbox
from newsletter.ingest.feeds import CHECK_SECONDS as FEED_CHECK_SECONDS
from newsletter.rendering.editions import make_environment

log = logging.getLogger("newsletter.service.scheduler")


@dataclass
class Context:
    engine: Engine
    settings: Settings


# Jobs are stored by reference in the database; the running process supplies the context.
_context: Context | None = None


def _ctx() -> Context:
    if _context is None:
        raise RuntimeError("the scheduler context is not set")
    return _context


def digests_job() -> None:
    ctx = _ctx()
    pipeline.plan_due_periods(
        engine=ctx.engine, env=make_environment(ctx.settings.templates_dir), settings=ctx.settings
    )


def alerts_job() -> None:
    ctx = _ctx()
    with Session(ctx.engine) as session:
        if pipeline.queue_recent_alerts(session=session, settings=ctx.settings):
            session.commit()


def feeds_job() -> None:
    ctx = _ctx()
    with exclusive(ctx.engine, "feeds") as mine:
        if mine:  # one poller at a time across processes
            pipeline.poll_feeds(engine=ctx.engine, settings=ctx.settings)


def bounce_mailbox_job() -> None:
    ctx = _ctx()
    if not ctx.settings.bounce_imap_host:
        return  # stored by a run that had a mailbox configured
    with exclusive(ctx.engine, "bounce-mailbox") as mine:
        if mine:  # one poller at a time across processes
            mailbox.poll(ctx.engine, ctx.settings)


LOCK_IDS = {"feeds": 7_310_001, "bounce-mailbox": 7_310_002}


@contextmanager
def exclusive(engine: Engine, name: str):
    """A PostgreSQL advisory lock (SQLite: one process, always ours)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_IDS[name]}).scalar()
        try:
            yield bool(got)
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_IDS[name]})
                conn.commit()


JOBS = {
    "digests": (digests_job, "digest_check_seconds"),
    "alerts": (alerts_job, "alert_check_seconds"),
    "feeds": (feeds_job, None),
}
# jobs that run only when configured: (function, interval setting, whether configured)
OPTIONAL_JOBS = {
    "bounce-mailbox": (bounce_mailbox_job, "bounce_imap_poll_seconds", "bounce_imap_host"),
}


class ResilientScheduler(BackgroundScheduler):
    """A scheduler in its own thread (its job store queries never block the event loop)
    that survives job store errors.

    APScheduler 3 retries only a failing `get_due_jobs`; when `update_job` or
    `get_next_run_time` raises (SQLite "database is locked"), the exception ends its
    wake-up loop and no job runs again. Here any such error is logged and the wake-up
    is re-armed a few seconds later; the jobs are safe to run twice.
    """

    retry_seconds = 5.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors = 0
        self.last_error: str | None = None

    def _process_jobs(self):
        try:
            return super()._process_jobs()
        except Exception as exc:  # noqa: BLE001 - never let the wake-up loop die
            from newsletter.core.metrics import SCHEDULER_ERRORS

            SCHEDULER_ERRORS.inc()
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning(
                "scheduler: job store error (%s); trying again in %.0fs",
                self.last_error,
                self.retry_seconds,
            )
            return self.retry_seconds


def overdue_grace(settings: Settings) -> float:
    """How late a stored job may be before the scheduler counts as stuck."""
    longest = max(settings.digest_check_seconds, settings.alert_check_seconds, 60.0)
    return max(120.0, 2 * longest)


def build_scheduler(engine: Engine, settings: Settings) -> ResilientScheduler:
    global _context
    _context = Context(engine, settings)
    scheduler = ResilientScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 600},
        timezone="UTC",
        jobstore_retry_interval=ResilientScheduler.retry_seconds,
    )
    for job_id, (func, setting) in JOBS.items():
        seconds = getattr(settings, setting) if setting else FEED_CHECK_SECONDS
        scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=job_id,
            name=func.__doc__ or job_id,
            replace_existing=True,
            next_run_time=None,
        )
    for job_id, (func, setting, needed) in OPTIONAL_JOBS.items():
        if getattr(settings, needed):
            scheduler.add_job(
                func,
                "interval",
                seconds=getattr(settings, setting),
                id=job_id,
                name=func.__doc__ or job_id,
                replace_existing=True,
                next_run_time=None,
            )
    return scheduler


def start(scheduler: BaseScheduler) -> None:
    """Start, and run every job once right away (this is also the catch-up after downtime)."""
    scheduler.start()
    if _context is not None:  # a job configured by an earlier run and not by this one
        for job_id, (_func, _setting, needed) in OPTIONAL_JOBS.items():
            if not getattr(_context.settings, needed) and scheduler.get_job(job_id):
                scheduler.remove_job(job_id)
    now = dt.datetime.now(dt.UTC)
    for job in scheduler.get_jobs():
        job.modify(next_run_time=now)
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))


@dataclass(frozen=True)
class StoredJob:
    id: str
    every_seconds: float | None  # None: not an interval job
    next_run: dt.datetime | None  # None: paused


def describe(engine: Engine) -> list[StoredJob]:
    """The stored jobs, how often they run and when next, without starting anything."""
    store = SQLAlchemyJobStore(engine=engine)
    store.start(None, "default")
    try:
        return [
            StoredJob(
                j.id,
                j.trigger.interval.total_seconds() if hasattr(j.trigger, "interval") else None,
                j.next_run_time,
            )
            for j in store.get_all_jobs()
        ]
    finally:
        store.shutdown()
