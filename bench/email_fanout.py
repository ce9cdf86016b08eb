"""Email fan-out: one monthly digest to N subscribers through Postfix's smtp-sink,
beside smtp-source blasting messages of the same size into the same sink.

    python bench/email_fanout.py [--subscribers 20000] [--database-url URL] [--connections 8]

Prints messages/second for both and their ratio (ours / the machine's SMTP limit).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import socket
import subprocess
import time

from common import (
    add_subscribers,
    ensure_postfix_tools,
    free_port,
    fresh_database,
    sink_command,
    tool,
)
from sqlalchemy import select
from sqlmodel import Session

from newsletter.db import make_engine
from newsletter.delivery.messages import build_digest_email
from newsletter.delivery.worker import Worker
from newsletter.digests import send_digest
from newsletter.models import Delivery, Edition, Subscriber
from newsletter.rendering import make_environment
from newsletter.settings import Settings


def start_sink(port: int) -> subprocess.Popen:
    proc = subprocess.Popen(sink_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise SystemExit(f"smtp-sink failed: {proc.stderr.read().decode()}")
        time.sleep(0.1)
    raise SystemExit("smtp-sink did not start")


def smtp_source(port: int, *, messages: int, size: int, sessions: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            tool("smtp-source"),
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            "bench@bench.example",
            "-t",
            "reader@bench.example",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return messages / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument(
        "--processes", type=int, default=1, help="worker processes (newsletter worker --processes)"
    )
    args = ap.parse_args()

    ensure_postfix_tools()
    url, tmp = fresh_database(args.database_url)
    t0 = time.perf_counter()
    add_subscribers(url, args.subscribers)
    print(
        f"database: {url.split('://')[0]}; {args.subscribers} subscribers created in {time.perf_counter() - t0:.1f}s"
    )

    port = free_port()
    sink = start_sink(port)
    try:
        settings = Settings(
            database_url=url,
            smtp_url=f"smtp://127.0.0.1:{port}",
            smtp_connections=args.connections,
            worker_batch=args.batch,
            mail_from="Brief <brief@bench.example>",
        )
        engine = make_engine(url)
        t0 = time.perf_counter()
        with Session(engine) as s:
            summary = send_digest(
                session=s,
                env=make_environment(settings.templates_dir),
                settings=settings,
                frequency="monthly",
                period_key="2025-07",
            )
            s.commit()
        plan_s = time.perf_counter() - t0
        with Session(engine) as s:
            d = s.execute(select(Delivery).limit(1)).scalar_one()
            size = len(
                build_digest_email(
                    settings=settings,
                    delivery=d,
                    edition=s.get(Edition, d.edition_id),
                    subscriber=s.get(Subscriber, d.subscriber_id),
                ).data
            )
        t0 = time.perf_counter()
        stats = asyncio.run(
            Worker(engine=engine, settings=settings).run(until_empty=True, poll_seconds=0.05)
        )
        send_s = time.perf_counter() - t0
        sent = stats.by_status.get("sent", 0)
        ours = sent / send_s
        n_source = min(sent, 20_000)
        same = smtp_source(
            port, messages=n_source, size=size, sessions=args.connections * args.processes
        )
        many = smtp_source(port, messages=n_source, size=size, sessions=16)
    finally:
        sink.terminate()
        sink.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"planning + rendering: {summary.recipients} recipients, {len(summary.segments)} segments, {plan_s:.2f}s "
        f"({summary.recipients / plan_s:,.0f} recipients/s)"
    )
    print(f"message size: {size:,} bytes")
    print(f"{'sender':<44}{'messages':>10}{'msg/s':>10}")
    print(
        f"{f'newsletter worker x{args.processes}, {args.connections} connections each':<44}{sent:>10}{ours:>10,.0f}"
    )
    print(
        f"{'smtp-source, ' + str(args.connections * args.processes) + ' sessions':<44}{n_source:>10}{same:>10,.0f}"
    )
    print(f"{'smtp-source, 16 sessions':<44}{n_source:>10}{many:>10,.0f}")
    print(f"ratio ours / smtp-source (same sessions): {ours / same:.2f}")


if __name__ == "__main__":
    main()
