"""Page-load times of the admin console's lists at size: the subscriber search, the
outbox filter and the events search, with a million readers, 100,000 deliveries and
100,000 events.

python bench/admin_lists.py [--subscribers 1000000] [--deliveries 100000]
                            [--events 100000] [--database-url URL] [--repeat 5] [--json]

Readers are loaded as `bench/imports.py` loads them (`newsletter subscribers import` of a
generated CSV); one in fifty is then made pending and one in a hundred disabled. Events
too (`newsletter events import` of its generated JSON Lines file: English and Chinese
titles over 2025, one in ten with topics chosen by hand).
Deliveries (90% sent, 5% failed with an attempt, 5% queued; digests and alerts, to
readers and to team endpoints, over 30 days) are inserted in bulk. Each page is fetched
from the app in-process, logged in as an editor (routing, queries and template), once to
warm up and then `--repeat` times; the median and the slowest are printed, in ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from common import fresh_database
from fastapi.testclient import TestClient
from imports import run_cli, write_events, write_subscribers
from sqlalchemy import func, insert, select, text
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.core.db import make_engine
from newsletter.core.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Subscriber,
    WebhookEndpoint,
)
from newsletter.core.settings import Settings
from newsletter.web.app import create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PLATFORMS = ["slack", "feishu", "teams", "dingtalk"]


def load_readers(url: str, n: int, work: Path) -> float:
    path = work / "subscribers.csv"
    write_subscribers(path, n)
    seconds, _, _, summary = run_cli(url, "subscribers", "import", str(path))
    print(f"loaded readers in {seconds:.1f} s: {summary}", flush=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE subscriber SET status = 'pending' WHERE id % 50 = 7"))
        conn.execute(text("UPDATE subscriber SET status = 'disabled' WHERE id % 100 = 13"))
    engine.dispose()
    return seconds


def load_events(url: str, n: int, work: Path) -> float:
    path = work / "events.jsonl"
    write_events(path, n)
    seconds, _, _, summary = run_cli(url, "events", "import", str(path))
    print(f"loaded events in {seconds:.1f} s: {summary}", flush=True)
    return seconds


def load_deliveries(url: str, n: int, seed: int = 5, batch: int = 10_000) -> None:
    rng = random.Random(seed)
    engine = make_engine(url)
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:
        top = s.execute(select(func.max(Subscriber.id))).scalar_one()
        events = list(s.execute(select(Event.id)).scalars())
        teams = [
            WebhookEndpoint(
                name=f"team-{i}", platform=PLATFORMS[i % 4], url="https://example.com/h"
            )
            for i in range(200)
        ]
        s.add_all(teams)
        s.commit()
        team_ids = [(t.id, t.platform) for t in teams]
    for lo in range(0, n, batch):
        rows, attempts = [], []
        for i in range(lo, min(n, lo + batch)):
            at = now - dt.timedelta(seconds=(n - i) * 30 * 86400 / n)
            roll = rng.random()
            status = "sent" if roll < 0.9 else "failed" if roll < 0.95 else "queued"
            if rng.random() < 0.8:
                sub = rng.randint(1, top)
                kind, period = ("digest-monthly", f"2025-{rng.randint(1, 12):02d}")
                key, who = (
                    f"subscriber:{sub}|{kind}|{period}|{i}",
                    {"subscriber_id": sub, "endpoint_id": None},
                )
                channel = "email"
            else:
                team, channel = rng.choice(team_ids)
                kind, period = "alert", f"event:{rng.choice(events)}"
                key, who = (
                    f"endpoint:{team}|{kind}|{period}|{i}",
                    {"endpoint_id": team, "subscriber_id": None},
                )
            rows.append({
                "idempotency_key": key, "channel": channel, "kind": kind, "period": period,
                "status": status, "attempts": 0 if status == "queued" else 1,
                "next_attempt_at": at, "created_at": at,
                "sent_at": at if status == "sent" else None,
                "last_error": "550 5.1.1 no such user" if status == "failed" else None, **who,
            })  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(Delivery), rows)
            first = conn.execute(
                select(Delivery.id).where(Delivery.idempotency_key == rows[0]["idempotency_key"])
            ).scalar_one()
            for offset, row in enumerate(rows):
                if row["status"] == "failed":
                    attempts.append({
                        "delivery_id": first + offset, "started_at": row["created_at"],
                        "finished_at": row["created_at"], "outcome": "permanent",
                        "status_code": 550, "error": row["last_error"], "worker": "bench",
                    })  # fmt: skip
            if attempts:
                conn.execute(insert(DeliveryAttempt), attempts)
    if url.startswith("postgresql"):
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(
                "VACUUM ANALYZE subscriber, subscription, delivery, event, eventtopic"
            )
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def logged_in(url: str) -> TestClient:
    engine = make_engine(url)
    with Session(engine) as s:
        _, token = create_token(session=s, name=f"bench-{time.time_ns()}")
        s.commit()
    settings = Settings(database_url=url, secret_key=os.environ["NEWSLETTER_SECRET_KEY"])
    client = TestClient(create_app(settings=settings, engine=engine))
    form = client.get("/admin/login")
    token_form = {"token": token, "csrf_token": CSRF.search(form.text).group(1)}
    assert client.post("/admin/login", data=token_form, follow_redirects=False).status_code == 303
    return client


def timed(client: TestClient, path: str, repeat: int) -> dict:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
    rows = sum(r.text.count(f"data-{kind}-id=") for kind in ("subscriber", "delivery", "event"))
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "rows": rows}  # fmt: skip


def pages(url: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    with Session(engine) as s:
        top = s.execute(select(func.max(Subscriber.id))).scalar_one()
        deep = s.execute(
            select(Subscriber.id).where(Subscriber.id <= int(top * 0.9)).order_by(
                Subscriber.id.desc()).limit(1)
        ).scalar_one()  # fmt: skip
        reader = s.execute(select(Subscriber.email).where(Subscriber.id == top // 2)).scalar_one()
        oldest = s.execute(select(func.min(Delivery.id))).scalar_one()
        mid = oldest + (s.execute(select(func.count()).select_from(Delivery)).scalar_one() // 2)
        events = s.execute(select(func.count()).select_from(Event)).scalar_one()
        deep_event = s.execute(
            select(Event.occurred_on, Event.id).order_by(Event.occurred_on.desc(),
                Event.id.desc()).offset(int(events * 0.9)).limit(1)
        ).one()  # fmt: skip
    engine.dispose()
    cursor = f"{deep_event[0].isoformat()}_{deep_event[1]}"
    week_ago = (dt.date.today() - dt.timedelta(days=7)).isoformat()
    return [
        ("subscribers: first page", "/admin/subscribers"),
        ("subscribers: deep page (keyset, 90% in)", f"/admin/subscribers?after={deep}"),
        ("subscribers: search an address", f"/admin/subscribers?q={reader[:-3]}"),
        ("subscribers: search a broad prefix", "/admin/subscribers?q=reader9"),
        ("subscribers: search a name", "/admin/subscribers?q=Reader+4242"),
        ("subscribers: filter status=pending", "/admin/subscribers?status=pending"),
        ("subscribers: filter zh + hardware + monthly",
         "/admin/subscribers?language=zh&topic=hardware&frequency=monthly"),
        ("subscribers: filter deep page",
         f"/admin/subscribers?language=zh&topic=hardware&after={deep}"),
        ("outbox: first page", "/admin/outbox"),
        ("outbox: failed", "/admin/outbox?status=failed"),
        ("outbox: failed, deep page", f"/admin/outbox?status=failed&before={mid}"),
        ("outbox: channel slack, last 7 days", f"/admin/outbox?channel=slack&from={week_ago}"),
        ("outbox: one reader", f"/admin/outbox?recipient={reader}"),
        ("outbox: one team endpoint", "/admin/outbox?recipient=team-7"),
        ("events: first page", "/admin/events"),
        ("events: deep page (keyset, 90% in)", f"/admin/events?before={cursor}"),
        ("events: search one story", "/admin/events?q=story+4242%3A"),
        ("events: search a common word", "/admin/events?q=regulation"),
        ("events: search Chinese", "/admin/events?q=%E7%AE%97%E5%8A%9B"),
        ("events: search a word that is nowhere", "/admin/events?q=zeppelin"),
        ("events: topic hardware + month", "/admin/events?topic=hardware&month=2025-07"),
        ("events: search + topic, deep page",
         f"/admin/events?q=regulation&topic=hardware&before={cursor}"),
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribers", type=int, default=1_000_000, help="readers to load")
    ap.add_argument("--deliveries", type=int, default=100_000, help="outbox rows to load")
    ap.add_argument("--events", type=int, default=100_000, help="events to load")
    ap.add_argument("--database-url", default=None, help="an empty database (default SQLite)")
    ap.add_argument("--repeat", type=int, default=5, help="timed loads per page")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nl-bench-admin-"))
    url, tmp = fresh_database(args.database_url)
    database = url.split(":")[0].split("+")[0]
    results = []
    try:
        load_readers(url, args.subscribers, work)
        load_events(url, args.events, work)
        t0 = time.perf_counter()
        load_deliveries(url, args.deliveries)
        print(f"loaded deliveries in {time.perf_counter() - t0:.1f} s", flush=True)
        client = logged_in(url)
        for what, path in pages(url):
            got = {"page": what, "database": database, "subscribers": args.subscribers,
                   "deliveries": args.deliveries, "events": args.events,
                   **timed(client, path, args.repeat)}  # fmt: skip
            results.append(got)
            if not args.json:
                print(f"{what:46} {got['median_ms']:8.1f} ms median {got['max_ms']:8.1f} ms max"
                      f"  ({got['rows']} rows)", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
