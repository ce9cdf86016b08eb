"""APScheduler wiring: persistent jobs in the service's database, each a thin call into
the domain (`schedule`, `alerts`, `feeds`). Every job is safe to run twice or in two
processes at once: the outbox's idempotency keys and the digest-run rows see to it.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine, text
from sqlmodel import Session

from .rendering import make_environment
from .settings import Settings

log = logging.getLogger("newsletter.scheduler")


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
    from .schedule import run_due_digests

    ctx = _ctx()
    run_due_digests(
        engine=ctx.engine, env=make_environment(ctx.settings.templates_dir), settings=ctx.settings
    )


def alerts_job() -> None:
    from .alerts import enqueue_recent_alerts

    ctx = _ctx()
    with Session(ctx.engine) as session:
        if enqueue_recent_alerts(session=session, settings=ctx.settings):
            session.commit()


def feeds_job() -> None:
    from .feeds import poll_feeds

    ctx = _ctx()
    with exclusive(ctx.engine, "feeds") as mine:
        if mine:  # one poller at a time across processes
            poll_feeds(engine=ctx.engine, settings=ctx.settings)


LOCK_IDS = {"feeds": 7_310_001}


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


def build_scheduler(engine: Engine, settings: Settings) -> BaseScheduler:
    global _context
    _context = Context(engine, settings)
    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 600},
        timezone="UTC",
    )
    for job_id, (func, setting) in JOBS.items():
        seconds = getattr(settings, setting) if setting else 60.0
        scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            id=job_id,
            name=func.__doc__ or job_id,
            replace_existing=True,
            next_run_time=None,
        )
    return scheduler


def start(scheduler: BaseScheduler) -> None:
    """Start, and run every job once right away (this is also the catch-up after downtime)."""
    import datetime as dt

    scheduler.start()
    now = dt.datetime.now(dt.UTC)
    for job in scheduler.get_jobs():
        job.modify(next_run_time=now)
    log.info("scheduler started with %d jobs", len(scheduler.get_jobs()))


def describe(engine: Engine) -> list[tuple[str, str, str]]:
    """(id, trigger, next run) of the stored jobs, without starting anything."""
    store = SQLAlchemyJobStore(engine=engine)
    store.start(None, "default")
    try:
        return [
            (j.id, str(j.trigger), j.next_run_time.isoformat() if j.next_run_time else "paused")
            for j in store.get_all_jobs()
        ]
    finally:
        store.shutdown()
