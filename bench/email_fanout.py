"""Email fan-out: one monthly digest to N subscribers through Postfix's smtp-sink,
beside smtp-source blasting messages of the same size into the same sink.

    python bench/email_fanout.py [--subscribers 20000] [--database-url URL]
                                 [--processes N] [--connections N] [--batch N]

The digest is planned in this process; then `newsletter worker --until-empty` runs as a
user would start it (its own process, settings from the environment, the defaults
unless --processes/--connections/--batch are given), and is timed from start to exit.
Prints messages/second for it and for smtp-source with 16 sessions, and their ratio.
`--profile FILE` runs the worker under py-spy (if installed) and writes collapsed stacks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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

from newsletter.core.db import make_engine
from newsletter.core.models import Delivery, Edition, Subscriber
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.delivery.messages import build_digest_email
from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment

MAIL_FROM = "Brief <brief@bench.example>"
MAIL_FROM_ADDRESS = "brief@bench.example"


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


def client_floor(port: int, data: bytes, messages: int, connections: int) -> tuple[float, float]:
    """The same message sent by the worker's SMTP channel alone (no database, no
    building) over as many connections: (msg/s, ms of CPU per message). What the send
    itself costs; the rest of the worker's CPU is claiming, building and recording."""
    from newsletter.delivery.channels.base import SmtpReady
    from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig

    message = SmtpReady(data)
    todo = iter(range(messages))

    async def all_connections() -> None:
        channel = SmtpChannel(
            SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"), connections=connections
        )

        async def lane() -> None:
            for _ in todo:
                await channel.send(
                    sender=MAIL_FROM_ADDRESS, recipient="reader@example.com", message=message
                )

        try:
            await asyncio.gather(*(lane() for _ in range(connections)))
        finally:
            await channel.aclose()

    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(all_connections())
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return messages / seconds, 1000 * cpu / messages


def run_worker(
    url: str, port: int, args: argparse.Namespace
) -> tuple[float, float, dict[str, int], str]:
    """`newsletter worker --until-empty` in its own process(es):
    (seconds, CPU seconds of the worker processes, counts, command)."""
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "NEWSLETTER_MAIL_FROM": MAIL_FROM,
    }
    if args.connections:
        env["NEWSLETTER_SMTP_CONNECTIONS"] = str(args.connections)
    if args.batch:
        env["NEWSLETTER_WORKER_BATCH"] = str(args.batch)
    command = [sys.executable, "-m", "newsletter", "worker", "--until-empty"]
    if args.processes:
        command += ["--processes", str(args.processes)]
    shown = "newsletter worker --until-empty" + (
        f" --processes {args.processes}" if args.processes else ""
    )
    if args.profile:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        command = [py_spy, "record", "--subprocesses", "--format", "raw", "-o", args.profile, "--"]
        command += [sys.executable, "-m", "newsletter", "worker", "--until-empty"]
        command += ["--processes", str(args.processes)] if args.processes else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:  # a line per batch: shown only if it fails
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        if done.returncode != 0:
            log.seek(0)
            raise SystemExit(f"the worker failed:\n{log.read().decode(errors='replace')[-3000:]}")
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    engine = make_engine(url)
    counts = outbox.status_counts(engine).get("email", {})
    engine.dispose()
    return seconds, cpu, counts, shown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=20_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--processes", type=int, default=None, help="newsletter worker --processes")
    ap.add_argument("--connections", type=int, default=None, help="NEWSLETTER_SMTP_CONNECTIONS")
    ap.add_argument("--batch", type=int, default=None, help="NEWSLETTER_WORKER_BATCH")
    ap.add_argument("--profile", default=None, help="py-spy collapsed stacks of the worker")
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
            database_url=url, smtp_url=f"smtp://127.0.0.1:{port}", mail_from=MAIL_FROM
        )
        engine = make_engine(url)
        t0 = time.perf_counter()
        with Session(engine) as s:
            summary = plan_period(
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
            sample = bytes(
                build_digest_email(
                    settings=settings,
                    delivery=d,
                    edition=s.get(Edition, d.edition_id),
                    subscriber=s.get(Subscriber, d.subscriber_id),
                ).data
            )
            size = len(sample)
        engine.dispose()
        send_s, cpu_s, counts, shown = run_worker(url, port, args)
        sent = counts.get("sent", 0)
        ours = sent / send_s
        n_source = min(sent, 20_000)
        many = smtp_source(port, messages=n_source, size=size, sessions=16)
        connections = args.connections or settings.smtp_connections
        floor, floor_cpu = client_floor(port, sample, n_source, connections)
    finally:
        sink.terminate()
        sink.wait()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"planning + rendering: {summary.recipients} recipients, {len(summary.segments)} segments, {plan_s:.2f}s "
        f"({summary.recipients / plan_s:,.0f} recipients/s)"
    )
    print(f"message size: {size:,} bytes")
    print(f"worker CPU: {cpu_s:.1f} s, {1000 * cpu_s / max(sent, 1):.2f} ms per message sent")
    print(f"outbox after the run: {', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}")
    print(f"{'sender':<44}{'messages':>10}{'msg/s':>10}")
    print(f"{shown:<44}{sent:>10}{ours:>10,.0f}")
    print(f"{'smtp-source, 16 sessions':<44}{n_source:>10}{many:>10,.0f}")
    print(
        f"{f'our SMTP channel alone, {connections} connections':<44}{n_source:>10}{floor:>10,.0f}"
    )
    print(f"ratio ours / smtp-source (16 sessions): {ours / many:.2f}")
    print(
        f"SMTP channel alone: {floor_cpu:.2f} ms of CPU per message; "
        f"ratio worker / channel alone: {ours / floor:.2f}"
    )


if __name__ == "__main__":
    main()
