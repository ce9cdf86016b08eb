"""Set-based planning writes exactly the rows a reader-by-reader plan would.

The reference is `iter_recipients` + `events_for`, the straightforward plan that walks
every reader in Python; `pipeline.plan_period` groups and enqueues in the database instead.
"""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import insert, select, update
from sqlmodel import Session

from newsletter.audience.subscribers import address_hash
from newsletter.core.models import (
    Delivery,
    Edition,
    Event,
    Subscriber,
    Subscription,
    Suppression,
    Topic,
)
from newsletter.core.periods import parse_period
from newsletter.core.settings import Settings
from newsletter.pipeline import plan_period
from newsletter.pipeline.sample import load_sample
from newsletter.planning import readers as planning
from newsletter.planning.digests import digest_kind, idempotency_key
from newsletter.planning.readers import events_for, iter_recipients, period_events
from newsletter.rendering.editions import Segment, make_environment
from tests.support.planning import plan_in


def _population(engine, picks: bool = False) -> None:
    """Readers of every topic set and language, in two time zones, with ids spread over
    several enqueue ranges; plus readers that must get nothing: pending, unsubscribed,
    weekly, topic-less, suppressed (ASCII, upper-case, padded and non-ASCII addresses),
    and readers whose only topic has no event this period (unless `picks`: then the
    month has editor's picks, which every monthly reader gets)."""
    with Session(engine) as s:
        load_sample(session=s)
        if not picks:
            s.execute(update(Event).where(Event.importance == 5).values(importance=4))
            s.execute(update(Event).values(pinned=False))
        topics = list(s.execute(select(Topic).order_by(Topic.position)).scalars())
        # a topic with no events in July 2025, sharing a position with another topic so
        # that the order falls back to the slug
        quiet = Topic(slug="a-quiet", name_en="Quiet", name_zh="安静", position=topics[1].position)
        s.add(quiet)
        s.flush()
        topics.append(quiet)
        combos = [c for n in range(1, len(topics) + 1) for c in itertools.combinations(topics, n)]
        subs, links, sid = [], [], 100
        for i, combo in enumerate(combos * 3):
            sid += 1 + (i % 5) * 3  # gaps in the ids
            subs.append(
                {
                    "id": sid,
                    "email": f"reader{sid}@example.com",
                    "language": ("en", "zh")[i % 2],
                    "timezone": ("UTC", "Asia/Shanghai")[(i // 2) % 2],
                    "frequency": "monthly",
                    "status": "active",
                }
            )
            links += [{"subscriber_id": sid, "topic_id": t.id} for t in combo]
        odd = [
            ("pending@example.com", "pending", "monthly"),
            ("gone@example.com", "unsubscribed", "monthly"),
            ("weekly@example.com", "active", "weekly"),
            ("suppressed@example.com", "active", "monthly"),
            ("Shouting@EXAMPLE.com", "active", "monthly"),
            (" padded@example.com ", "active", "monthly"),
            ("jörg@bücher.example", "active", "monthly"),
            ("Ünïcode@bücher.example", "active", "monthly"),
        ]
        for email, status, frequency in odd:
            sid += 1
            subs.append(
                {
                    "id": sid,
                    "email": email,
                    "language": "en",
                    "timezone": "UTC",
                    "frequency": frequency,
                    "status": status,
                }
            )
            links += [{"subscriber_id": sid, "topic_id": t.id} for t in topics]
        sid += 1
        subs.append({"id": sid, "email": "no-topics@example.com", "status": "active"})
        s.execute(insert(Subscriber), subs)
        s.execute(insert(Subscription), links)
        for email in ("suppressed@example.com", "shouting@example.com", "padded@example.com"):
            s.add(Suppression(address_hash=address_hash(email), reason="bounced"))
        s.add(Suppression(address_hash=address_hash("ünïcode@bücher.example"), reason="removed"))
        s.commit()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval('subscriber_id_seq', (SELECT max(id) FROM subscriber))"
            )


def _expected(engine, period_key: str, timezone: str | None):
    """(rows, summary) of the reader-by-reader plan."""
    period = parse_period("monthly", period_key)
    rows, skipped, segments, counts = [], 0, {}, {}
    with Session(engine) as s:
        events = period_events(session=s, period=period)
        for batch in iter_recipients(
            session=s, frequency="monthly", batch_size=7, timezone=timezone
        ):
            for r in batch:
                mine = events_for(events, r.topic_slugs, "monthly")
                if not mine:
                    skipped += 1
                    continue
                segment = Segment("email", "monthly", period, r.language, r.topic_slugs)
                segments[segment.key] = [e.id for e, _ in mine]
                counts[segment.key] = counts.get(segment.key, 0) + 1
                rows.append(
                    (
                        idempotency_key(r.subscriber_id, "monthly", period),
                        "email",
                        digest_kind("monthly"),
                        period.key,
                        r.subscriber_id,
                        None,
                        segment.key,
                        "queued",
                        0,
                    )
                )
    return rows, skipped, segments, counts


def _stored(engine):
    with Session(engine) as s:
        return sorted(
            tuple(r)
            for r in s.execute(
                select(
                    Delivery.idempotency_key,
                    Delivery.channel,
                    Delivery.kind,
                    Delivery.period,
                    Delivery.subscriber_id,
                    Delivery.endpoint_id,
                    Edition.segment_key,
                    Delivery.status,
                    Delivery.attempts,
                )
                .join(Edition, Edition.id == Delivery.edition_id)
                .where(Delivery.channel == "email")
            )
        )


@pytest.mark.parametrize(
    ("timezone", "picks"), [(None, False), ("Asia/Shanghai", False), (None, True)]
)
def test_set_based_plan_matches_reader_by_reader_plan(engine, db_url, monkeypatch, timezone, picks):
    monkeypatch.setattr(planning, "ID_CHUNK", 10)  # many enqueue ranges, some empty
    _population(engine, picks)
    rows, skipped, segments, counts = _expected(engine, "2025-07", timezone)
    # with picks, a reader whose topics had nothing still gets the month's picks
    assert (skipped == 0) is picks and len(segments) > 20 and len(rows) > 40
    settings = Settings(database_url=db_url)
    env = make_environment(settings.templates_dir)
    progressed = []

    def send(dry_run=False):
        with Session(engine) as s:
            return plan_period(
                session=s,
                env=env,
                settings=settings,
                frequency="monthly",
                period_key="2025-07",
                dry_run=dry_run,
                timezone=timezone,
                progress=progressed.append,
            )

    dry = send(dry_run=True)
    assert _stored(engine) == []
    summary = send()
    for got in (dry, summary):
        assert got.recipients == len(rows)
        assert got.skipped_empty == skipped
        assert got.segment_recipients == counts
        assert got.segments == {k: len(v) for k, v in segments.items()}
    assert summary.enqueued == len(rows) and dry.enqueued == 0
    assert sum(progressed) == 2 * (len(rows) + skipped)
    # the same rows, with the same keys
    assert _stored(engine) == sorted(rows)
    with Session(engine) as s:
        editions = list(s.execute(select(Edition).order_by(Edition.id)).scalars())
        # one edition per segment, stored in the order the segments' first readers come
        firsts = {}
        for row in rows:
            firsts.setdefault(row[6], row[4])
        assert [e.segment_key for e in editions] == sorted(firsts, key=firsts.__getitem__)
        for e in editions:
            assert e.event_ids == segments[e.segment_key]
            assert ",".join(e.topic_slugs) == e.segment_key.rsplit("|", 1)[1]
        excluded = set(
            s.execute(
                select(Subscriber.id).where(
                    Subscriber.email.in_(
                        [
                            "suppressed@example.com",
                            "Shouting@EXAMPLE.com",
                            " padded@example.com ",
                            "Ünïcode@bücher.example",
                            "pending@example.com",
                            "weekly@example.com",
                        ]
                    )
                )
            ).scalars()
        )
        kept = s.execute(
            select(Subscriber.id).where(Subscriber.email == "jörg@bücher.example")
        ).scalar_one()
    planned = {r[4] for r in rows}
    assert not excluded & planned
    assert (kept in planned) == (timezone is None)
    # planning again adds nothing, and says so
    again = send()
    assert again.enqueued == 0 and again.already_enqueued == len(rows)
    assert _stored(engine) == sorted(rows)


def test_a_reader_added_later_is_planned_once(engine, db_url):
    _population(engine)
    settings = Settings(database_url=db_url)
    env = make_environment(settings.templates_dir)

    def send():
        with Session(engine) as s:
            return plan_period(
                session=s, env=env, settings=settings, frequency="monthly", period_key="2025-07"
            )

    first = send()
    with Session(engine) as s:
        topic = s.execute(select(Topic).where(Topic.slug == "capital")).scalar_one()
        late = Subscriber(email="late@example.com", language="zh")
        s.add(late)
        s.flush()
        s.add(Subscription(subscriber_id=late.id, topic_id=topic.id))
        s.commit()
        late_id = late.id
    second = send()
    assert second.enqueued == 1 and second.recipients == first.recipients + 1
    with Session(engine) as s:
        (row,) = s.execute(select(Delivery).where(Delivery.subscriber_id == late_id)).scalars()
        assert row.idempotency_key == f"subscriber:{late_id}|digest-monthly|2025-07"


def test_every_spelling_of_a_suppressed_address_is_left_out(engine, db_url):
    """Rows stored before addresses were normalised can hold one mailbox twice, in two
    spellings that hash alike: a suppression covers both, in either planning."""
    spellings = ["Zoë@bücher.example", "zoë@bücher.example", " ZOË@bücher.example"]
    with Session(engine) as s:
        load_sample(session=s)
        topic = s.execute(select(Topic).where(Topic.slug == "capital")).scalar_one()
        ids = []
        for address in spellings + ["kept@example.com"]:
            sub = Subscriber(email=address, status="active", source="import")
            s.add(sub)
            s.flush()
            s.add(Subscription(subscriber_id=sub.id, topic_id=topic.id))
            ids.append(sub.id)
        s.add(Suppression(address_hash=address_hash("zoë@bücher.example"), reason="bounced"))
        s.commit()
    with Session(engine) as s:
        reference = [
            r.subscriber_id for b in iter_recipients(session=s, frequency="monthly") for r in b
        ]
    assert reference == ids[-1:]
    settings = Settings(database_url=db_url)
    with Session(engine) as s:
        plan_in(s, settings)
        s.commit()
    with Session(engine) as s:
        planned = s.execute(select(Delivery.subscriber_id)).scalars().all()
    assert planned == ids[-1:]
