"""Outbox mechanics: idempotent enqueue, claims that respect limits and leases, backoff."""

import random

from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.delivery import outbox
from newsletter.models import Delivery


def rows(n, prefix="k"):
    return [
        {"idempotency_key": f"{prefix}{i}", "channel": "email", "kind": "test"} for i in range(n)
    ]


def test_enqueue_twice_adds_nothing(engine):
    with Session(engine) as s:
        assert outbox.enqueue(s, rows(5)) == 5
        assert outbox.enqueue(s, rows(7)) == 2
        s.commit()
        assert s.execute(select(func.count()).select_from(Delivery)).scalar_one() == 7


def test_claim_respects_limit_and_does_not_double_claim(engine):
    with Session(engine) as s:
        outbox.enqueue(s, rows(10))
        s.commit()
    a = outbox.claim(engine, worker="a", limit=4, lease_seconds=60)
    b = outbox.claim(engine, worker="b", limit=4, lease_seconds=60)
    c = outbox.claim(engine, worker="c", limit=4, lease_seconds=60)
    assert (len(a), len(b), len(c)) == (4, 4, 2)
    assert not set(a) & set(b) and not set(b) & set(c)
    assert outbox.claim(engine, worker="d", limit=4, lease_seconds=60) == []
    assert outbox.release(engine, worker="a", ids=a) == 4
    assert sorted(outbox.claim(engine, worker="d", limit=10, lease_seconds=60)) == a


def test_expired_lease_makes_rows_claimable(engine):
    with Session(engine) as s:
        outbox.enqueue(s, rows(3))
        s.commit()
    first = outbox.claim(engine, worker="a", limit=3, lease_seconds=60)
    assert outbox.claim(engine, worker="b", limit=3, lease_seconds=60) == []
    assert outbox.claim(engine, worker="b", limit=3, lease_seconds=0) == first


def test_temporary_failures_back_off_then_die(engine):
    with Session(engine) as s:
        outbox.enqueue(s, rows(1))
        s.commit()
    for attempt in range(1, 4):
        (i,) = outbox.claim(engine, worker="w", limit=1, lease_seconds=60)
        counts = outbox.record(
            engine,
            [outbox.Outcome(i, "temporary", "451 later", 451)],
            worker="w",
            max_attempts=3,
            retry_base=0.0001,
            retry_max=0.001,
        )
        assert counts == ({"queued": 1} if attempt < 3 else {"failed": 1})
        with Session(engine) as s:
            d = s.get(Delivery, i)
            assert d.attempts == attempt
        if attempt < 3:
            import time

            time.sleep(0.01)


def test_retry_after_is_honoured(engine):
    with Session(engine) as s:
        outbox.enqueue(s, rows(1))
        s.commit()
    (i,) = outbox.claim(engine, worker="w", limit=1, lease_seconds=60)
    outbox.record(
        engine,
        [outbox.Outcome(i, "temporary", "429", 429, retry_after=3600)],
        worker="w",
        max_attempts=5,
        retry_base=1,
        retry_max=10,
    )
    assert 3590 < outbox.next_due_in(engine) <= 3600


def test_backoff_grows_and_is_capped_with_jitter():
    rng = random.Random(1)
    delays = [outbox.backoff_seconds(n, base=30, cap=3600, rng=rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        full = min(3600, 30 * 2 ** (n - 1))
        assert full / 2 <= d <= full
