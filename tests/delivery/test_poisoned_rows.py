"""Poisoned rows: a template that raises for one reader, a channel that raises something
unexpected for one row. That row ends `failed` with the reason in its attempt; every
other row is delivered; `newsletter worker --until-empty` exits 0; `serve` keeps
answering /healthz the whole time. Real SMTP server, real HTTP receiver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.endpoints import EndpointIn, add_endpoint
from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.models import Delivery, DeliveryAttempt, Event, Subscriber, WebhookEndpoint
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig
from newsletter.ingest.events import slugs_by_event
from newsletter.pipeline.sample import load_sample
from newsletter.planning.alerts import enqueue_alerts
from tests.support.env import TEST_SECRET_KEY
from tests.support.planning import plan_in
from tests.support.smtp_server import free_port

ACTIVE = ["ada@example.com", "bo@example.com", "mei@example.com"]  # bo: the channel raises
PENDING = {"p1@example.com": "en", "p2@example.com": "en", "zh@example.com": "zh"}  # zh: template
HOOK = "/generic/team"


class BuggyChannel(SmtpChannel):
    """The real SMTP channel, with a bug that hits one recipient."""

    async def send(self, *, sender, recipient, message, key=""):
        if recipient == "bo@example.com":
            raise RuntimeError("channel bug for this one address")
        return await super().send(sender=sender, recipient=recipient, message=message, key=key)


@pytest.fixture
def poisoned_templates(tmp_path):
    """The stock templates, with a customised confirmation that uses a label only one
    language lacks: it renders for English readers and raises for Chinese ones."""
    folder = tmp_path / "templates"
    shutil.copytree(Settings().templates_dir, folder)
    path = folder / "email" / "confirm.txt.j2"
    path.write_text(
        path.read_text() + '{% if lang == "zh" %}{{ t.confirm_footer_missing }}{% endif %}\n'
    )
    return folder


def fill_outbox(engine, settings, chat_receiver) -> None:
    """The July digest for three readers, a confirmation for three signups, and an
    instant alert for a team webhook."""
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email in ACTIVE:
            add_subscriber(session=s, sub_in=SubscriberIn(email=email, topics=["capital"]))
        plan_in(s, settings)
        rows = []
        for email, lang in PENDING.items():
            sub = add_subscriber(
                session=s,
                sub_in=SubscriberIn(email=email, language=lang, topics=["capital"]),
                status="pending",
            )
            rows.append(
                {
                    "idempotency_key": outbox.idempotency_key("confirm", "x", subscriber_id=sub.id),
                    "channel": "email",
                    "kind": "confirm",
                    "period": "x",
                    "subscriber_id": sub.id,
                }
            )
        outbox.enqueue(s, rows)
        ep = add_endpoint(
            session=s,
            settings=settings,
            ep_in=EndpointIn(
                name="team",
                platform="generic",
                url=chat_receiver.url(HOOK),
                topics=["capital"],
                mode="instant",
            ),
        )
        chat_receiver.platforms.secrets[HOOK] = ep.secret
        s.flush()
        events = list(s.execute(select(Event).order_by(Event.id)).scalars())
        slugs = slugs_by_event(s, [e.id for e in events])
        event = next(e for e in events if "capital" in slugs[e.id])
        ep.created_at = event.created_at  # the endpoint was there when the event came in
        s.flush()
        assert enqueue_alerts(session=s, settings=settings, event_ids=[event.id]) >= 1
        s.commit()


def statuses(engine) -> dict[str, str]:
    with Session(engine) as s:
        by_reader = dict(
            s.execute(
                select(Subscriber.email, Delivery.status).join(
                    Subscriber, Subscriber.id == Delivery.subscriber_id
                )
            ).all()
        )
        hooks = s.execute(
            select(Delivery.status).join(
                WebhookEndpoint, WebhookEndpoint.id == Delivery.endpoint_id
            )
        ).scalars()
        return {**by_reader, **{f"webhook{n}": st for n, st in enumerate(hooks)}}


def last_attempt_error(engine, email: str) -> str:
    with Session(engine) as s:
        return (
            s.execute(
                select(DeliveryAttempt.error)
                .join(Delivery, Delivery.id == DeliveryAttempt.delivery_id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email == email)
                .order_by(DeliveryAttempt.id.desc())
            )
            .scalars()
            .first()
            or ""
        )


def delivered_to(smtp_server) -> list[str]:
    return sorted(r for m in smtp_server.recorder.received for r in m.rcpt_tos)


def expect_poisoned_rows_failed_alone(engine, smtp_server, chat_receiver) -> None:
    assert delivered_to(smtp_server) == [
        "ada@example.com", "mei@example.com", "p1@example.com", "p2@example.com"
    ]  # fmt: skip
    assert len(chat_receiver.platforms.for_path(HOOK)) == 1
    got = statuses(engine)
    assert got.pop("bo@example.com") == "failed"
    assert got.pop("zh@example.com") == "failed"
    assert set(got.values()) == {"sent"}, got
    bo = last_attempt_error(engine, "bo@example.com")
    assert "RuntimeError: channel bug for this one address" in bo and "Traceback" in bo
    zh = last_attempt_error(engine, "zh@example.com")
    assert "UndefinedError" in zh and "confirm_footer_missing" in zh
    assert outbox.pending_count(engine) == 0


def test_worker_until_empty_exits_0_with_poisoned_rows(
    cli, engine, db_url, smtp_server, chat_receiver, poisoned_templates, monkeypatch
):
    env = {
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_TEMPLATES_DIR": str(poisoned_templates),
        "NEWSLETTER_WEBHOOK_ALLOW_HTTP": "true",
        "NEWSLETTER_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "NEWSLETTER_ALERT_BATCH_SECONDS": "0",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings(database_url=db_url, secret_key=TEST_SECRET_KEY)
    fill_outbox(engine, settings, chat_receiver)
    monkeypatch.setattr(
        "newsletter.delivery.worker.email_channel",
        lambda s: BuggyChannel(SmtpConfig.from_url(s.smtp_url)),
    )

    result = cli("worker", "--until-empty")

    assert result.exit_code == 0, result.output
    assert "Worker finished" in result.stdout and "2 failed" in result.stdout
    expect_poisoned_rows_failed_alone(engine, smtp_server, chat_receiver)


def test_serve_answers_healthz_throughout_while_a_poisoned_row_fails(
    engine, db_url, smtp_server, chat_receiver, poisoned_templates, tmp_path
):
    """The real `newsletter serve` process: the template poison hits it (a channel bug
    cannot be planted in another process; the worker test above covers it)."""
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_TEMPLATES_DIR": str(poisoned_templates),
        "NEWSLETTER_WEBHOOK_ALLOW_HTTP": "true",
        "NEWSLETTER_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "NEWSLETTER_ALERT_BATCH_SECONDS": "0",
    }
    settings = Settings(
        database_url=db_url,
        secret_key=TEST_SECRET_KEY,
        webhook_allow_http=True,
        webhook_allow_networks=["127.0.0.0/8"],
        alert_batch_seconds=0,
    )
    fill_outbox(engine, settings, chat_receiver)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answers: list[int | str] = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            try:
                answers.append(
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code
                )
            except httpx.HTTPError as exc:
                answers.append(type(exc).__name__)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)  # from the start: the worker starts at once
    prober.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            200 not in answers or len(delivered_to(smtp_server)) < 5 or outbox.pending_count(engine)
        ):
            time.sleep(0.1)
        time.sleep(0.5)  # a few more probes after the last row
        stop.set()
        prober.join()
        assert proc.poll() is None, "serve stopped"
    finally:
        stop.set()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    up = answers[answers.index(200) :]  # once up, every probe answered
    assert len(up) >= 5 and set(up) == {200}, answers
    assert delivered_to(smtp_server) == [
        "ada@example.com", "bo@example.com", "mei@example.com", "p1@example.com",
        "p2@example.com",
    ]  # fmt: skip
    assert len(chat_receiver.platforms.for_path(HOOK)) == 1
    got = statuses(engine)
    assert got.pop("zh@example.com") == "failed"
    assert set(got.values()) == {"sent"}, got
    assert "confirm_footer_missing" in last_attempt_error(engine, "zh@example.com")
