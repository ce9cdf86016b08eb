"""Digests at each reader's local send time, driven by a controllable clock."""

import datetime as dt
import threading

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.db import make_engine
from newsletter.core.models import Delivery, DigestRun, Subscriber
from newsletter.core.settings import Settings
from newsletter.pipeline import plan_due_periods
from newsletter.pipeline.sample import load_sample
from newsletter.planning.send_times import send_moments
from newsletter.rendering.editions import make_environment

UTC = dt.UTC
EIGHT = dt.time(8, 0)


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


def test_daily_send_is_local_eight_in_three_zones():
    start, end = at(2025, 7, 15, 12), at(2025, 7, 16, 12, 1)
    got = {
        tz: [d.due_at for d in send_moments("daily", tz, EIGHT, start, end)]
        for tz in ("Asia/Shanghai", "Europe/London", "America/New_York")
    }
    assert got["Asia/Shanghai"] == [at(2025, 7, 16, 0)]  # UTC+8
    assert got["Europe/London"] == [at(2025, 7, 16, 7)]  # BST, UTC+1
    assert got["America/New_York"] == [at(2025, 7, 16, 12)]  # EDT, UTC-4
    (due,) = send_moments("daily", "Asia/Shanghai", EIGHT, start, end)
    assert due.period.key == "2025-07-15"  # the previous local day


def test_dst_moves_the_utc_instant_not_the_local_hour():
    spring = send_moments("daily", "America/New_York", EIGHT, at(2025, 3, 7, 0), at(2025, 3, 11, 0))
    assert [d.due_at.hour for d in spring] == [13, 13, 12, 12]  # 8 Mar EST ... 10 Mar EDT
    autumn = send_moments("daily", "Europe/London", EIGHT, at(2025, 10, 25, 0), at(2025, 10, 28, 0))
    assert [d.due_at.hour for d in autumn] == [7, 8, 8]  # BST until 26 Oct 01:00 UTC


def test_month_and_iso_week_boundaries():
    (monthly,) = send_moments("monthly", "UTC", EIGHT, at(2025, 7, 31), at(2025, 8, 2))
    assert (monthly.due_at, monthly.period.key) == (at(2025, 8, 1, 8), "2025-07")
    weeks = send_moments("weekly", "UTC", EIGHT, at(2025, 12, 27), at(2026, 1, 6))
    assert [(d.due_at.date().isoformat(), d.period.key) for d in weeks] == [
        ("2025-12-29", "2025-W52"),
        ("2026-01-05", "2026-W01"),
    ]
    (jan,) = send_moments("monthly", "Asia/Shanghai", EIGHT, at(2025, 12, 31), at(2026, 1, 2))
    assert (jan.due_at, jan.period.key) == (at(2026, 1, 1, 0), "2025-12")


@pytest.fixture
def daily_readers(engine):
    with Session(engine) as s:
        load_sample(session=s)
        for n, tz in enumerate(["Asia/Shanghai", "Europe/London", "America/New_York"]):
            for k in range(2):
                add_subscriber(
                    session=s,
                    sub_in=SubscriberIn(
                        email=f"r{n}{k}@example.com",
                        timezone=tz,
                        frequency="daily",
                        topics="governance,capital,hardware,open-source",
                    ),
                )
        # readers since June 2025: the clock of these tests runs in July 2025
        s.execute(update(Subscriber).values(created_at=at(2025, 6, 1)))
        s.commit()
    return engine


def queued(engine):
    with Session(engine) as s:
        return sorted(s.execute(select(Delivery.idempotency_key)).scalars())


def test_each_zone_is_planned_when_its_morning_comes_and_only_once(daily_readers, db_url):
    settings = Settings(database_url=db_url, catch_up_hours=6)
    env = make_environment(settings.templates_dir)
    # 2025-07-27 08:30 in Shanghai: the 26 July digest (WAIC day) is due there only
    plan_due_periods(engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 27, 0, 30))
    keys = queued(daily_readers)
    assert len(keys) == 2 and all(k.endswith("digest-daily|2025-07-26") for k in keys)
    plan_due_periods(engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 27, 0, 45))
    assert len(queued(daily_readers)) == 2  # nothing twice
    plan_due_periods(engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 27, 12, 5))
    assert len(queued(daily_readers)) == 6  # London at 07:00 UTC, New York at 12:00 UTC


def test_a_new_database_reports_no_digest_missed_before_its_readers_existed(engine, db_url, caplog):
    """The first run: demo readers added just now; the sends of past months and weeks
    were nobody's, so none is "skipped" or logged as older than the horizon."""
    from newsletter.pipeline.sample import add_demo_readers

    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    settings = Settings(database_url=db_url, catch_up_hours=72)
    env = make_environment(settings.templates_dir)
    done = plan_due_periods(engine=engine, env=env, settings=settings)
    assert all(outcome != "skipped" for _, outcome in done)
    assert "older than the catch-up horizon" not in caplog.text
    with Session(engine) as s:
        runs = s.execute(select(DigestRun.outcome)).scalars().all()
    assert "skipped" not in runs
    # a reader who was there then, on the other hand, did miss it: that is reported
    with Session(engine) as s:
        s.execute(update(Subscriber).values(created_at=dt.datetime(2025, 6, 1, tzinfo=UTC)))
        s.commit()
    done = plan_due_periods(engine=engine, env=env, settings=settings)
    assert any(outcome == "skipped" for _, outcome in done)
    assert "older than the catch-up horizon" in caplog.text


def test_catch_up_sends_missed_days_once_and_skips_beyond_the_horizon(
    daily_readers, db_url, caplog
):
    settings = Settings(database_url=db_url, catch_up_hours=50)
    env = make_environment(settings.templates_dir)
    plan_due_periods(engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 10, 1))
    before = set(queued(daily_readers))
    # down from 10 July 01:00 until 14 July 01:00 UTC (the sample has news every day 8-13 July)
    plan_due_periods(engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 14, 1))
    new = set(queued(daily_readers)) - before
    by_period = {}
    for k in new:
        by_period.setdefault(k.rsplit("|", 1)[1], []).append(k)
    # within 50 hours: Shanghai's 11, 12, 13 July; London's and New York's 11, 12 July
    assert {p: len(v) for p, v in by_period.items()} == {
        "2025-07-11": 6,
        "2025-07-12": 6,
        "2025-07-13": 2,
    }
    with Session(daily_readers) as s:
        skipped = s.execute(
            select(func.count()).select_from(DigestRun).where(DigestRun.outcome == "skipped")
        ).scalar()
    assert skipped > 0
    assert "older than the catch-up horizon" in caplog.text
    again = plan_due_periods(
        engine=daily_readers, env=env, settings=settings, now=at(2025, 7, 14, 1)
    )
    assert again == [] and set(queued(daily_readers)) == before | new


@pytest.mark.postgres
def test_two_schedulers_on_one_postgres_send_nothing_twice(daily_readers, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL")
    settings = Settings(database_url=db_url, catch_up_hours=72)
    env = make_environment(settings.templates_dir)
    now = at(2025, 7, 28, 13)
    errors = []

    def scheduler():
        engine = make_engine(db_url)
        try:
            plan_due_periods(engine=engine, env=env, settings=settings, now=now)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    keys = queued(daily_readers)
    assert len(keys) == len(set(keys)) > 0
    with Session(daily_readers) as s:
        runs = s.execute(select(DigestRun.frequency, DigestRun.period, DigestRun.timezone)).all()
    assert len(runs) == len(set(runs))
