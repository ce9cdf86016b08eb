"""Planning a monthly digest for N subscribers: time and peak memory (one process per size).

python bench/planning.py --subscribers 100000 [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time

from common import add_subscribers, fresh_database
from sqlmodel import Session

from newsletter.core.db import make_engine
from newsletter.core.settings import Settings
from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=10_000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    url, tmp = fresh_database(args.database_url)
    try:
        add_subscribers(url, args.subscribers)
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        settings = Settings(database_url=url)
        engine = make_engine(url)
        t0 = time.perf_counter()
        with Session(engine) as s:
            summary = plan_period(
                session=s,
                env=make_environment(settings.templates_dir),
                settings=settings,
                frequency="monthly",
                period_key="2025-07",
                batch_size=2000,
            )
            s.commit()
        elapsed = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "subscribers": args.subscribers,
        "database": url.split(":")[0].split("+")[0],
        "seconds": round(elapsed, 2),
        "enqueued": summary.enqueued,
        "segments": len(summary.segments),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_growth_mb": round((peak - base_rss) / 1024, 1),
    }
    print(json.dumps(result) if args.json else result)


if __name__ == "__main__":
    main()
