"""Faults, bounded in time and on loopback: workers killed with SIGKILL mid-send, an SMTP
server that refuses and drops, the database going away under a running worker.
Full-size runs live in bench/faults.py."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from newsletter.core.models import Delivery
from newsletter.core.settings import Settings
from tests.support.env import ROOT
from tests.support.planning import plan_in
from tests.support.workers import drain

pytestmark = pytest.mark.slow


def seed(engine, db_url, n):
    import sys as _sys

    _sys.path.insert(0, str(ROOT / "bench"))
    from common import add_subscribers

    from newsletter.pipeline.sample import load_sample

    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    add_subscribers(db_url, n)
    settings = Settings(database_url=db_url)
    with Session(engine) as s:
        summary = plan_in(s, settings)
        s.commit()
    return summary.enqueued


def counts(engine):
    with Session(engine) as s:
        return dict(
            s.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
        )


def test_killed_workers_lose_nothing_and_duplicates_stay_within_the_window(
    engine, db_url, smtp_server, tmp_path
):
    total = seed(engine, db_url, 400)
    batch = 20
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_WORKER_BATCH": str(batch),
        "NEWSLETTER_LEASE_SECONDS": "1",
        "NEWSLETTER_SEND_RATE": "400",
    }
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        start = len(smtp_server.recorder.received)
        deadline = time.monotonic() + 20
        while len(smtp_server.recorder.received) < start + 30 and time.monotonic() < deadline:
            time.sleep(0.02)  # kill it while it is sending, not while it starts
        time.sleep(rng.uniform(0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = subprocess.run(
        [sys.executable, "-m", "newsletter", "worker", "--until-empty"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=180,
    )
    assert final.returncode == 0, final.stderr
    per_rcpt = Counter(r.rcpt_tos[0] for r in smtp_server.recorder.received)
    assert len(per_rcpt) == total  # nothing lost
    duplicates = sum(n - 1 for n in per_rcpt.values())
    print(f"\n{total} messages, {kills} SIGKILLs, {duplicates} duplicates (bound {kills * batch})")
    assert duplicates <= kills * batch  # at most the in-flight window of each killed worker
    assert sum(per_rcpt.values()) - duplicates == total
    assert counts(engine) == {"sent": total}


def test_flaky_smtp_server_gets_everything_in_the_end(engine, db_url, smtp_server):
    total = seed(engine, db_url, 150)
    smtp_server.recorder.chaos = (0.2, 0.1)  # 30% refused: 4xx or a dropped connection
    settings = Settings(
        database_url=db_url,
        smtp_url=smtp_server.url,
        retry_base_seconds=0.01,
        retry_max_seconds=0.05,
        max_attempts=30,
        worker_batch=50,
    )
    drain(engine, settings)
    per_rcpt = Counter(r.rcpt_tos[0] for r in smtp_server.recorder.received)
    assert len(per_rcpt) == total and set(per_rcpt.values()) == {1}
    assert counts(engine) == {"sent": total}
    refused = sum(smtp_server.recorder.attempts.values()) - total
    assert refused > total * 0.15  # the chaos really happened


@pytest.mark.postgres
def test_worker_reconnects_when_postgres_drops_its_connections(engine, db_url, smtp_server):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL")
    total = seed(engine, db_url, 300)
    settings = Settings(
        database_url=db_url,
        smtp_url=smtp_server.url,
        worker_batch=10,
        send_rate=300,
        lease_seconds=2,
    )
    name = db_url.rsplit("/", 1)[1]
    stop = threading.Event()

    def restart_like():
        """What a server restart looks like to clients: every connection is cut."""
        admin = engine.url.set(database="postgres")
        from newsletter.core.db import make_engine

        admin_engine = make_engine(
            admin.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )
        for _ in range(3):
            if stop.wait(0.4):
                break
            with admin_engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
        admin_engine.dispose()

    cutter = threading.Thread(target=restart_like)
    cutter.start()
    try:
        drain(engine, settings)
    finally:
        stop.set()
        cutter.join()
    per_rcpt = Counter(r.rcpt_tos[0] for r in smtp_server.recorder.received)
    assert len(per_rcpt) == total
    assert counts(engine) == {"sent": total}
