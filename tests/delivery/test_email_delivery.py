"""Email digests end to end through a real SMTP server on 127.0.0.1, checked from the MIME."""

import asyncio
import datetime as dt
import re

import pytest
from sqlalchemy import select, update
from sqlmodel import Session

from newsletter.audience.reader_links import read_token
from newsletter.audience.subscribers import SubscriberIn, add_subscriber, is_suppressed
from newsletter.core.models import Delivery, DeliveryAttempt, Edition, Subscriber
from newsletter.core.periods import parse_period
from newsletter.delivery import outbox
from newsletter.delivery.return_path import read_token as read_return_token
from newsletter.delivery.worker import Worker
from newsletter.pipeline.sample import load_sample
from newsletter.planning.readers import events_for, period_events
from tests.support.env import TEST_SECRET_KEY
from tests.support.planning import plan
from tests.support.settings import mail_settings
from tests.support.workers import drain

PEOPLE = [
    ("ada@example.com", "Ada", "en", "governance,capital"),
    ("li@example.com", "李雷", "zh", "hardware,open-source"),
    ("bo@example.com", "", "en", "open-source"),
    ("mei@example.com", "Mei", "en", "capital,governance"),
]


@pytest.fixture
def world(engine, db_url):
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email_, name, lang, topics in PEOPLE:
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(email=email_, name=name, language=lang, topics=topics),
            )
        s.commit()
    return engine


def expected_urls(engine, topics, period="2025-07"):
    with Session(engine) as s:
        events = period_events(session=s, period=parse_period("monthly", period))
    return {e.url for e, _ in events_for(events, tuple(topics.split(",")), "monthly")}


def test_each_subscriber_gets_their_events_in_their_language(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    summary = plan(world, settings)
    assert (summary.recipients, summary.enqueued, len(summary.segments)) == (4, 4, 3)
    stats = drain(world, settings)
    assert stats.by_status == {"sent": 4}

    for email_, name, lang, topics in PEOPLE:
        (got,) = smtp_server.recorder.to(email_)
        msg = got.message
        assert msg.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]  # HTML last: the preferred part
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        urls = set(re.findall(r"https://example\.com/ai-review/2025-07/[a-z0-9-]+", text))
        assert urls == expected_urls(world, topics), email_
        assert set(re.findall(r'href="(https://example\.com/ai-review/[^"]+)"', html)) == urls
        if lang == "zh":
            assert msg["Subject"] == "AI 产业简报 · 月度观察 · 2025年7月"
            assert "锐评" in text and "你好" in text
        else:
            assert msg["Subject"] == "AI Industry Brief · Monthly review · July 2025"
            assert "Sharp take" in text
        assert (f"Hi {name}," if lang == "en" and name else "") in text
        # the list headers mailbox providers key on
        assert msg["List-Id"] == (
            "AI Brief · 月度观察 <monthly.news.example.org>"  # a custom From name is kept
            if lang == "zh"
            else "AI Brief - Monthly review <monthly.news.example.org>"
        )
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        # no bounce domain configured: nothing reads unsubscribe@, so no mailto: is offered
        (https,) = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
        assert https.startswith("https://news.example.org/u/")
        sub_id, _ = read_token(TEST_SECRET_KEY, "unsubscribe", https.rsplit("/", 1)[1])
        with Session(world) as s:
            assert s.get(Subscriber, sub_id).email == email_
        assert https in text and https in html  # the visible unsubscribe link too
        assert msg["To"].addresses[0].addr_spec == email_
        assert msg["Message-ID"].endswith("@news.example.org>") and msg["Date"]
        # CSS inlined, but for the @media rules (dark mode, phones) left in <style>
        assert 'style="' in html and "@media (prefers-color-scheme: dark)" in html
        style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
        assert style.strip().startswith("@media") and ".card {" not in style.split("@media")[0]
        # the envelope sender is this delivery's own return path (VERP), From stays the list's
        assert msg["From"].addresses[0].addr_spec == "brief@news.example.org"
        local, domain = got.mail_from.split("@")
        assert local.startswith("bounces+") and domain == "news.example.org"
        named = read_return_token(TEST_SECRET_KEY, local.split("+", 1)[1], max_days=1)
        with Session(world) as s:
            assert (
                s.get(Subscriber, s.get(Delivery, named.delivery_id).subscriber_id).email == email_
            )


def test_one_edition_per_segment_and_resend_adds_nothing(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    plan(world, settings)
    again = plan(world, settings)
    assert again.enqueued == 0 and again.already_enqueued == 4
    drain(world, settings)
    plan(world, settings)
    drain(world, settings)
    assert len(smtp_server.recorder.received) == 4
    with Session(world) as s:
        assert len(s.execute(select(Edition)).all()) == 3  # ada and mei share one


def test_weekly_and_empty_digests(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    with Session(world) as s:
        s.execute(update(Subscriber).values(frequency="weekly"))
        s.commit()
    summary = plan(world, settings, "weekly", "2025-W30")  # 21-27 July
    assert summary.recipients >= 1
    drain(world, settings)
    for r in smtp_server.recorder.received:
        assert "Sharp take" not in r.message.get_body(("plain",)).get_content()
        assert "锐评" not in r.message.get_body(("plain",)).get_content()
    empty = plan(world, settings, "weekly", "2025-W40")
    assert empty.recipients == 0 and empty.skipped_empty == 4 and empty.enqueued == 0


def test_temporary_failure_is_retried_and_delivered_once(world, db_url, smtp_server):
    smtp_server.recorder.script["ada@example.com"] = ["451 4.3.0 try again later", "452 4.2.2 busy"]
    settings = mail_settings(db_url, smtp_server.url)
    plan(world, settings)
    stats = drain(world, settings)
    assert stats.by_status["sent"] == 4
    assert len(smtp_server.recorder.to("ada@example.com")) == 1
    assert smtp_server.recorder.attempts["ada@example.com"] == 3
    with Session(world) as s:
        d = s.execute(
            select(Delivery).where(Delivery.idempotency_key.like("subscriber:1|%"))
        ).scalar_one()
        attempts = (
            s.execute(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == d.id))
            .scalars()
            .all()
        )
    assert d.status == "sent" and d.attempts == 3
    assert [a.outcome for a in attempts] == ["temporary", "temporary", "sent"]
    assert attempts[0].status_code == 451 and "try again later" in attempts[0].error


def test_permanent_failure_suppresses_and_is_not_retried(world, db_url, smtp_server):
    smtp_server.recorder.script["bo@example.com"] = ["550 5.1.1 no such user"]
    settings = mail_settings(db_url, smtp_server.url)
    plan(world, settings)
    stats = drain(world, settings)
    assert stats.by_status == {"sent": 3, "failed": 1}
    assert smtp_server.recorder.attempts["bo@example.com"] == 1
    with Session(world) as s:
        assert is_suppressed(session=s, email="bo@example.com")
    # a later digest is not even planned for the suppressed address
    assert plan(world, settings, "monthly", "2025-07").recipients == 3


def test_policy_rejection_is_permanent_but_does_not_suppress(world, db_url, smtp_server):
    smtp_server.recorder.script["bo@example.com"] = ["550 5.7.1 message refused by policy"]
    settings = mail_settings(db_url, smtp_server.url)
    plan(world, settings)
    drain(world, settings)
    with Session(world) as s:
        assert not is_suppressed(session=s, email="bo@example.com")


def test_dropped_connection_is_retried(world, db_url, smtp_server):
    smtp_server.recorder.script["li@example.com"] = ["drop"]
    settings = mail_settings(db_url, smtp_server.url)
    plan(world, settings)
    stats = drain(world, settings)
    assert stats.by_status["sent"] == 4
    assert len(smtp_server.recorder.to("li@example.com")) == 1


def test_rows_of_a_dead_worker_are_sent_by_another_once(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url, lease_seconds=60)
    plan(world, settings)
    taken = outbox.claim(world, worker="dead-worker", limit=2, lease_seconds=60)
    assert len(taken) == 2

    async def one_batch():  # a live worker takes only the rows nobody holds
        worker = Worker(engine=world, settings=settings)
        await worker.run_batch()
        await worker.channel.aclose()

    asyncio.run(one_batch())
    assert len(smtp_server.recorder.received) == 2
    with Session(world) as s:  # the dead worker's lease runs out
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(taken))
            .values(claimed_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=120))
        )
        s.commit()
    drain(world, settings)
    assert sorted(r.rcpt_tos[0] for r in smtp_server.recorder.received) == sorted(
        p[0] for p in PEOPLE
    )


def test_header_injection_cannot_create_headers(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url)
    with Session(world) as s:  # bypass validation, as if the row came from elsewhere
        ada = s.execute(
            select(Subscriber).where(Subscriber.email == "ada@example.com")
        ).scalar_one()
        ada.name = "Ada\r\nBcc: victim@example.net\r\nX-Evil: 1"
        s.add(ada)
        s.commit()
    plan(world, settings)
    drain(world, settings)
    (got,) = smtp_server.recorder.to("ada@example.com")
    msg = got.message
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert got.rcpt_tos == ["ada@example.com"]
    assert b"\r\nBcc:" not in got.data


def test_file_outbox_is_the_default(world, db_url, tmp_path):
    settings = mail_settings(db_url, None, outbox_dir=tmp_path / "out")
    plan(world, settings)
    drain(world, settings)
    files = sorted((tmp_path / "out").glob("*.eml"))
    assert len(files) == 4
    assert not list((tmp_path / "out").glob(".tmp-*"))


@pytest.mark.postgres
def test_two_worker_processes_send_every_message_once(engine, db_url, smtp_server, tmp_path):
    """Two `newsletter worker` processes on one PostgreSQL outbox."""
    import os
    import subprocess
    import sys

    if not db_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL")
    with Session(engine) as s:
        load_sample(session=s)
        for n in range(120):
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(email=f"r{n}@example.com", topics="governance,hardware"),
            )
        s.commit()
    settings = mail_settings(db_url, smtp_server.url)
    assert plan(engine, settings).enqueued == 120
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_WORKER_BATCH": "5",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "newsletter", "worker", "--until-empty"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    rcpts = [r.rcpt_tos[0] for r in smtp_server.recorder.received]
    assert len(rcpts) == 120 and len(set(rcpts)) == 120
    assert all(b"sent" in out for out, _ in outs)  # both workers did some of the work


def test_dkim_signature_covers_one_click_headers(world, db_url, smtp_server, tmp_path):
    import base64
    import subprocess

    import dkim

    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    settings = mail_settings(db_url, smtp_server.url, dkim_key_file=key, dkim_selector="nl2025")
    plan(world, settings)
    drain(world, settings)
    got = smtp_server.recorder.to("li@example.com")[0]
    signature = got.message["DKIM-Signature"]
    assert "d=news.example.org" in signature and "s=nl2025" in signature
    signed = (
        signature.split("h=", 1)[1].split(";", 1)[0].lower().replace(" ", "").replace("\r\n", "")
    )
    assert "list-unsubscribe" in signed.split(":") and "list-unsubscribe-post" in signed.split(":")
    dns = {b"nl2025._domainkey.news.example.org.": record}
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: dns.get(name))
    tampered = got.data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: nope"
    )
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: dns.get(name))


def test_instant_readers_get_one_email_per_burst(engine, db_url, smtp_server):
    from newsletter.ingest.files import import_records
    from newsletter.planning.alerts import enqueue_recent_alerts
    from newsletter.topics.catalogue import ensure_default_topics

    settings = mail_settings(db_url, smtp_server.url, alert_batch_seconds=0)
    with Session(engine) as s:
        ensure_default_topics(session=s)
        add_subscriber(
            session=s,
            sub_in=SubscriberIn(email="now@example.com", frequency="instant", topics="hardware"),
        )
        add_subscriber(
            session=s,
            sub_in=SubscriberIn(email="later@example.com", frequency="monthly", topics="hardware"),
        )
        import_records(
            session=s,
            records=iter(
                [
                    (
                        "1",
                        {
                            "title": "New GPU cluster announced",
                            "url": "https://e.com/g1",
                            "occurred_on": "2025-08-01",
                        },
                    ),
                    (
                        "2",
                        {
                            "title": "Accelerator start-up ships a chip",
                            "url": "https://e.com/g2",
                            "occurred_on": "2025-08-01",
                        },
                    ),
                    (
                        "3",
                        {
                            "title": "Unrelated poetry prize",
                            "url": "https://e.com/g3",
                            "occurred_on": "2025-08-01",
                        },
                    ),
                ]
            ),
        )
        assert enqueue_recent_alerts(session=s, settings=settings) == 2
        assert (
            enqueue_recent_alerts(session=s, settings=settings) == 0
        )  # the scheduler may run it again
        s.commit()
    drain(engine, settings)
    (got,) = smtp_server.recorder.to("now@example.com")
    text = got.message.get_body(("plain",)).get_content()
    assert got.message["Subject"] == "AI Industry Brief · 2 new events"
    assert "New GPU cluster" in text and "Accelerator start-up" in text and "poetry" not in text
    assert got.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert smtp_server.recorder.to("later@example.com") == []
    with Session(engine) as s:
        assert {d.status for d in s.execute(select(Delivery)).scalars()} == {"sent"}


def test_worker_processes_share_the_outbox(world, db_url, smtp_server, tmp_path):
    """`newsletter worker --processes 2`: two processes drain one outbox, each message once."""
    import os
    import subprocess
    import sys

    with Session(world) as s:
        for n in range(60):
            add_subscriber(
                session=s, sub_in=SubscriberIn(email=f"p{n}@example.com", topics="hardware")
            )
        s.commit()
    settings = mail_settings(db_url, smtp_server.url)
    total = plan(world, settings).enqueued
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_WORKER_BATCH": "5",
    }
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "worker", "--until-empty", "--processes", "2"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rcpts = [r.rcpt_tos[0] for r in smtp_server.recorder.received]
    assert len(rcpts) == total == len(set(rcpts))
    assert done.stdout.count("Worker finished") == 2


def test_a_batch_claimed_ahead_is_not_sent_once_its_lease_went_to_another_worker(world, db_url):
    """The next batch is claimed while the current one sends. If that send outlasts the
    lease, the batch waiting its turn may have been claimed by another worker meanwhile:
    it must not be sent by this one as well (the reader would get the digest twice)."""
    import threading
    import time

    from tests.support.smtp_server import Recorder, SmtpServer

    release = threading.Event()

    class SlowFirst(Recorder):
        async def handle_DATA(self, server, session, envelope):
            while not release.is_set():  # the first batch hangs in DATA
                await asyncio.sleep(0.02)
            return await super().handle_DATA(server, session, envelope)

    lease = 2.0
    with SmtpServer() as smtp:
        smtp.recorder = smtp.controller.handler = SlowFirst()
        settings = mail_settings(db_url, smtp.url, worker_batch=4, lease_seconds=lease)
        plan(world, settings)
        worker = Worker(engine=world, settings=settings, name="one")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=lambda: loop.run_until_complete(worker.run()))
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while True:  # two rows sending, two claimed ahead
                with Session(world) as s:
                    held = s.exec(select(Delivery.id).where(Delivery.claimed_by == "one")).all()
                if len(held) == 4 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            assert len(held) == 4
            time.sleep(lease + 0.1)
            stolen = outbox.claim(world, worker="two", limit=4, lease_seconds=lease)
            assert len(stolen) == 4
            with Session(world) as s:
                ahead = {
                    sub.email
                    for d, sub in s.exec(
                        select(Delivery, Subscriber)
                        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                        .order_by(Delivery.next_attempt_at, Delivery.id)
                    ).all()[2:]
                }
            release.set()
            time.sleep(1.0)  # worker "one" is past the ahead batch; "two" still holds it
        finally:
            loop.call_soon_threadsafe(worker.stop)
            thread.join(timeout=30)
        sent_by_one = {r.rcpt_tos[0] for r in smtp.recorder.received}
    assert len(ahead) == 2
    assert not ahead & sent_by_one, "rows held by another worker were sent"


def test_stopping_mid_batch_records_it_and_gives_back_the_batch_claimed_ahead(world, db_url):
    """SIGTERM while a batch sends (the next one claimed and built meanwhile): the batch
    in flight is sent and recorded, the one claimed ahead goes back to the queue unsent,
    and a later worker sends every reader exactly one message."""
    import threading
    import time

    from tests.support.smtp_server import Recorder, SmtpServer

    release = threading.Event()

    class Held(Recorder):
        async def handle_DATA(self, server, session, envelope):
            while not release.is_set():
                await asyncio.sleep(0.02)
            return await super().handle_DATA(server, session, envelope)

    with SmtpServer() as smtp:
        smtp.recorder = smtp.controller.handler = Held()
        settings = mail_settings(db_url, smtp.url, worker_batch=4)
        plan(world, settings)
        worker = Worker(engine=world, settings=settings, name="one")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=lambda: loop.run_until_complete(worker.run()))
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # two rows sending, two claimed ahead
                with Session(world) as s:
                    held = s.exec(select(Delivery.id).where(Delivery.claimed_by == "one")).all()
                if len(held) == 4:
                    break
                time.sleep(0.02)
            assert len(held) == 4
            loop.call_soon_threadsafe(worker.stop)
            time.sleep(0.1)
            release.set()
        finally:
            release.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        with Session(world) as s:
            states = sorted((d.status, d.claimed_by) for d in s.exec(select(Delivery)).scalars())
        assert states == [("queued", None)] * 2 + [("sent", None)] * 2
        assert len(smtp.recorder.received) == 2
        drain(world, settings)
        got = sorted(r.rcpt_tos[0] for r in smtp.recorder.received)
    assert got == sorted(p[0] for p in PEOPLE)
