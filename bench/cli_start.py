"""How fast the CLI starts: `newsletter --help`, `--version` and `topics list` on a small
database (the default topics and the July 2025 sample), each a fresh process.

    python bench/cli_start.py [--runs 20]

Uses hyperfine when it is installed (Debian package `hyperfine`), else times the runs
itself. Prints the mean and the fastest wall time, and the mean CPU time (user + system,
which another busy process on the machine disturbs less than the wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = [["--help"], ["--version"], ["topics", "list"]]


def newsletter(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


def with_hyperfine(runs: int, env: dict) -> list[tuple[str, float, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        for args in COMMANDS:
            subprocess.run(
                [
                    "hyperfine", "--warmup", "2", "--runs", str(runs), "--style", "none",
                    "--export-json", str(out), " ".join(newsletter(*args)),
                ],
                check=True, env=env, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            (result,) = json.loads(out.read_text())["results"]
            cpu = result["user"] + result["system"]
            rows.append((" ".join(args), result["mean"], result["min"], cpu))
    return rows


def by_hand(runs: int, env: dict) -> list[tuple[str, float, float, float]]:
    rows = []
    for args in COMMANDS:
        walls, cpus = [], []
        for i in range(runs + 2):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(newsletter(*args), check=True, env=env, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 2:  # two warm-up runs, as with hyperfine
                walls.append(wall)
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        rows.append((" ".join(args), sum(walls) / runs, min(walls), sum(cpus) / runs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NEWSLETTER_DATABASE_URL": f"sqlite:///{Path(tmp) / 'bench.db'}"}
        for step in (["db", "upgrade"], ["sample", "load"]):
            subprocess.run(newsletter(*step), check=True, env=env, stdout=subprocess.DEVNULL)
        tool = "hyperfine" if shutil.which("hyperfine") else "by hand"
        rows = (with_hyperfine if tool == "hyperfine" else by_hand)(opts.runs, env)
    load = os.getloadavg()[0]
    print(
        f"CLI start, {opts.runs} runs each ({tool}; load average {load:.1f}, {os.cpu_count()} CPUs)"
    )
    print(f"{'command':<14} {'mean':>8} {'fastest':>8} {'CPU':>8}")
    for name, mean, fastest, cpu in rows:
        print(f"{name:<14} {mean:>7.3f}s {fastest:>7.3f}s {cpu:>7.3f}s")


if __name__ == "__main__":
    main()
