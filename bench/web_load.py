"""The web app under load while a send runs: does any route freeze?

    python bench/web_load.py [--seconds 60] [--readers 5000] [--send-rate 50]
                             [--clients 4] [--postgres URL] [--json]

Starts the real service (`newsletter serve` in a subprocess on 127.0.0.1) on a fresh
database (SQLite, or a new PostgreSQL database with --postgres) with a monthly digest
queued for N readers, mail going to a discarding SMTP server on 127.0.0.1 (throttled
with --send-rate so the send lasts the whole run). Then, for --seconds, each of
--clients runs API calls one after another (list subscribers, add a subscriber, add an
event) while another polls /healthz every 100 ms. Prints p50/p95/p99/max of /healthz
and of all requests, the requests over 5 s and the failed ones (5xx or no answer).
Target: /healthz p99 under 1 s and no request over 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import add_subscribers, free_port, fresh_database
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.core.db import make_engine
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment

HERE = Path(__file__).resolve().parent
SLOW = 5.0

SINK = """
import asyncio, sys
from aiosmtpd.controller import Controller
class Discard:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"
c = Controller(Discard(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
try:
    asyncio.run(asyncio.Event().wait())
finally:
    c.stop()
"""


def plant_send(url: str, readers: int) -> tuple[str, int]:
    """Readers, a monthly digest queued for all of them, and an admin token."""
    add_subscribers(url, readers)
    engine = make_engine(url)
    settings = Settings(database_url=url)
    with Session(engine, expire_on_commit=False) as s:
        summary = plan_period(
            session=s,
            env=make_environment(settings.templates_dir),
            settings=settings,
            frequency="monthly",
            period_key="2025-07",
        )
        _, token = create_token(session=s, name="bench")
        s.commit()
    queued = outbox.pending_count(engine)
    engine.dispose()
    del summary
    return token, queued


def fresh_pg(url: str) -> str:
    sys.path.insert(0, str(HERE))
    from run_all import fresh_pg as make

    return make(url)


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


class Timings:
    def __init__(self):
        self.rows: list[tuple[str, float, int]] = []  # (kind, seconds, status; 0 = no answer)

    def add(self, kind: str, seconds: float, status: int) -> None:
        self.rows.append((kind, seconds, status))


async def timed(timings: Timings, kind: str, request) -> None:
    """Await one request (a coroutine) and note how long it took."""
    start = time.perf_counter()
    try:
        status = (await request).status_code
    except httpx.HTTPError:
        status = 0
    timings.add(kind, time.perf_counter() - start, status)


async def api_client(base: str, token: str, n: int, until: float, timings: Timings) -> None:
    counter = itertools.count()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
        while time.monotonic() < until:
            i = next(counter)
            step = i % 4
            if step in (0, 2):
                await timed(
                    timings,
                    "GET /api/v1/subscribers",
                    c.get("/api/v1/subscribers", params={"limit": 50, "offset": i % 500}),
                )
            elif step == 1:
                body = {"email": f"load{n}-{i}@bench.example", "topics": ["capital"]}
                await timed(
                    timings,
                    "POST /api/v1/subscribers",
                    c.post("/api/v1/subscribers", json=body),
                )
            else:
                body = {
                    "title": {"en": f"Load test {n}-{i} raises funding", "zh": f"压测 {n}-{i}"},
                    "summary": {"en": "A round.", "zh": "一轮融资。"},
                    "url": f"https://load.example/{n}/{i}",
                    "source": "Bench Wire",
                    "region": "global",
                    "occurred_on": "2025-07-15",
                    "language": "en",
                    "importance": 2,
                }
                await timed(timings, "POST /api/v1/events", c.post("/api/v1/events", json=body))


async def health_poller(base: str, until: float, timings: Timings) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        while time.monotonic() < until:
            await timed(timings, "GET /healthz", c.get("/healthz"))
            await asyncio.sleep(0.1)


async def load(base: str, token: str, seconds: float, clients: int) -> Timings:
    timings = Timings()
    until = time.monotonic() + seconds
    await asyncio.gather(
        health_poller(base, until, timings),
        *(api_client(base, token, n, until, timings) for n in range(clients)),
    )
    return timings


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(rows: list[tuple[str, float, int]]) -> dict:
    secs = [r[1] for r in rows]
    return {
        "requests": len(rows),
        "p50": round(pct(secs, 50), 4),
        "p95": round(pct(secs, 95), 4),
        "p99": round(pct(secs, 99), 4),
        "max": round(max(secs), 4),
        "over_5s": sum(s > SLOW for s in secs),
        "failed": sum(st == 0 or st >= 500 for _, _, st in rows),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--readers", type=int, default=5000)
    ap.add_argument("--send-rate", type=float, default=50, help="messages/s; 0 = unlimited")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--postgres", default=None, help="a PostgreSQL URL: a new database is made")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    url, tmp = fresh_database(fresh_pg(args.postgres) if args.postgres else None)
    token, queued = plant_send(url, args.readers)
    smtp_port, web_port = free_port(), free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(smtp_port)])
    workdir = tmp or tempfile.mkdtemp(prefix="nl-bench-")
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NEWSLETTER_SEND_RATE": str(args.send_rate),
        "NEWSLETTER_SECRET_KEY": secrets.token_urlsafe(32),
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{web_port}",
    }
    log = open(Path(workdir) / "serve.log", "w")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(web_port)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(web_port, serve, "newsletter serve")
        timings = asyncio.run(
            load(f"http://127.0.0.1:{web_port}", token, args.seconds, args.clients)
        )
        engine = make_engine(url)
        left = outbox.pending_count(engine)
        engine.dispose()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
        sink.terminate()
        sink.wait(timeout=10)
        log.close()
    if serve.returncode != 0:
        print(f"serve exited with {serve.returncode}; see {log.name}", file=sys.stderr)

    health = [r for r in timings.rows if r[0] == "GET /healthz"]
    result = {
        "database": "postgresql" if args.postgres else "sqlite",
        "seconds": args.seconds,
        "clients": args.clients,
        "readers": args.readers,
        "sent_during_run": queued - left,
        "healthz": summary(health),
        "all": summary(timings.rows),
        "by_route": {
            kind: summary([r for r in timings.rows if r[0] == kind])
            for kind in sorted({r[0] for r in timings.rows})
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['database']}: {args.seconds:.0f} s, {args.clients} API clients + /healthz "
        f"every 100 ms, a digest to {args.readers:,} readers sending "
        f"({result['sent_during_run']:,} sent during the run)"
    )
    print(
        f"{'route':28} {'n':>6} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'>5s':>5} {'fail':>5}"
    )
    for kind, s in [("/healthz", result["healthz"]), ("all requests", result["all"])] + list(
        result["by_route"].items()
    ):
        print(
            f"{kind:28} {s['requests']:>6} {s['p50']:>8.3f} {s['p95']:>8.3f} {s['p99']:>8.3f} "
            f"{s['max']:>8.3f} {s['over_5s']:>5} {s['failed']:>5}"
        )
    ok = result["healthz"]["p99"] < 1 and result["all"]["over_5s"] == 0
    print("target (/healthz p99 < 1 s, no request over 5 s):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
