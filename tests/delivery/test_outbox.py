"""Outbox mechanics: idempotent enqueue, claims that respect limits and leases, backoff."""

import random

from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.core.models import Delivery
from newsletter.delivery import outbox, outcomes


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
        counts = outcomes.record(
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
    outcomes.record(
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


# --- delivery state: keys, recording a batch, retrying --------------------------------------

import datetime as dt  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy import literal  # noqa: E402

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, address_hash  # noqa: E402
from newsletter.core.metrics import MESSAGES  # noqa: E402
from newsletter.core.models import (  # noqa: E402
    DeliveryAttempt,
    Suppression,
    WebhookEndpoint,
    utcnow,
)

RECORD = {"worker": "w", "max_attempts": 3, "retry_base": 60, "retry_max": 600}


def test_keys_are_spelled_as_they_always_were():
    """Planned rows are found again by key: a new spelling would send a period twice."""
    key = outbox.idempotency_key
    assert (
        key("digest-monthly", "2025-07", subscriber_id=42) == "subscriber:42|digest-monthly|2025-07"
    )
    assert key("alert", "event:7", endpoint_id=3) == "endpoint:3|alert|event:7"
    assert key("alert", "event:7", subscriber_id=5) == "subscriber:5|alert|event:7"
    assert (
        key("digest-weekly", "2025-W28", endpoint_id=3, extra=["part:2"])
        == "endpoint:3|digest-weekly|2025-W28|part:2"
    )
    assert (
        key("confirm", "2025071408", subscriber_id=9, extra=["after:20250714081500"])
        == "subscriber:9|confirm|2025071408|after:20250714081500"
    )
    with pytest.raises(ValueError):
        key("alert", "x")
    with pytest.raises(ValueError):
        key("alert", "x", subscriber_id=1, endpoint_id=1)


def test_the_sql_spelling_of_a_key_is_the_same(engine):
    with engine.connect() as conn:
        got = conn.execute(
            select(outbox.idempotency_key_sql("digest-monthly", "2025-07", literal(42)))
        ).scalar_one()
    assert got == outbox.idempotency_key("digest-monthly", "2025-07", subscriber_id=42)


def _queue_and_claim(engine, n, **row):
    with Session(engine) as s:
        outbox.enqueue(
            s,
            [
                {"idempotency_key": f"r{i}", "channel": "email", "kind": "test", **row}
                for i in range(n)
            ],
        )
        s.commit()
    return outbox.claim(engine, worker="w", limit=n, lease_seconds=60)


def _rows(engine) -> dict[int, Delivery]:
    with Session(engine) as s:
        return {d.id: d for d in s.execute(select(Delivery)).scalars()}


def test_record_writes_every_kind_of_outcome_in_one_go(engine):
    ids = _queue_and_claim(engine, 9)
    before = MESSAGES.labels("email", "sent")._value.get()
    started = utcnow() - dt.timedelta(seconds=1)
    Oc = outbox.Outcome
    counts = outcomes.record(
        engine,
        [
            Oc(ids[0], "sent", None, 250, message_id="<m0>", started_at=started),
            Oc(ids[1], "temporary", "451 later", 451, started_at=started),
            Oc(ids[2], "temporary", "451 later", 451, retry_after=7200),
            Oc(ids[3], "permanent", "550 no", 550, detail="Traceback: here"),
            Oc(ids[4], "deferred", retry_after=30),
            Oc(ids[5], "suppressed", "address is suppressed"),
            Oc(ids[6], "cancelled", "recipient is gone"),
            Oc(ids[7], "held", "endpoint disabled"),
            Oc(ids[8], "exploded", "a bug"),
        ],
        **RECORD,
    )
    assert counts == {
        "sent": 1, "queued": 2, "deferred": 1, "failed": 2, "suppressed": 1, "cancelled": 1,
        "held": 1,
    }  # fmt: skip
    rows = _rows(engine)
    status = {i: rows[i].status for i in ids}
    assert [status[i] for i in ids] == [
        "sent", "queued", "queued", "failed", "queued", "suppressed", "cancelled", "held", "failed"
    ]  # fmt: skip
    assert all(rows[i].claimed_by is None and rows[i].claimed_at is None for i in ids)
    assert [rows[i].attempts for i in ids] == [1, 1, 1, 1, 0, 0, 0, 0, 1]
    assert rows[ids[0]].message_id == "<m0>" and rows[ids[0]].sent_at is not None
    assert rows[ids[1]].last_error == "451 later"
    now = utcnow()

    def due_in(i):
        when = rows[i].next_attempt_at
        return ((when if when.tzinfo else when.replace(tzinfo=dt.UTC)) - now).total_seconds()

    assert 25 < due_in(ids[1]) <= 60  # backoff: half fixed, half random
    assert 7190 < due_in(ids[2]) <= 7200  # Retry-After is longer than the backoff
    assert 25 < due_in(ids[4]) <= 30
    assert "unknown outcome 'exploded'" in rows[ids[8]].last_error
    with Session(engine) as s:
        tries = {a.delivery_id: a for a in s.execute(select(DeliveryAttempt)).scalars()}
    assert set(tries) == {ids[0], ids[1], ids[2], ids[3], ids[8]}  # tries, and the bug
    assert tries[ids[3]].error == "550 no\nTraceback: here" and tries[ids[3]].status_code == 550
    assert tries[ids[0]].worker == "w" and tries[ids[0]].outcome == "sent"
    assert MESSAGES.labels("email", "sent")._value.get() == before + 1


def test_the_last_allowed_temporary_failure_is_final(engine):
    (i,) = _queue_and_claim(engine, 1)
    for _ in range(2):
        outcomes.record(engine, [outbox.Outcome(i, "temporary", "x")], **RECORD)
        with engine.begin() as conn:  # due at once, claimable again
            conn.execute(
                Delivery.__table__.update().values(
                    next_attempt_at=utcnow(), status="sending", claimed_by="w"
                )
            )
    counts = outcomes.record(engine, [outbox.Outcome(i, "temporary", "x")], **RECORD)
    assert counts == {"failed": 1} and _rows(engine)[i].attempts == 3


def test_a_hard_bounce_is_suppressed_with_the_result(engine, sample):
    with Session(engine) as s:
        sub = add_subscriber(
            session=s, sub_in=SubscriberIn(email="gone@example.com", topics=["capital"])
        )
        s.commit()
        sub_id = sub.id
    (i,) = _queue_and_claim(engine, 1, subscriber_id=sub_id)
    outcomes.record(
        engine, [outbox.Outcome(i, "permanent", "550 5.1.1 no such user", suppress=True)], **RECORD
    )
    with Session(engine) as s:
        row = s.execute(
            select(Suppression).where(Suppression.address_hash == address_hash("gone@example.com"))
        ).scalar_one()
    assert row.reason == "bounced"
    assert _rows(engine)[i].status == "failed"


def _endpoint(engine, name="team", **kw) -> int:
    with Session(engine) as s:
        ep = WebhookEndpoint(name=name, platform="generic", url="https://hooks.example.com/x", **kw)
        s.add(ep)
        s.commit()
        return ep.id


def test_an_endpoint_that_is_gone_is_disabled_and_its_queue_held_with_the_result(engine):
    ep = _endpoint(engine)
    ids = _queue_and_claim(engine, 1, channel="generic", endpoint_id=ep)
    with Session(engine) as s:  # queued behind it, not yet claimed
        outbox.enqueue(
            s,
            [
                {
                    "idempotency_key": "later",
                    "channel": "generic",
                    "kind": "alert",
                    "endpoint_id": ep,
                }
            ],
        )
        s.commit()
    outcomes.record(
        engine,
        [
            outbox.Outcome(
                ids[0], "permanent", "404 channel_not_found", 404, disable=True, endpoint_id=ep
            )
        ],
        **RECORD,
    )
    with Session(engine) as s:
        endpoint = s.get(WebhookEndpoint, ep)
        assert not endpoint.enabled and "gone: 404 channel_not_found" in endpoint.disabled_reason
        assert endpoint.consecutive_failures == 1
        later = s.execute(select(Delivery).where(Delivery.idempotency_key == "later")).scalar_one()
        assert later.status == "held"


def test_endpoint_failures_are_counted_and_reset_by_a_success(engine):
    ep = _endpoint(engine)
    ids = _queue_and_claim(engine, 3, channel="generic", endpoint_id=ep)
    limits = {"webhook_disable_after_failures": 2, "webhook_disable_after_hours": 0}
    outcomes.record(
        engine, [outbox.Outcome(ids[0], "temporary", "503", endpoint_id=ep)], **RECORD, **limits
    )
    with Session(engine) as s:
        got = s.get(WebhookEndpoint, ep)
        assert (got.consecutive_failures, got.enabled) == (1, True) and got.first_failure_at
    outcomes.record(engine, [outbox.Outcome(ids[1], "sent", endpoint_id=ep)], **RECORD, **limits)
    with Session(engine) as s:
        got = s.get(WebhookEndpoint, ep)
        assert (got.consecutive_failures, got.first_failure_at) == (0, None)
    # two failures in a row, and failing for at least 0 hours: disabled
    outcomes.record(
        engine, [outbox.Outcome(ids[2], "temporary", "503", endpoint_id=ep)], **RECORD, **limits
    )
    outcomes.record(
        engine,
        [outbox.Outcome(ids[0], "temporary", "503 again", endpoint_id=ep)],
        **RECORD,
        **limits,
    )
    with Session(engine) as s:
        got = s.get(WebhookEndpoint, ep)
        assert not got.enabled and "2 consecutive failures" in got.disabled_reason
        assert "503 again" in got.disabled_reason


def test_a_bug_noting_side_effects_does_not_cost_the_results(engine, monkeypatch):
    from newsletter.audience import endpoints as webhooks

    def broken(**kw):
        raise RuntimeError("bug in endpoint health")

    monkeypatch.setattr(webhooks, "note_results", broken)
    ep = _endpoint(engine)
    (i,) = _queue_and_claim(engine, 1, channel="generic", endpoint_id=ep)
    counts = outcomes.record(engine, [outbox.Outcome(i, "sent", endpoint_id=ep)], **RECORD)
    assert counts == {"sent": 1} and _rows(engine)[i].status == "sent"


def test_enqueue_holds_rows_for_a_disabled_endpoint(engine):
    on, off = _endpoint(engine, "on"), _endpoint(engine, "off", enabled=False)
    with Session(engine) as s:
        outbox.enqueue(
            s,
            [
                {
                    "idempotency_key": f"k{ep}",
                    "channel": "generic",
                    "kind": "alert",
                    "endpoint_id": ep,
                }
                for ep in (on, off)
            ],
        )
        s.commit()
    assert {d.endpoint_id: d.status for d in _rows(engine).values()} == {on: "queued", off: "held"}


def _fail(engine, ids, error="550 no"):
    outcomes.record(engine, [outbox.Outcome(i, "permanent", error) for i in ids], **RECORD)


def test_retry_requeues_failed_rows_only_and_starts_their_tries_afresh(engine):
    ids = _queue_and_claim(engine, 4)
    outcomes.record(engine, [outbox.Outcome(ids[0], "sent")], **RECORD)
    _fail(engine, ids[1:3])
    with Session(engine) as s:
        with pytest.raises(ValueError, match="say which"):
            outbox.retry(s)
        got = outbox.retry(s, everything=True)
        s.commit()
    assert (got.queued, got.held, got.total) == (2, 0, 2)
    rows = _rows(engine)
    assert [rows[i].status for i in ids] == ["sent", "queued", "queued", "sending"]
    assert rows[ids[1]].attempts == 0
    with Session(engine) as s:  # the history of the failed try is kept
        assert s.execute(select(func.count()).select_from(DeliveryAttempt)).scalar_one() == 3
    assert sorted(outbox.claim(engine, worker="w2", limit=10, lease_seconds=60)) == ids[1:3]


def test_retry_filters_combine(engine):
    ep = _endpoint(engine)
    mail = _queue_and_claim(engine, 3, kind="confirm")
    with Session(engine) as s:
        outbox.enqueue(
            s,
            [{"idempotency_key": "hook", "channel": "generic", "kind": "alert", "endpoint_id": ep}],
        )
        s.commit()
    hook = outbox.claim(engine, worker="w", limit=5, lease_seconds=60)
    _fail(engine, mail + hook)
    with Session(engine) as s:
        assert outbox.retry(s, ids=[mail[0], hook[0]], kinds=["confirm"]).total == 1
        assert outbox.retry(s, endpoint_id=ep).total == 1
        future = utcnow() + dt.timedelta(hours=1)
        assert outbox.retry(s, since=future).total == 0
        assert outbox.retry(s, since=utcnow() - dt.timedelta(hours=1), kinds=["confirm"]).total == 2
        s.commit()


def test_retried_rows_for_a_disabled_endpoint_are_held(engine):
    ep = _endpoint(engine)
    ids = _queue_and_claim(engine, 1, channel="generic", endpoint_id=ep)
    _fail(engine, ids)
    with engine.begin() as conn:
        conn.execute(WebhookEndpoint.__table__.update().values(enabled=False))
    with Session(engine) as s:
        got = outbox.retry(s, endpoint_id=ep)
        s.commit()
    assert (got.queued, got.held) == (0, 1) and _rows(engine)[ids[0]].status == "held"


def test_since_takes_dates_times_and_durations():
    now = dt.datetime(2025, 7, 14, 12, 0, tzinfo=dt.UTC)
    since = outbox.parse_since
    assert since("2025-07-01", now=now) == dt.datetime(2025, 7, 1, tzinfo=dt.UTC)
    assert since("2025-07-14T08:30", now=now) == dt.datetime(2025, 7, 14, 8, 30, tzinfo=dt.UTC)
    assert since("2025-07-14T08:30+02:00", now=now) == dt.datetime(
        2025, 7, 14, 6, 30, tzinfo=dt.UTC
    )
    assert since("90m", now=now) == now - dt.timedelta(minutes=90)
    assert since("1d12h", now=now) == now - dt.timedelta(hours=36)
    assert since(" 2W ", now=now) == now - dt.timedelta(weeks=2)
    for bad in (
        "yesterday",
        "",
        "12x",
        "-3h",
        "2025-13-01",
        "٢٠٢٥-07-01",
        "99999999999999w",
        "2026-01-01",
    ):
        with pytest.raises(ValueError):
            since(bad, now=now)


# --- a late result must not undo another worker's claim --------------------------------------


def _reclaimed(engine):
    """One row claimed by worker `a`, whose lease then ran out and `b` took it."""
    with Session(engine) as s:
        outbox.enqueue(s, [{"idempotency_key": "slow", "channel": "email", "kind": "test"}])
        s.commit()
    (i,) = outbox.claim(engine, worker="a", limit=1, lease_seconds=60)
    assert outbox.claim(engine, worker="b", limit=1, lease_seconds=0) == [i]
    return i


def test_a_late_result_does_not_requeue_a_row_another_worker_sent(engine):
    i = _reclaimed(engine)
    late = {**RECORD, "worker": "a"}
    assert outcomes.record(
        engine, [outbox.Outcome(i, "sent", message_id="<b>")], **{**RECORD, "worker": "b"}
    ) == {"sent": 1}
    # `a` finally hears back: a temporary failure. The row was sent: it must stay sent,
    # or it is queued and mailed once more.
    assert outcomes.record(engine, [outbox.Outcome(i, "temporary", "451 later")], **late) == {}
    row = _rows(engine)[i]
    assert (row.status, row.message_id, row.attempts) == ("sent", "<b>", 1)


def test_a_late_result_leaves_the_new_claim_alone(engine):
    i = _reclaimed(engine)
    # `a` hears back while `b` is still sending: b's claim (and its lease) stand
    assert (
        outcomes.record(
            engine, [outbox.Outcome(i, "permanent", "550")], **{**RECORD, "worker": "a"}
        )
        == {}
    )
    row = _rows(engine)[i]
    assert (row.status, row.claimed_by, row.attempts) == ("sending", "b", 0)
    with Session(engine) as s:  # the try happened: its history is kept
        (attempt,) = s.execute(select(DeliveryAttempt)).scalars()
    assert (attempt.worker, attempt.outcome) == ("a", "permanent")
    assert outcomes.record(engine, [outbox.Outcome(i, "sent")], **{**RECORD, "worker": "b"}) == {
        "sent": 1
    }
    assert _rows(engine)[i].status == "sent"


@pytest.mark.parametrize("wait", [1e11, 1e12, float("inf"), float("nan"), -5.0])
def test_an_absurd_retry_after_does_not_cost_the_batch(engine, wait):
    """A webhook receiver chooses its Retry-After (a header, or `retry_after` in a JSON
    body, which Python reads as Infinity too). A wait beyond the calendar must neither
    fail the batch's recording, which would leave the mail sent beside it in `sending`
    to be sent again when the lease ends, nor put a row off for ever."""
    ids = _queue_and_claim(engine, 3)
    counts = outcomes.record(
        engine,
        [
            outbox.Outcome(ids[0], "sent", message_id="<m>"),
            outbox.Outcome(ids[1], "temporary", "429 slow down", 429, retry_after=wait),
            outbox.Outcome(ids[2], "deferred", retry_after=wait),
        ],
        **RECORD,
    )
    assert counts == {"sent": 1, "queued": 1, "deferred": 1}
    rows = _rows(engine)
    assert rows[ids[0]].status == "sent"
    for i in ids[1:]:
        when = rows[i].next_attempt_at
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        assert rows[i].status == "queued"
        assert (
            dt.timedelta(0)
            <= when - utcnow() + dt.timedelta(seconds=10)
            <= dt.timedelta(days=1, seconds=10)
        )


def test_a_result_that_cannot_be_scheduled_fails_its_row_not_the_batch(engine):
    """An operator's retry settings so large that the next try falls past year 9999."""
    ids = _queue_and_claim(engine, 2)
    counts = outcomes.record(
        engine,
        [outbox.Outcome(ids[0], "sent"), outbox.Outcome(ids[1], "temporary", "451 later")],
        **{**RECORD, "max_attempts": 2000, "retry_base": 1e12, "retry_max": 1e13},
    )
    assert counts == {"sent": 1, "failed": 1}
    row = _rows(engine)[ids[1]]
    assert row.status == "failed" and "451 later (not recorded:" in row.last_error
    assert outbox.backoff_seconds(1500, base=30, cap=3600) <= 3600


def test_retry_takes_more_ids_than_a_statement_may_bind(engine):
    """`outbox retry --id ...` has no limit; PostgreSQL takes 65535 parameters at most."""
    ids = _queue_and_claim(engine, 2)
    _fail(engine, ids)
    with Session(engine) as s:
        got = outbox.retry(s, ids=[*range(1, 70_001)])
        s.commit()
    assert (got.queued, got.held) == (2, 0)
    assert {r.status for r in _rows(engine).values()} == {"queued"}


def test_a_row_held_while_its_endpoint_was_enabled_is_queued(engine):
    """The worker finds the endpoint disabled and holds the row; the operator enables it
    before that is recorded. Enabling queues held rows, but this one was still `sending`:
    recorded `held`, it would wait for an enable that has already happened."""
    from newsletter.pipeline import disable_endpoint, enable_endpoint

    ep = _endpoint(engine)
    (i,) = _queue_and_claim(engine, 1, channel="generic", endpoint_id=ep)
    with Session(engine) as s:  # disabled while the row was being sent: it is not held
        disable_endpoint(session=s, endpoint=s.get(WebhookEndpoint, ep), reason="gone")
        s.commit()
    with Session(engine) as s:
        enable_endpoint(session=s, endpoint=s.get(WebhookEndpoint, ep))
        s.commit()
    counts = outcomes.record(
        engine, [outbox.Outcome(i, "held", "endpoint disabled", endpoint_id=ep)], **RECORD
    )
    assert counts == {"queued": 1}
    assert _rows(engine)[i].status == "queued"
    assert outbox.claim(engine, worker="w", limit=1, lease_seconds=60) == [i]
