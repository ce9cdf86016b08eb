"""Recording a batch of send results: outbox.record for 1,000 outcomes, email and webhook.

python bench/outbox_record.py [--database-url URL] [--outcomes 1000] [--rounds 7] [--json]

Each round enqueues and claims fresh rows, then times only the call that records their
outcomes (statuses, attempts, backoff, bounce suppression, endpoint health). Email
outcomes: 97% sent, 1% temporary, 1% permanent (half of them hard bounces), 1%
deferred. Webhook outcomes: 100 endpoints, 98% sent, 2% temporary. Printed beside the
database's floor measured in the same run: one UPDATE of the same rows by id plus one
INSERT of as many attempt rows generated in SQL, with nothing computed in Python.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time

from common import add_subscribers, fresh_database
from sqlalchemy import insert, select, text
from sqlmodel import Session

from newsletter.core.db import make_engine
from newsletter.core.models import Delivery, Subscriber, WebhookEndpoint, utcnow
from newsletter.core.settings import Settings
from newsletter.delivery import outbox

ENDPOINTS = 100


def setup(url: str, n: int) -> None:
    add_subscribers(url, n)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(WebhookEndpoint),
            [
                {
                    "name": f"team-{i}",
                    "platform": "generic",
                    "url": f"https://hooks.example.com/{i}",
                    "mode": "instant",
                }
                for i in range(ENDPOINTS)
            ],
        )
    engine.dispose()


def claimed_rows(engine, kind: str, n: int, round_no: int) -> list[int]:
    with Session(engine) as s:
        subs = list(s.execute(select(Subscriber.id).order_by(Subscriber.id).limit(n)).scalars())
        eps = list(s.execute(select(WebhookEndpoint.id).order_by(WebhookEndpoint.id)).scalars())
        if kind == "email":
            rows = [
                {
                    "idempotency_key": f"bench:{round_no}:{sid}",
                    "channel": "email",
                    "kind": "bench",
                    "subscriber_id": sid,
                }
                for sid in subs
            ]
        else:
            rows = [
                {
                    "idempotency_key": f"bench-hook:{round_no}:{i}",
                    "channel": "generic",
                    "kind": "bench",
                    "endpoint_id": eps[i % len(eps)],
                }
                for i in range(n)
            ]
        outbox.enqueue(s, rows)
        s.commit()
    return outbox.claim(engine, worker="bench", limit=n, lease_seconds=600)


def outcomes_for(kind: str, ids: list[int], endpoint_of: dict[int, int]) -> list[outbox.Outcome]:
    started = utcnow()
    out = []
    for n, i in enumerate(ids):
        ep = endpoint_of.get(i)
        if kind == "email":
            pick = n % 100
            if pick == 0:
                o = outbox.Outcome(i, "temporary", "451 try later", 451, started_at=started)
            elif pick == 1:
                o = outbox.Outcome(
                    i, "permanent", "550 no such user", 550, started_at=started, suppress=n % 2 == 0
                )
            elif pick == 2:
                o = outbox.Outcome(i, "deferred", retry_after=5)
            else:
                o = outbox.Outcome(
                    i, "sent", None, 250, message_id=f"<{i}@bench>", started_at=started
                )
        elif n % 50 == 0:
            o = outbox.Outcome(i, "temporary", "HTTP 503", 503, started_at=started, endpoint_id=ep)
        else:
            o = outbox.Outcome(
                i, "sent", None, 200, message_id="ok", started_at=started, endpoint_id=ep
            )
        out.append(o)
    return out


def timed_record(engine, settings: Settings, outcomes) -> float:
    t0 = time.perf_counter()
    outbox.record(
        engine,
        outcomes,
        worker="bench",
        max_attempts=settings.max_attempts,
        retry_base=settings.retry_base_seconds,
        retry_max=settings.retry_max_seconds,
        **record_extras(settings),
    )
    return time.perf_counter() - t0


def record_extras(settings: Settings) -> dict:
    import inspect

    params = inspect.signature(outbox.record).parameters
    return {
        name: getattr(settings, name)
        for name in ("webhook_disable_after_failures", "webhook_disable_after_hours")
        if name in params
    }


def floor(engine, ids: list[int]) -> float:
    """The database alone: one UPDATE of these rows by id, and one INSERT of an attempt
    per row generated in SQL (no parameters to send, nothing computed in Python)."""
    listed = ",".join(map(str, ids))
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE delivery SET attempts = attempts WHERE id IN ({listed})"))
        conn.execute(
            text(
                "INSERT INTO deliveryattempt (delivery_id, started_at, finished_at, outcome) "
                f"SELECT id, created_at, created_at, 'sent' FROM delivery WHERE id IN ({listed})"
            )
        )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--outcomes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    url, tmp = fresh_database(args.database_url)
    settings = Settings(database_url=url)
    result: dict = {"database": url.split(":")[0].split("+")[0], "outcomes": args.outcomes}
    try:
        setup(url, args.outcomes)
        engine = make_engine(url)
        for kind in ("email", "webhook"):
            times, floors = [], []
            for r in range(args.rounds):
                ids = claimed_rows(engine, kind, args.outcomes, r)
                with Session(engine) as s:
                    endpoint_of = dict(
                        s.execute(
                            select(Delivery.id, Delivery.endpoint_id).where(Delivery.id.in_(ids))
                        ).all()
                    )
                times.append(timed_record(engine, settings, outcomes_for(kind, ids, endpoint_of)))
                floors.append(floor(engine, ids))
            result[kind] = {
                "median_ms": round(statistics.median(times) * 1000, 1),
                "best_ms": round(min(times) * 1000, 1),
                "outcomes_per_s": round(args.outcomes / statistics.median(times)),
                "floor_median_ms": round(statistics.median(floors) * 1000, 1),
            }
        engine.dispose()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return
    print(f"outbox.record, {args.outcomes} outcomes, {result['database']}, {args.rounds} rounds")
    for kind in ("email", "webhook"):
        r = result[kind]
        print(
            f"  {kind:8} median {r['median_ms']:8.1f} ms  best {r['best_ms']:8.1f} ms  "
            f"({r['outcomes_per_s']} outcomes/s)   database floor {r['floor_median_ms']:.1f} ms"
        )


if __name__ == "__main__":
    main()
