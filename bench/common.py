"""Shared pieces for benchmarks: tools from Debian, a fresh database, many subscribers."""

from __future__ import annotations

import os
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import insert, select
from sqlmodel import Session

from newsletter.core.db import make_engine, upgrade
from newsletter.core.models import Subscriber, Subscription, Topic
from newsletter.pipeline.sample import load_sample

# workers sign reader links and refuse to run without a strong key: one per benchmark run
# (inherited by the worker processes a benchmark starts)
os.environ.setdefault("NEWSLETTER_SECRET_KEY", secrets.token_hex(32))


def apt_install(package: str) -> None:
    """Install a Debian package for a benchmark tool (as root, or through sudo)."""
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing {package} from Debian ...", flush=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", package],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def ensure_postfix_tools() -> None:
    """smtp-sink and smtp-source come with Debian's postfix package."""
    if shutil.which("smtp-sink") or Path("/usr/sbin/smtp-sink").exists():
        return
    apt_install("postfix")
    # the package may start a master daemon; benchmarks need only the two tools
    subprocess.run(["postfix", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ensure_wrk() -> None:
    if not shutil.which("wrk"):
        apt_install("wrk")


def sink_command(port: int) -> list[str]:
    """smtp-sink refuses to run as root without a user to switch to."""
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return [tool("smtp-sink"), *user, "-c", f"127.0.0.1:{port}", "1024"]


def tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fresh_database(url: str | None) -> tuple[str, str | None]:
    """(url, temp dir) of a new migrated database with the sample data."""
    tmp = None
    if url is None:
        tmp = tempfile.mkdtemp(prefix="nl-bench-")
        url = f"sqlite:///{tmp}/bench.db"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    engine.dispose()
    return url, tmp


def add_subscribers(
    url: str, n: int, *, frequency: str = "monthly", seed: int = 7, batch: int = 5000
) -> None:
    """N subscribers with random topic sets (1-4 topics) and languages, inserted in bulk."""
    rng = random.Random(seed)
    engine = make_engine(url)
    with Session(engine) as s:
        topics = list(s.execute(select(Topic.id)).scalars())
        start = s.execute(select(Subscriber.id).order_by(Subscriber.id.desc())).scalar() or 0
    for lo in range(0, n, batch):
        hi = min(n, lo + batch)
        subs, links = [], []
        for i in range(lo, hi):
            sid = start + i + 1
            subs.append(
                {
                    "id": sid,
                    "email": f"reader{sid}@bench.example",
                    "name": f"Reader {sid}",
                    "language": rng.choice(["en", "zh"]),
                    "timezone": "UTC",
                    "frequency": frequency,
                    "status": "active",
                    "source": "bench",
                }
            )
            for t in rng.sample(topics, rng.randint(1, len(topics))):
                links.append({"subscriber_id": sid, "topic_id": t})
        with engine.begin() as conn:
            conn.execute(insert(Subscriber), subs)
            conn.execute(insert(Subscription), links)
    if url.startswith("postgresql"):
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval('subscriber_id_seq', (SELECT max(id) FROM subscriber))"
            )
        # what autovacuum does to a table that grew this much: statistics for the planner
        # (a fresh bulk load has none) and hint bits set, as in a database that has settled
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE subscriber, subscription")
    engine.dispose()
