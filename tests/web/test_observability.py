"""Health, readiness, Prometheus metrics and JSON logs."""

import json
import logging

from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.core.db import downgrade
from newsletter.core.logs import JsonFormatter
from newsletter.core.settings import Settings
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.planning import plan_in
from tests.support.workers import drain


def test_health_readiness_and_metrics(engine, db_url, smtp_server):
    settings = Settings(database_url=db_url, smtp_url=smtp_server.url)
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)

        plan_in(s, settings)
        s.commit()
    client = TestClient(create_app(settings=settings, engine=engine))
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    queued = client.get("/metrics").text
    assert 'newsletter_outbox_rows{channel="email",status="queued"} 2.0' in queued
    assert "newsletter_outbox_oldest_queued_seconds" in queued
    drain(engine, settings)
    after = client.get("/metrics").text
    assert 'newsletter_messages_total{channel="email",result="sent"}' in after
    assert 'newsletter_send_seconds_count{channel="email"}' in after
    assert 'newsletter_outbox_rows{channel="email",status="sent"} 2.0' in after
    downgrade(engine, "base")
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503 and "newsletter db upgrade" in not_ready.json()["reason"]
    assert client.get("/healthz").status_code == 200


def test_json_logs_carry_delivery_ids():
    record = logging.LogRecord(
        "newsletter.delivery.worker",
        logging.WARNING,
        __file__,
        1,
        "delivery %s failed",
        (42,),
        None,
    )
    record.delivery_id = 42
    data = json.loads(JsonFormatter().format(record))
    assert (
        data["message"] == "delivery 42 failed"
        and data["delivery_id"] == 42
        and data["level"] == "warning"
    )
