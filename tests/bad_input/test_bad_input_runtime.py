"""The running service under faults: a row that crashes, a worker loop that dies, a job
store that is locked once, a database file deleted or read-only, a write lock held while
the web app must answer. What the operator and the readers see, on SQLite and PostgreSQL
where the fault exists on both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time

import httpx
import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.admin_tokens import create_token
from newsletter.core.db import make_engine, sqlite_file
from newsletter.core.health import Health
from newsletter.core.models import Delivery, DeliveryAttempt, Subscriber
from newsletter.delivery import outbox
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig
from newsletter.delivery.worker import Worker
from newsletter.pipeline.sample import load_sample
from newsletter.service import runner as service
from newsletter.service import scheduler
from newsletter.web.app import create_app
from tests.support.env import BACKEND
from tests.support.planning import plan_in
from tests.support.settings import mail_settings
from tests.support.smtp_server import free_port

READERS = [
    ("ada@example.com", "en", "governance,capital"),
    ("li@example.com", "zh", "hardware,open-source"),
    ("bo@example.com", "en", "open-source"),
    ("mei@example.com", "en", "capital,governance"),
]
sqlite_only = pytest.mark.skipif(BACKEND != "sqlite", reason="an SQLite file fault")


@pytest.fixture(autouse=True)
def no_job_table_left(db_url):
    """The scheduler's job table is not one of our models: drop it, so that a later test
    comparing the schema with the models (on the shared PostgreSQL database) sees none."""
    yield
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))
    engine.dispose()


def queue_digest(engine, settings) -> None:
    """The sample events, four readers, and the July monthly digest queued for them."""
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email_, lang, topics in READERS:
            add_subscriber(
                session=s, sub_in=SubscriberIn(email=email_, language=lang, topics=topics)
            )
        plan_in(s, settings)
        s.commit()


def deliveries(engine) -> dict[str, Delivery]:
    with Session(engine) as s:
        rows = s.execute(
            select(Subscriber.email, Delivery).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
        return {email_: d for email_, d in rows}


def attempts(engine, delivery_id: int) -> list[DeliveryAttempt]:
    with Session(engine) as s:
        return list(
            s.execute(
                select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
            ).scalars()
        )


def wait_for(check, timeout: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()


@contextlib.contextmanager
def running_service(engine, settings, **kw):
    """`serve` in this process (its own thread and event loop) on a free port."""
    port = free_port()
    started: dict = {}

    def main():
        async def go():
            started["loop"], started["stop"] = asyncio.get_running_loop(), asyncio.Event()
            started["ok"] = await service.run(
                engine, settings, port=port, stop=started["stop"], **kw
            )

        asyncio.run(go())

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def answers():
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        return False

    assert wait_for(answers, timeout=20), "serve did not start"
    try:
        yield url, started
    finally:
        started["loop"].call_soon_threadsafe(started["stop"].set)
        thread.join(timeout=20)
        assert not thread.is_alive(), "serve did not stop"


# --- item 3: one bad row fails alone; the worker loop is restarted ------------------------


class BuggyChannel(SmtpChannel):
    """The real SMTP channel, with a bug that hits one recipient."""

    async def send(self, *, sender, recipient, message, key=""):
        if recipient == "bo@example.com":
            raise RuntimeError("channel bug for this one address")
        return await super().send(sender=sender, recipient=recipient, message=message, key=key)


def test_a_row_that_crashes_the_channel_fails_alone(engine, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    queue_digest(engine, settings)
    channel = BuggyChannel(SmtpConfig.from_url(smtp_server.url))

    stats = asyncio.run(
        Worker(engine=engine, settings=settings, channel=channel).run(
            until_empty=True, poll_seconds=0.05
        )
    )

    assert stats is not None  # the loop ended normally, with the outbox empty
    got = sorted(r.rcpt_tos[0] for r in smtp_server.recorder.received)
    assert got == ["ada@example.com", "li@example.com", "mei@example.com"]
    rows = deliveries(engine)
    assert {e: d.status for e, d in rows.items()} == {
        "ada@example.com": "sent",
        "li@example.com": "sent",
        "mei@example.com": "sent",
        "bo@example.com": "failed",
    }
    bo = rows["bo@example.com"]
    assert bo.attempts == 1 and "RuntimeError: channel bug" in bo.last_error
    (attempt,) = attempts(engine, bo.id)
    assert attempt.outcome == "permanent"
    assert "RuntimeError: channel bug for this one address" in attempt.error
    assert "Traceback" in attempt.error


def test_a_row_that_cannot_be_built_fails_alone(engine, db_url, smtp_server, monkeypatch):
    """A message that raises while being built (an address the mail libraries cannot
    encode, a template bug) fails that delivery permanently; the others go out."""
    from newsletter.delivery import email_jobs

    settings = mail_settings(db_url, smtp_server.url)
    queue_digest(engine, settings)
    real = email_jobs.build_digest_email

    def build(*, subscriber, **kw):
        if subscriber.email == "li@example.com":
            "用户".encode("ascii")  # raises UnicodeEncodeError, as formataddr did
        return real(subscriber=subscriber, **kw)

    monkeypatch.setattr(email_jobs, "build_digest_email", build)

    asyncio.run(Worker(engine=engine, settings=settings).run(until_empty=True, poll_seconds=0.05))

    assert len(smtp_server.recorder.received) == 3
    rows = deliveries(engine)
    li = rows.pop("li@example.com")
    assert li.status == "failed" and "UnicodeEncodeError" in li.last_error
    assert {d.status for d in rows.values()} == {"sent"}
    (attempt,) = attempts(engine, li.id)
    assert "UnicodeEncodeError" in attempt.error and "Traceback" in attempt.error
    # nothing is left in `sending` to come back after a restart
    assert outbox.pending_count(engine) == 0


def test_a_failure_recording_the_batch_does_not_stop_the_worker(
    engine, db_url, smtp_server, monkeypatch
):
    settings = mail_settings(db_url, smtp_server.url, lease_seconds=0.2)
    queue_digest(engine, settings)
    real, calls = outbox.record, []

    def record(*args, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug while recording")
        return real(*args, **kw)

    monkeypatch.setattr(outbox, "record", record)

    asyncio.run(Worker(engine=engine, settings=settings).run(until_empty=True, poll_seconds=0.05))

    # the batch stayed leased, was reclaimed when the lease ended, and was recorded
    assert len(calls) >= 2
    assert {d.status for d in deliveries(engine).values()} == {"sent"}


def test_serve_restarts_a_dead_worker_and_reports_it(engine, db_url, smtp_server, monkeypatch):
    settings = mail_settings(db_url, smtp_server.url)
    queue_digest(engine, settings)
    monkeypatch.setattr(service, "RESTART_BASE_SECONDS", 2.0)
    made = []

    class DiesFirst(Worker):
        async def run(self, **kw):
            made.append(self)
            if len(made) == 1:
                await self.aclose()
                raise RuntimeError("worker loop bug")
            return await super().run(**kw)

    monkeypatch.setattr(service, "Worker", DiesFirst)

    with running_service(engine, settings, scheduler=False) as (url, _):
        down = httpx.get(url + "/readyz", timeout=5)
        down_metrics = httpx.get(url + "/metrics", timeout=5).text
        # only what was read before the restart says "down" (a loaded machine may take
        # longer than the pause to get here): `made` grows when the restart begins
        if len(made) == 1:
            assert down.status_code == 503
            assert "worker restarting" in down.json()["reason"]
            assert down.json()["worker"]["up"] is False
            assert "newsletter_worker_up 0.0" in down_metrics
        assert wait_for(lambda: len(smtp_server.recorder.received) == 4, timeout=20)
        ready = httpx.get(url + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["worker"] == {"up": True, "restarts": 1}
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert "newsletter_worker_up 1.0" in metrics
        assert "newsletter_worker_restarts_total" in metrics
    assert len(made) == 2


def test_serve_exits_non_zero_when_a_part_stops_by_itself(cli, monkeypatch):
    """Before, a part that ended (the worker dying) made `serve` shut down with exit 0."""

    class StopsAtOnce:
        should_exit = False

        async def serve(self):
            return None  # the web server ended without being asked to

    monkeypatch.setattr(service, "_web_server", lambda *a, **kw: StopsAtOnce())
    # in-process: keep the log handlers off the runner's stream, which closes afterwards
    monkeypatch.setattr("newsletter.cli.service.setup_logging", lambda verbose: None)
    result = cli("serve", "--no-worker", "--port", str(free_port()))
    assert result.exit_code == 1


# --- item 5: the scheduler survives a locked job store and reports overdue jobs --------


def test_scheduler_survives_a_locked_job_store(engine, db_url, monkeypatch):
    settings = mail_settings(db_url, None, alert_check_seconds=0.2, digest_check_seconds=0.2)
    sched = scheduler.build_scheduler(engine, settings)
    sched.retry_seconds = 0.1
    runs: list[str] = []
    sched.add_listener(lambda e: runs.append(e.job_id), EVENT_JOB_EXECUTED)
    fail = threading.Event()
    real = SQLAlchemyJobStore.update_job

    def update_job(self, job):
        if fail.is_set():
            fail.clear()
            raise OperationalError("UPDATE apscheduler_jobs", {}, Exception("database is locked"))
        return real(self, job)

    monkeypatch.setattr(SQLAlchemyJobStore, "update_job", update_job)
    scheduler.start(sched)
    try:
        assert wait_for(lambda: "alerts" in runs, timeout=10)
        fail.set()
        assert wait_for(lambda: not fail.is_set(), timeout=10)  # the failure happened
        seen = len(runs)
        assert wait_for(lambda: runs[seen:].count("alerts") >= 2, timeout=10), runs
        assert sched.errors == 1 and "database is locked" in sched.last_error
    finally:
        sched.shutdown(wait=False)


def test_readyz_reports_overdue_scheduler_jobs(engine, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    scheduler.describe(engine)  # creates the job table
    stored = SQLAlchemyJobStore(engine=engine)
    app = create_app(settings=settings, engine=engine)
    app.state.health = Health(scheduler_grace=scheduler.overdue_grace(settings))
    client = TestClient(app)
    with engine.begin() as conn:
        conn.execute(stored.jobs_t.delete())  # (PostgreSQL: left by earlier tests)
        conn.execute(
            stored.jobs_t.insert().values(id="alerts", next_run_time=time.time() + 5, job_state=b"")
        )
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["scheduler"] == {"overdue_seconds": 0.0}

    with engine.begin() as conn:  # the scheduler stopped waking up an hour ago
        conn.execute(stored.jobs_t.update().values(next_run_time=time.time() - 3600))
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "scheduler jobs are overdue" in r.json()["reason"]
    assert "newsletter_scheduler_overdue_seconds 36" in client.get("/metrics").text


# --- item 6: no database wait on the event loop ----------------------------------------


@sqlite_only
def test_web_answers_while_the_worker_waits_for_a_write_lock(engine, db_url, smtp_server):
    """The worker claims every poll (its claim is a write); while another process holds
    SQLite's write lock for 5 s, that claim waits, and the web app in the same process
    must keep answering."""
    settings = mail_settings(db_url, smtp_server.url)
    queue_digest(engine, settings)

    with running_service(engine, settings, scheduler=False) as (url, _):
        assert wait_for(lambda: len(smtp_server.recorder.received) == 4, timeout=20)
        lock = sqlite3.connect(sqlite_file(db_url), isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            answered, until = 0, time.monotonic() + 5
            while time.monotonic() < until:
                # generous: a frozen loop answers only once the lock is gone
                assert httpx.get(url + "/healthz", timeout=2).status_code == 200
                answered += 1
                time.sleep(0.1)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert answered >= 5
        assert httpx.get(url + "/readyz", timeout=10).status_code == 200


# --- item 11: a deleted SQLite file is not silently replaced --------------------------


@sqlite_only
def test_deleting_the_database_file_fails_writes_and_readiness(db_url, smtp_server, cli):
    settings = mail_settings(db_url, smtp_server.url)
    engine = make_engine(db_url, create=False)  # what `serve` uses
    with Session(engine) as s:
        load_sample(session=s)
        _, token = create_token(session=s, name="ops")
        s.commit()
    client = TestClient(create_app(settings=settings, engine=engine))
    auth = {"Authorization": f"Bearer {token}"}
    body = {"email": "ada@example.com", "topics": ["capital"], "status": "active"}
    assert client.post("/api/v1/subscribers", json=body, headers=auth).status_code == 201
    assert client.get("/readyz").status_code == 200

    path = sqlite_file(db_url)
    os.unlink(path)

    body["email"] = "bo@example.com"
    r = client.post("/api/v1/subscribers", json=body, headers=auth)
    assert r.status_code == 503 and "database is not available" in r.json()["detail"]
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "unable to open database file" in r.json()["reason"]
    assert not os.path.exists(path)  # no new empty database

    # commands do not create it either; only `db upgrade` does
    result = cli("subscribers", "list")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "newsletter db upgrade" in result.stderr
    assert not os.path.exists(path)
    assert cli("db", "upgrade").exit_code == 0 and os.path.exists(path)
    engine.dispose()


# --- item 18: a read-only database on the command line ---------------------------------


def read_only_url(db_url: str) -> str:
    if BACKEND == "sqlite":
        return f"sqlite:///file:{sqlite_file(db_url)}?mode=ro&uri=true"
    return db_url + "?options=-c%20default_transaction_read_only%3Don"


def test_a_read_only_database_gives_a_clear_error(db_url, cli, monkeypatch):
    assert cli("sample", "load").exit_code == 0
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", read_only_url(db_url))

    result = cli("subscribers", "add", "ada@example.com", "--topics", "capital")

    assert result.exit_code == 1
    assert "Traceback" not in result.output and "sqlalchemy" not in result.stderr.lower()
    assert result.stderr.startswith("Error: the database is read-only")
    # reading still works
    assert cli("subscribers", "list").exit_code == 0


def test_an_unreachable_database_gives_a_clear_error(cli, monkeypatch, tmp_path):
    for url, words in [
        (f"sqlite:///{tmp_path}/missing/dir/news.db", "cannot open the database"),
        (f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/x", "cannot connect"),
    ]:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
        result = cli("subscribers", "list")
        assert result.exit_code == 1, result.output
        assert words in result.stderr and "Traceback" not in result.output
