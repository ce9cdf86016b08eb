"""`newsletter subscribers import` and `newsletter events import` of large files: seconds and
peak memory of the command, run as a user runs it (one process per command).

python bench/imports.py [--subscribers 1000000] [--events 100000] [--database-url URL] [--json]

The files are generated in a temp dir: a subscribers CSV (1-4 topics per reader, both
languages, a few time zones, one row in a thousand invalid) and an events JSON Lines file
(titles in English and Chinese, most matched to topics by the rules, some with manual
topics, one record in a thousand invalid, one in a hundred a duplicate of an earlier URL).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import fresh_database

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["governance", "capital", "hardware", "open-source"]
ZONES = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York"]
WORDS_EN = [
    "regulation",
    "funding round",
    "GPU export",
    "open-source model",
    "chip fab",
    "AI act",
    "investment",
    "open weights",
    "standards body",
    "data centre",
]
WORDS_ZH = ["监管", "融资", "芯片", "开源", "法案", "投资", "算力", "治理"]


def write_subscribers(path: Path, n: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name,language,timezone,frequency,topics\n")
        for i in range(1, n + 1):
            if i % 1000 == 500:
                f.write(f"not-an-address-{i},Bad {i},en,UTC,monthly,capital\n")
                continue
            topics = ";".join(rng.sample(TOPICS, rng.randint(1, 4)))
            f.write(
                f"reader{i}@import.example,Reader {i},{rng.choice(['en', 'zh'])},"
                f"{rng.choice(ZONES)},monthly,{topics}\n"
            )


def write_events(path: Path, n: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            if i % 1000 == 500:
                f.write('{"title": "no date", "url": "https://bad.example/' + str(i) + '"}\n')
                continue
            url = f"https://news.example.com/{i if i % 100 else i - 1}"
            record = {
                "title": {
                    "en": f"Story {i}: {rng.choice(WORDS_EN)} and {rng.choice(WORDS_EN)}",
                    "zh": f"新闻{i}：{rng.choice(WORDS_ZH)}与{rng.choice(WORDS_ZH)}",
                },
                "summary": {"en": f"Details of story {i} about {rng.choice(WORDS_EN)}."},
                "url": url,
                "source": "Bench Wire",
                "occurred_on": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "importance": rng.randint(1, 5),
            }
            if i % 10 == 0:
                record["topics"] = rng.sample(TOPICS, 2)
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def run_cli(url: str, *args: str) -> tuple[float, float, int, str]:
    """(seconds, peak RSS MB, exit code, last lines of output) of one command."""
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": url}
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        lines = out.read().decode(errors="replace").splitlines()
    summary = next((line for line in lines if " added, " in line or " new, " in line), "")
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nl-bench-imports-"))
    url, tmp = fresh_database(args.database_url)
    results = []
    try:
        subs_csv, events_jsonl = work / "subscribers.csv", work / "events.jsonl"
        write_subscribers(subs_csv, args.subscribers)
        write_events(events_jsonl, args.events)
        database = url.split(":")[0].split("+")[0]
        for what, n, cmd in (
            ("subscribers import", args.subscribers, ["subscribers", "import", str(subs_csv)]),
            ("events import", args.events, ["events", "import", str(events_jsonl)]),
        ):
            seconds, rss, code, summary = run_cli(url, *cmd)
            results.append(
                {
                    "what": what,
                    "rows": n,
                    "database": database,
                    "seconds": round(seconds, 2),
                    "rows_per_second": round(n / seconds),
                    "peak_rss_mb": round(rss, 1),
                    "exit_code": code,  # 1: the file has invalid rows (on purpose)
                    "summary": summary,
                }
            )
            if not args.json:
                print(results[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
