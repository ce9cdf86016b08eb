"""Webhook fan-out: alerts to M generic (signed) endpoints on a local receiver, beside the
receiver's own limit measured with wrk in the same run.

    python bench/webhook_fanout.py [--endpoints 50] [--events 40] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import ensure_wrk, free_port, fresh_database
from sqlmodel import Session

from newsletter.alerts import enqueue_alerts
from newsletter.db import make_engine
from newsletter.delivery.worker import Worker
from newsletter.importing import import_records
from newsletter.settings import Settings
from newsletter.webhooks import EndpointIn, add_endpoint

HERE = Path(__file__).resolve().parent


def start_receiver(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "receiver_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise SystemExit("receiver did not start")


def wrk_limit(port: int, body_size: int) -> float | None:
    if not shutil.which("wrk"):
        return None
    script = HERE / ".wrk-post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.body = string.rep("x", {body_size})\n',
        encoding="utf-8",
    )
    try:
        out = subprocess.run(
            ["wrk", "-t2", "-c16", "-d5s", "-s", str(script), f"http://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        script.unlink(missing_ok=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoints", type=int, default=50)
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()

    ensure_wrk()
    port = free_port()
    receiver = start_receiver(port)
    url, tmp = fresh_database(args.database_url)
    try:
        settings = Settings(
            database_url=url,
            webhook_allow_http=True,
            webhook_allow_networks=["127.0.0.0/8"],
            alert_batch_seconds=0,
            worker_batch=args.endpoints,
        )
        engine = make_engine(url)
        with Session(engine) as s:
            for n in range(args.endpoints):
                add_endpoint(
                    session=s,
                    settings=settings,
                    ep_in=EndpointIn(
                        name=f"ep{n}",
                        platform="generic",
                        url=f"http://127.0.0.1:{port}/hook/{n}",
                        topics="governance,capital,hardware,open-source",
                        mode="instant",
                    ),
                )
            # events arriving after the endpoints exist (older ones never alert a new endpoint)
            report = import_records(
                session=s,
                records=iter(
                    (
                        f"record {n}",
                        {
                            "title": f"Chipmaker {n} raises funding for open-source GPU work",
                            "url": f"https://bench.example/{n}",
                            "occurred_on": "2025-08-01",
                        },
                    )
                    for n in range(args.events)
                ),
            )
            rows = sum(
                enqueue_alerts(session=s, settings=settings, event_ids=[e]) for e in report.new_ids
            )
            s.commit()
        worker = Worker(engine=engine, settings=settings)
        t0 = time.perf_counter()
        stats = asyncio.run(worker.run(until_empty=True, poll_seconds=0.05))
        elapsed = time.perf_counter() - t0
        limit = wrk_limit(port, 1500)
    finally:
        receiver.terminate()
        receiver.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    sent = stats.by_status.get("sent", 0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{args.endpoints} endpoints, {rows} alert rows (grouped per endpoint per batch)")
    print(f"{'sender':<40}{'req/s':>10}")
    print(f"{'newsletter worker (signed, SSRF-checked)':<40}{sent / elapsed:>10,.0f}")
    if limit:
        print(f"{'wrk -c16 into the same receiver':<40}{limit:>10,.0f}")
        print(f"ratio ours / receiver limit: {sent / elapsed / limit:.3f}")


if __name__ == "__main__":
    main()
