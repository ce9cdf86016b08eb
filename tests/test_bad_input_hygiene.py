"""Bad input, hygiene: mixed alert fan-out, text cleaning, CSV exports, date windows,
deep nesting, rule caps and writes that survive a closed stdout."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from newsletter.admin_tokens import create_token
from newsletter.models import Delivery, Event
from newsletter.sample import load_sample
from newsletter.subscribers import SubscriberIn, add_subscriber
from newsletter.web.app import create_app

from .factories import event_record
from .workers import drain

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def settings_(web_settings):
    """Web settings that also let webhooks reach the chat receiver on 127.0.0.1."""
    return web_settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_networks": ["127.0.0.0/8"],
            "alert_batch_seconds": 0,
            "webhook_timeout": 3,
        }
    )


@pytest.fixture
def sample(engine):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    return engine


@pytest.fixture
def client(settings_, engine, sample) -> TestClient:
    with Session(engine) as s:
        _, token = create_token(session=s, name="hygiene")
        s.commit()
    app = create_app(settings=settings_, engine=engine)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def cli_net(cli, monkeypatch):
    """The CLI, allowed to add webhooks on 127.0.0.1 over http."""
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("NEWSLETTER_ALERT_BATCH_SECONDS", "0")
    return cli


def deliveries(engine) -> list[Delivery]:
    with Session(engine) as s:
        return list(s.execute(select(Delivery).order_by(Delivery.id)).scalars())


def event_titles(engine) -> list[str]:
    with Session(engine) as s:
        return [e.title.get("en", "") for e in s.execute(select(Event)).scalars()]


# --- item 4: instant readers and an instant webhook on one topic --------------------------------


def instant_reader_and_webhook(client, chat_receiver) -> None:
    r = client.post(
        "/api/v1/webhooks",
        json={
            "name": "team",
            "platform": "slack",
            "url": chat_receiver.url("/slack/team"),
            "topics": ["hardware"],
            "mode": "instant",
        },
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/subscribers",
        json={"email": "now@example.com", "topics": ["hardware"], "frequency": "instant"},
    )
    assert r.status_code == 201, r.text


def chip_event(**extra) -> dict:
    fields = {"title": "Chipmaker ships a new AI accelerator", "summary": ""}
    return event_record(occurred_on="2025-08-01", **{**fields, **extra})


def assert_alerts_for_both(engine, n_events: int = 1) -> None:
    rows = [d for d in deliveries(engine) if d.kind == "alert"]
    assert sum(d.endpoint_id is not None for d in rows) == n_events
    assert sum(d.subscriber_id is not None for d in rows) == n_events


def test_api_event_alerts_instant_reader_and_webhook(
    client, engine, settings_, chat_receiver, smtp_server
):
    instant_reader_and_webhook(client, chat_receiver)
    r = client.post("/api/v1/events", json=chip_event())
    assert r.status_code == 201, r.text
    assert r.json()["alerts_enqueued"] == 2
    assert "Chipmaker ships a new AI accelerator" in event_titles(engine)
    assert_alerts_for_both(engine)
    drain(engine, settings_)
    assert len(chat_receiver.platforms.for_path("/slack/team")) == 1
    assert len(smtp_server.recorder.to("now@example.com")) == 1


def test_upload_keeps_records_and_alerts_instant_reader_and_webhook(client, engine, chat_receiver):
    instant_reader_and_webhook(client, chat_receiver)
    upload = json.dumps([chip_event(), {"title": "no url"}]).encode()
    r = client.post("/api/v1/events/import", files={"file": ("batch.json", upload)})
    assert r.status_code == 200, r.text
    assert (r.json()["new"], len(r.json()["invalid"]), r.json()["alerts_enqueued"]) == (1, 1, 2)
    assert "Chipmaker ships a new AI accelerator" in event_titles(engine)
    assert_alerts_for_both(engine)


def test_cli_import_alerts_instant_reader_and_webhook(
    cli_net, engine, sample, chat_receiver, tmp_path
):
    r = cli_net(
        "webhooks", "add", "team", "--platform", "slack", "--topics", "hardware",
        "--url", chat_receiver.url("/slack/team"),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli_net(
        "subscribers", "add", "now@example.com", "--topics", "hardware", "--frequency", "instant"
    )
    assert r.exit_code == 0, r.output
    path = tmp_path / "events.json"
    path.write_text(json.dumps([chip_event(), chip_event(title="Nvidia unveils a GPU")]))
    r = cli_net("events", "import", str(path))
    assert r.exit_code == 0, r.output
    assert "2 new" in r.output and "4 instant alert(s) queued" in r.output
    assert_alerts_for_both(engine, n_events=2)


def test_scheduler_alert_job_with_mixed_recipients(client, engine, settings_, chat_receiver):
    from newsletter.alerts import enqueue_recent_alerts

    instant_reader_and_webhook(client, chat_receiver)
    with Session(engine) as s:
        from newsletter.events import EventIn, add_event

        add_event(session=s, event_in=EventIn.model_validate(chip_event()))
        s.commit()
    with Session(engine) as s:
        assert enqueue_recent_alerts(session=s, settings=settings_) == 2
        s.commit()
    assert_alerts_for_both(engine)


def test_enqueue_widens_rows_of_different_shapes(engine, sample):
    from newsletter.outbox import enqueue

    with Session(engine) as s:
        reader = add_subscriber(
            session=s, sub_in=SubscriberIn(email="a@example.com", topics=["hardware"])
        )
        s.flush()
        reader_id = reader.id
        rows = [
            {"idempotency_key": "k1", "channel": "email", "kind": "alert",
             "subscriber_id": reader_id},
            {"idempotency_key": "k2", "channel": "email", "kind": "confirm", "period": "p",
             "status": "held"},
        ]  # fmt: skip
        assert enqueue(s, rows) == 2
        assert enqueue(s, rows) == 0
        s.commit()
    got = {d.idempotency_key: d for d in deliveries(engine)}
    assert got["k1"].subscriber_id == reader_id and got["k1"].status == "queued"
    assert got["k2"].subscriber_id is None and got["k2"].status == "held"
    assert got["k2"].period == "p" and got["k1"].period == ""
