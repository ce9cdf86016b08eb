"""The monthly send and its sharp take: a proof to the editors ahead of it, then the send
waits for the take's approval until a deadline. Driven by a controllable clock, with a
real SMTP server receiving what goes out."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.models import Delivery, DigestRun, Subscriber
from newsletter.core.settings import Settings
from newsletter.ingest.takes import approve_take, get_take, set_take
from newsletter.pipeline import plan_due_periods
from newsletter.pipeline.sample import load_sample
from newsletter.planning.digests import message_bodies
from newsletter.planning.send_times import waiting_sends
from newsletter.rendering.editions import make_environment
from tests.support.env import TEST_SECRET_KEY
from tests.support.workers import drain

UTC = dt.UTC
EDITOR = "editor@example.org"
DRAFT = "The draft words about Zanzibar chips."


def at(*args):
    return dt.datetime(*args, tzinfo=UTC)


# the July 2025 digest is due on 1 August at 08:00 UTC for readers in UTC
DUE = at(2025, 8, 1, 8)


@pytest.fixture
def readers(engine):
    """The sample's July events and takes, two monthly readers in UTC, and the English
    take of July rewritten: a draft again."""
    with Session(engine) as s:
        load_sample(session=s)
        for email, language in (("ada@example.com", "en"), ("lei@example.com", "zh")):
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(
                    email=email,
                    language=language,
                    timezone="UTC",
                    frequency="monthly",
                    topics="governance,capital,hardware,open-source",
                ),
            )
        s.execute(update(Subscriber).values(created_at=at(2025, 6, 1)))
        take = set_take(session=s, period="2025-07", language="en", body=DRAFT)
        assert take.state == "draft"
        s.commit()
    return engine


@pytest.fixture
def make_settings(db_url, smtp_server, tmp_path):
    def make(**kw) -> Settings:
        values = {
            "database_url": db_url,
            "smtp_url": smtp_server.url,
            "secret_key": TEST_SECRET_KEY,
            "outbox_dir": tmp_path / "outbox",
            "proof_to": [EDITOR],
            "proof_lead_hours": 24,
            "take_deadline_hours": 24,
            "retry_base_seconds": 0.02,
        }
        return Settings(**(values | kw))

    return make


def tick(engine, settings, now):
    return plan_due_periods(
        engine=engine, env=make_environment(settings.templates_dir), settings=settings, now=now
    )


def deliveries(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(Delivery)).scalar_one()


def received_by(smtp_server, address):
    return [r.message for r in smtp_server.recorder.to(address)]


def reader_text(smtp_server, address) -> str:
    (message,) = smtp_server.recorder.to(address)
    html, text = message_bodies(message.data)
    return html + text


def test_proof_at_lead_time_once_then_the_send_waits_for_approval(
    readers, make_settings, smtp_server
):
    settings = make_settings()
    tick(readers, settings, DUE - dt.timedelta(hours=25))
    assert smtp_server.recorder.received == []  # not yet within the lead time

    tick(readers, settings, DUE - dt.timedelta(hours=23, minutes=30))
    proofs = received_by(smtp_server, EDITOR)
    assert len(proofs) == 2  # one per language the monthly readers read
    assert all(m["Subject"].startswith("[Proof] ") for m in proofs)
    assert {m["Content-Language"] for m in proofs} == {"en", "zh"}
    assert all(r.rcpt_tos == [EDITOR] for r in smtp_server.recorder.received)
    en = next(m for m in proofs if m["Content-Language"] == "en")
    assert "Zanzibar" in en.get_body(("plain",)).get_content()  # the draft, to proof it
    assert deliveries(readers) == 0  # a proof is nobody's delivery

    # later ticks, and a scheduler started afresh, send it no second time
    tick(readers, settings, DUE - dt.timedelta(hours=2))
    tick(readers, settings, DUE - dt.timedelta(hours=1))
    assert len(received_by(smtp_server, EDITOR)) == 2

    # the send's time comes: the English take is a draft, so it waits
    tick(readers, settings, DUE + dt.timedelta(minutes=5))
    assert deliveries(readers) == 0
    with Session(readers) as s:
        (waiting,) = waiting_sends(session=s, settings=settings, now=DUE + dt.timedelta(minutes=5))
        runs = select(func.count()).where(
            DigestRun.frequency == "monthly", DigestRun.period == "2025-07"
        )
        assert s.execute(runs).scalar_one() == 0  # not claimed: nothing to resume after a restart
    assert (waiting.period, waiting.languages) == ("2025-07", ["en"])
    assert waiting.deadline == DUE + dt.timedelta(hours=24)

    with Session(readers) as s:
        approve_take(session=s, period="2025-07", language="en", by="editor")
        s.commit()
    done = tick(readers, settings, DUE + dt.timedelta(minutes=20))
    assert [(d.period.key, outcome) for d, outcome in done] == [("2025-07", "done")]
    assert deliveries(readers) == 2
    with Session(readers) as s:
        assert waiting_sends(session=s, settings=settings, now=DUE + dt.timedelta(hours=1)) == []
    drain(readers, settings)
    assert "Zanzibar" in reader_text(smtp_server, "ada@example.com")
    assert len(received_by(smtp_server, EDITOR)) == 2  # and still one proof per language
    tick(readers, settings, DUE + dt.timedelta(hours=30))
    assert deliveries(readers) == 2  # once


@pytest.mark.parametrize("unapproved", ["omit", "include"])
def test_at_the_deadline_the_send_goes_with_or_without_the_draft(
    readers, make_settings, smtp_server, unapproved
):
    settings = make_settings(take_unapproved=unapproved)
    tick(readers, settings, DUE + dt.timedelta(minutes=1))
    tick(readers, settings, DUE + dt.timedelta(hours=23, minutes=59))
    assert deliveries(readers) == 0  # still waiting, a minute before the deadline
    with Session(readers) as s:
        (waiting,) = waiting_sends(session=s, settings=settings, now=DUE + dt.timedelta(hours=23))
    assert waiting.unapproved == unapproved

    done = tick(readers, settings, DUE + dt.timedelta(hours=24, minutes=1))
    assert [outcome for _, outcome in done] == ["done"]
    drain(readers, settings)
    english = reader_text(smtp_server, "ada@example.com")
    assert ("Zanzibar" in english) is (unapproved == "include")
    # the Chinese take was approved all along: it goes either way
    with Session(readers) as s:
        zh_take = get_take(session=s, period="2025-07", language="zh")
        assert zh_take.state == "approved"
        first_line = zh_take.body_markdown.strip().splitlines()[0].strip("# ").strip()
    assert first_line[:8] in reader_text(smtp_server, "lei@example.com")
    with Session(readers) as s:
        assert waiting_sends(session=s, settings=settings, now=DUE + dt.timedelta(hours=25)) == []


def test_no_wait_when_the_deadline_is_zero(readers, make_settings, smtp_server):
    settings = make_settings(take_deadline_hours=0, proof_to=[])
    tick(readers, settings, DUE + dt.timedelta(minutes=1))
    assert deliveries(readers) == 2  # a deadline of 0 never waits (the draft is omitted)
    assert smtp_server.recorder.received == []  # no proof addresses, no proof
    drain(readers, settings)
    assert "Zanzibar" not in reader_text(smtp_server, "ada@example.com")


def test_proof_addresses_in_the_settings_are_checked_at_start():
    from pydantic import ValidationError

    settings = Settings(proof_to="Editor@Example.org, desk@bücher.example")
    assert settings.proof_to == ["editor@example.org", "desk@bücher.example"]
    assert Settings(proof_to='["a@example.org"]').proof_to == ["a@example.org"]
    for bad in ("editor@example.org\x07", "not-an-address", "a@example.org,b@exa mple.org"):
        with pytest.raises(ValidationError):
            Settings(proof_to=bad)
    with pytest.raises(ValidationError):
        Settings(take_unapproved="maybe")
