"""Webhook fan-out: instant alerts to many distinct signed endpoints on one local receiver,
beside that receiver's own limit measured with wrk in the same run.

    python bench/webhook_fanout.py [--endpoints 1000] [--events 5] [--database-url URL]

What it measures: N endpoints (distinct URL paths on one local receiver, platforms
generic / Feishu / DingTalk in turn, each with its own secret, so every request is
signed the platform's way) follow the topics of E new events; planning enqueues N x E
alert rows; one `newsletter worker` (claim, prepare, SSRF check, sign, POST, record)
drains them. Each request carries one delivery (a claim batch holds one row per
endpoint), so deliveries/s is also requests/s; the receiver's own count is checked.
E stays at or below 20 so no endpoint reaches its platform's send rate (DingTalk: 20 a
minute): per-endpoint pacing is on, but does not cap the figure.

The machine's limit: wrk posting a body of the same average size into the same
receiver, with as many connections as the worker has requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import ensure_wrk, free_port, fresh_database
from sqlmodel import Session

from newsletter.audience.endpoints import EndpointIn, add_endpoint, new_generic_secret
from newsletter.core.db import make_engine
from newsletter.core.settings import Settings
from newsletter.delivery.worker import Worker
from newsletter.pipeline import ingest_records

HERE = Path(__file__).resolve().parent
PLATFORMS = ("generic", "feishu", "dingtalk")  # the signed ones


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


def receiver_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


def wrk_limit(port: int, body_size: int, connections: int) -> float | None:
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
            [
                "wrk",
                "-t2",
                f"-c{connections}",
                "-d5s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}/wrk",
            ],
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
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--events", type=int, default=5, help="at most 20 (see above)")
    ap.add_argument("--batch", type=int, default=1000, help="rows claimed at once")
    ap.add_argument("--concurrency", type=int, default=None, help="requests in flight")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--profile", default=None, help="write a pyinstrument HTML profile here")
    args = ap.parse_args()
    if args.events > 20:
        raise SystemExit("--events is at most 20, or DingTalk's rate (20 a minute) defers sends")

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
            worker_batch=args.batch,
            **({"webhook_concurrency": args.concurrency} if args.concurrency else {}),
        )
        engine = make_engine(url)
        with Session(engine) as s:
            for n in range(args.endpoints):
                kind = PLATFORMS[n % len(PLATFORMS)]
                add_endpoint(
                    session=s,
                    settings=settings,
                    ep_in=EndpointIn(
                        name=f"ep{n}",
                        platform=kind,
                        url=f"http://127.0.0.1:{port}/{kind}/hook/{n}",
                        secret=new_generic_secret() if kind == "generic" else f"secret-{n}",
                        topics="governance,capital,hardware,open-source",
                        mode="instant",
                        language="zh" if n % 2 else "en",
                    ),
                )
            # events arriving after the endpoints exist (older ones never alert a new endpoint)
            # one event at a time, as they would arrive: each alerts every endpoint once
            # (events ingested together are one burst, one alert per endpoint)
            rows = sum(
                ingest_records(
                    session=s,
                    settings=settings,
                    records=iter(
                        [
                            (
                                f"record {n}",
                                {
                                    "title": f"Chipmaker {n} raises funding for open-source GPU work",
                                    "url": f"https://bench.example/{n}",
                                    "occurred_on": "2025-08-01",
                                },
                            )
                        ]
                    ),
                ).alerts
                for n in range(args.events)
            )
            s.commit()
        worker = Worker(engine=engine, settings=settings)
        profiler = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="disabled")
            profiler.start()
        t0, cpu0 = time.perf_counter(), time.process_time()
        stats = asyncio.run(worker.run(until_empty=True, poll_seconds=0.05))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if profiler:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_html(), encoding="utf-8")
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        got = receiver_stats(port)
        concurrency = settings.webhook_concurrency
        limit = wrk_limit(port, max(1, got["bytes"] // max(got["requests"], 1)), concurrency)
    finally:
        receiver.terminate()
        receiver.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    sent = stats.by_status.get("sent", 0)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"{args.endpoints} endpoints ({', '.join(PLATFORMS)}, all signed), {rows} alert rows, "
        f"batch {args.batch}, {concurrency} in flight"
    )
    print(
        f"receiver got {got['requests']} requests on {got['paths']} distinct paths, "
        f"{got['bytes'] // max(got['requests'], 1)} bytes each on average; "
        f"outcomes: {dict(sorted(stats.by_status.items()))}"
    )
    print(
        f"worker CPU (all its threads): {cpu:.2f} s in {elapsed:.2f} s, "
        f"{cpu / max(sent, 1) * 1e6:,.0f} us per delivery"
    )
    print(f"{'sender':<45}{'deliveries/s':>14}")
    print(f"{'newsletter worker (signed, SSRF-checked)':<45}{sent / elapsed:>14,.0f}")
    if limit:
        print(f"{f'wrk -c{concurrency} into the same receiver':<45}{limit:>14,.0f}")
        print(f"ratio ours / receiver limit: {sent / elapsed / limit:.3f}")


if __name__ == "__main__":
    main()
