"""The full-size fault run: SIGKILL a worker at random points during a 5,000-message send,
many times, then count what arrived. Nothing may be lost; duplicates are reported and
must stay within each killed worker's in-flight window (its claimed batch).

    python bench/faults.py [--messages 5000] [--kills 12] [--batch 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

from aiosmtpd.controller import Controller
from common import add_subscribers, free_port, fresh_database
from sqlmodel import Session

from newsletter.core.db import make_engine
from newsletter.core.settings import Settings
from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment


class Recorder:
    def __init__(self):
        self.rcpts: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.rcpts.append(envelope.rcpt_tos[0])
        return "250 OK"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--kills", type=int, default=12)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    url, tmp = fresh_database(args.database_url)
    recorder, port = Recorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        add_subscribers(url, args.messages)
        settings = Settings(database_url=url)
        with Session(make_engine(url)) as s:
            total = plan_period(
                session=s,
                env=make_environment(settings.templates_dir),
                settings=settings,
                frequency="monthly",
                period_key="2025-07",
            ).enqueued
            s.commit()
        env = {
            **os.environ,
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_SMTP_URL": f"smtp://127.0.0.1:{port}",
            "NEWSLETTER_WORKER_BATCH": str(args.batch),
            "NEWSLETTER_LEASE_SECONDS": "2",
        }
        rng = random.Random(42)
        for _ in range(args.kills):
            proc = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            start = len(recorder.rcpts)
            deadline = time.monotonic() + 30
            while len(recorder.rcpts) < start + args.batch and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        subprocess.run(
            [sys.executable, "-m", "newsletter", "worker", "--until-empty"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=1800,
        )
    finally:
        controller.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    per = Counter(recorder.rcpts)
    duplicates = sum(n - 1 for n in per.values())
    lost = total - len(per)
    print(
        f"messages {total}, SIGKILLs {args.kills}, delivered {len(per)}, lost {lost}, "
        f"duplicates {duplicates} (bound {args.kills * args.batch}: {args.batch} in flight per killed worker)"
    )
    if lost or duplicates > args.kills * args.batch:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
