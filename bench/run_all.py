"""Every benchmark in one command, printed as one table (and optionally written as Markdown).

    python bench/run_all.py [--quick] [--postgres URL] [--markdown docs/benchmarks.md]

Each figure is measured beside the machine's own limit in the same run: SMTP against
Postfix's smtp-source into the same smtp-sink, webhooks against wrk on the same receiver.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import re
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable


def run(script: str, *args: str) -> str:
    out = subprocess.run(
        [PY, str(HERE / script), *args], capture_output=True, text=True, cwd=HERE, timeout=7200
    )
    if out.returncode != 0:
        raise SystemExit(f"{script} {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def fresh_pg(url: str) -> str:
    import psycopg

    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    admin = url.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:  # a database per benchmark: gone again when the run ends
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    atexit.register(drop)
    return url.rsplit("/", 1)[0] + "/" + name


def email_row(n: int, db: str, pg: str | None) -> list[str]:
    args = ["--subscribers", str(n)] + (
        ["--database-url", fresh_pg(pg)] if db == "postgresql" else []
    )
    out = run("email_fanout.py", *args)
    ours = re.search(r"^newsletter worker .*?\s+(\d+)\s+([\d,]+)$", out, re.M)
    limit = re.search(r"smtp-source, 16 sessions\s+(\d+)\s+([\d,]+)", out)
    plan = re.search(r"planning \+ rendering: .*?, ([\d.]+)s", out)
    cpu = re.search(r"worker CPU: .*?, ([\d.]+) ms per message", out).group(1)
    floor = re.search(r"SMTP channel alone, \d+ connections\s+\d+\s+([\d,]+)", out).group(1)
    floor_cpu = re.search(r"SMTP channel alone: ([\d.]+) ms of CPU", out).group(1)
    size = re.search(r"message size: ([\d,]+) bytes", out).group(1)
    o, lim = float(ours.group(2).replace(",", "")), float(limit.group(2).replace(",", ""))
    return [
        f"email fan-out {n:,} ({size} B)",
        db,
        f"{o:,.0f} msg/s",
        f"{lim:,.0f} msg/s (smtp-source, 16 sessions)",
        f"{o / lim:.2f}",
        f"plan {plan.group(1)} s; worker CPU {cpu} ms/msg; SMTP channel alone, same message: "
        f"{floor} msg/s, {floor_cpu} ms/msg",
    ]


def webhook_row(endpoints: int, events: int) -> list[str]:
    out = run("webhook_fanout.py", "--endpoints", str(endpoints), "--events", str(events))
    ours = float(
        re.search(r"newsletter worker.*?([\d,]+)\s*$", out, re.M).group(1).replace(",", "")
    )
    wrk = re.search(r"wrk -c(\d+) into the same receiver\s+([\d,]+)", out)
    limit = float(wrk.group(2).replace(",", ""))
    cpu = re.search(r"([\d,]+) us per delivery", out).group(1)
    return [
        f"webhook fan-out, {endpoints:,} distinct signed endpoints x {events} alerts",
        "sqlite",
        f"{ours:,.0f} deliveries/s",
        f"{limit:,.0f} req/s (wrk -c{wrk.group(1)})",
        f"{ours / limit:.3f}",
        f"{wrk.group(1)} in flight; worker CPU {cpu} us per delivery",
    ]


def planning_row(n: int, db: str, pg: str | None) -> list[str]:
    args = ["--subscribers", str(n), "--json"] + (
        ["--database-url", fresh_pg(pg)] if db == "postgresql" else []
    )
    r = json.loads(run("planning.py", *args).strip().splitlines()[-1])
    return [
        f"planning {n:,} subscribers",
        db,
        f"{r['seconds']} s",
        f"{r['enqueued']:,} rows, {r['segments']} segments",
        "",
        f"peak RSS {r['peak_rss_mb']} MB (+{r['rss_growth_mb']} MB)",
    ]


def import_rows(db: str, pg: str | None, subscribers: int, events: int) -> list[list[str]]:
    args = ["--subscribers", str(subscribers), "--events", str(events), "--json"]
    args += ["--database-url", fresh_pg(pg)] if db == "postgresql" else []
    results = json.loads(run("imports.py", *args).strip().splitlines()[-1])
    return [
        [
            f"{r['what']}, {r['rows']:,} rows",
            db,
            f"{r['seconds']} s",
            f"{r['rows_per_second']:,} rows/s",
            "",
            f"peak RSS {r['peak_rss_mb']} MB",
        ]
        for r in results
    ]


def bounces_row(count: int, readers: int, db: str, pg: str | None) -> list[str]:
    args = ["--count", str(count), "--readers", str(readers)]
    args += ["--database-url", fresh_pg(pg)] if db == "postgresql" else []
    out = run("bounces.py", *args)
    rate = re.search(r"= ([\d,]+) messages/s", out).group(1)
    rss = re.search(r"peak RSS: (\d+) MB after \d+ messages, (\d+) MB at the end", out)
    return [
        f"bounce processing, {count:,} returned messages, {readers:,} readers",
        db,
        f"{rate} msg/s",
        "",
        "",
        f"peak RSS {rss.group(1)} MB after a tenth, {rss.group(2)} MB at the end",
    ]


def web_load_row(db: str, pg: str | None, seconds: int) -> list[str]:
    args = ["--seconds", str(seconds), "--json"] + (
        ["--postgres", pg] if db == "postgresql" else []
    )
    r = json.loads(run("web_load.py", *args).strip().splitlines()[-1])
    h, a = r["healthz"], r["all"]
    return [
        f"web app under load, {seconds} s, send running",
        db,
        f"/healthz p99 {h['p99']:.2f} s",
        "target: p99 < 1 s, none > 5 s",
        "",
        f"all {a['requests']:,} requests: p99 {a['p99']:.2f} s, max {a['max']:.2f} s, "
        f"{a['over_5s']} over 5 s, {a['failed']} failed",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument(
        "--postgres",
        default=os.environ.get(
            "NEWSLETTER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--markdown", default=None)
    ap.add_argument(
        "--only",
        default="email,webhook,planning,imports,bounces,web",
        help="comma-separated sections to run (email, webhook, planning, imports, bounces, web)",
    )
    args = ap.parse_args()
    only = set(args.only.split(","))
    dbs = ["sqlite"] + (["postgresql"] if args.postgres else [])
    rows = []
    for db in dbs if "email" in only else []:
        for n in [2_000] if args.quick else [20_000, 100_000]:
            rows.append(email_row(n, db, args.postgres))
            print(" | ".join(rows[-1]), flush=True)
    if "webhook" in only:
        rows.append(webhook_row(1000, 5))
        print(" | ".join(rows[-1]), flush=True)
    for db in dbs if "planning" in only else []:
        for n in [10_000] if args.quick else [10_000, 100_000, 1_000_000]:
            rows.append(planning_row(n, db, args.postgres))
            print(" | ".join(rows[-1]), flush=True)
    for db in dbs if "imports" in only else []:
        for row in import_rows(
            db, args.postgres, *((20_000, 5_000) if args.quick else (1_000_000, 100_000))
        ):
            rows.append(row)
            print(" | ".join(rows[-1]), flush=True)
    for db in dbs if "bounces" in only else []:
        rows.append(
            bounces_row(*((5_000, 1_000) if args.quick else (100_000, 20_000)), db, args.postgres)
        )
        print(" | ".join(rows[-1]), flush=True)
    for db in dbs if "web" in only else []:
        rows.append(web_load_row(db, args.postgres, 10 if args.quick else 60))
        print(" | ".join(rows[-1]), flush=True)
    head = ["benchmark", "database", "ours", "machine limit, same run", "ratio", "notes"]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    machine = f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {platform.release()}"
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]
    print("\n" + machine + "\n" + "\n".join(table))
    if args.markdown:
        write_markdown(Path(args.markdown), machine, table)


def write_markdown(path: Path, machine: str, table: list[str]) -> None:
    """Replace the summary table's rows for what this run measured (same benchmark and
    database), keeping the other rows (a run with --only) and the notes below the table."""
    head = ["# Benchmarks", "", f"Measured with `python bench/run_all.py` on {machine}.", ""]
    rest: list[str] = []
    old: list[str] = []
    if path.exists():
        lines = path.read_text(encoding="utf-8").splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("| benchmark |")), None)
        if start is not None:
            end = start
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            old, rest = lines[start + 2 : end], lines[end:]

    def key(row: str) -> tuple[str, ...]:
        return tuple(cell.strip() for cell in row.strip("|").split("|")[:2])

    new = {key(row): row for row in table[2:]}
    kept = [new.pop(key(row), row) for row in old]
    path.write_text(
        "\n".join(head + table[:2] + kept + list(new.values()) + rest) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
