"""Retrying failed deliveries, from the command line and the API: only failed rows move,
a suppressed address stays unmailed, and bad input is refused with a reason."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, suppress
from newsletter.core.models import Delivery, Subscriber
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.pipeline.sample import load_sample
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.planning import plan_in
from tests.support.web import api_client
from tests.support.workers import drain

READERS = ["ada@example.com", "bo@example.com", "li@example.com"]


@pytest.fixture
def settings(db_url, smtp_server, tmp_path) -> Settings:
    return Settings(
        database_url=db_url,
        smtp_url=smtp_server.url,
        secret_key=TEST_SECRET_KEY,
        base_url="https://news.example.org",
        outbox_dir=tmp_path / "outbox",
        retry_base_seconds=0.02,
    )


@pytest.fixture
def failed_digest(engine, settings):
    """The July digest for three readers: ada's was sent, bo's and li's failed."""
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email in READERS:
            add_subscriber(session=s, sub_in=SubscriberIn(email=email, topics=["capital"]))
        plan_in(s, settings)
        s.commit()
    ids = outbox.claim(engine, worker="w", limit=10, lease_seconds=60)
    by_email = {e: i for e, i in _rows(engine, Subscriber.email, Delivery.id)}
    outbox.record(
        engine,
        [
            outbox.Outcome(by_email["ada@example.com"], "sent", message_id="<ada>"),
            outbox.Outcome(by_email["bo@example.com"], "permanent", "550 mailbox full"),
            outbox.Outcome(by_email["li@example.com"], "temporary", "421 try later"),
        ],
        worker="w",
        max_attempts=1,
        retry_base=1,
        retry_max=1,
    )
    assert len(ids) == 3
    return by_email


def _rows(engine, *columns):
    with Session(engine) as s:
        return s.execute(
            select(*columns).join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        ).all()


def statuses(engine) -> dict[str, str]:
    return {e: s for e, s in _rows(engine, Subscriber.email, Delivery.status)}


def test_cli_retry_sends_the_failed_ones_once_and_never_a_suppressed_address(
    cli, engine, settings, smtp_server, failed_digest
):
    with Session(engine) as s:  # bo bounced elsewhere meanwhile
        suppress(session=s, email="bo@example.com", reason="bounced")
        s.commit()
    assert statuses(engine) == {
        "ada@example.com": "sent",
        "bo@example.com": "failed",
        "li@example.com": "failed",
    }

    r = cli("outbox", "retry", "--since", "1h", "--kind", "digest-monthly")
    assert r.exit_code == 0, r.output
    assert "Re-queued 2 failed deliveries." in r.stdout

    drain(engine, settings)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.recorder.received) == ["li@example.com"]
    assert statuses(engine) == {
        "ada@example.com": "sent",  # never sent twice
        "bo@example.com": "suppressed",
        "li@example.com": "sent",
    }
    r = cli("outbox", "retry", "--all")
    assert r.exit_code == 0 and "nothing re-queued" in r.stdout


def test_cli_retry_by_id(cli, engine, failed_digest):
    bo = failed_digest["bo@example.com"]
    ada = failed_digest["ada@example.com"]
    r = cli("outbox", "retry", "--id", str(bo), "--id", str(ada))
    assert r.exit_code == 0 and "Re-queued 1 failed delivery." in r.stdout
    assert statuses(engine)["bo@example.com"] == "queued"
    assert statuses(engine)["ada@example.com"] == "sent"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "say which failed deliveries"),
        (["--since", "yesterday"], "since must be an ISO date"),
        (["--since", "2999-01-01"], "in the future"),
        (["--endpoint", "nope"], "no webhook named 'nope'"),
        (["--kind", "digest-yearly"], "unknown kind 'digest-yearly'"),
        (["--id", "0"], "positive whole numbers"),
        # past any id the database can hold: the drivers raise, or refuse, on the bind
        (["--id", "99999999999999999999"], "no delivery has id 99999999999999999999"),
        (["--id", "2147483648"], "no delivery has id 2147483648"),
        # a valid ISO time that is before year 1 once in UTC
        (["--since", "0001-01-01T00:00+14:00"], "too far back"),
    ],
)
def test_cli_retry_refuses_bad_input(cli, engine, failed_digest, args, words):
    r = cli("outbox", "retry", *args)
    assert r.exit_code == 1, r.output
    assert words in r.stderr and "Traceback" not in r.output
    assert statuses(engine)["bo@example.com"] == "failed"  # nothing moved


@pytest.fixture
def api(engine, settings):
    return api_client(settings, engine, name="ops")


def test_api_retry(api, engine, failed_digest):
    r = api.post("/api/v1/outbox/retry", json={"endpoint": None, "since": "2h"})
    assert r.status_code == 200, r.text
    assert r.json() == {"requeued": 2, "held": 0}
    assert statuses(engine)["li@example.com"] == "queued"
    assert statuses(engine)["ada@example.com"] == "sent"
    r = api.post("/api/v1/outbox/retry", json={"all": True})
    assert r.json() == {"requeued": 0, "held": 0}


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({}, 400, "say which failed deliveries"),
        ({"since": "soon"}, 400, "since must be an ISO date"),
        ({"endpoint": "nope"}, 400, "no webhook named 'nope'"),
        ({"endpoint": "../x"}, 422, "endpoint"),
        ({"kinds": ["digest-yearly"]}, 422, "kinds"),
        ({"ids": [0]}, 422, "ids"),
        ({"ids": "all"}, 422, "ids"),
        ({"everything": True}, 422, "everything"),
        ({"ids": [2**31]}, 422, "ids"),
        ({"since": "0001-01-01T00:00:00+14:00"}, 400, "too far back"),
    ],
)
def test_api_retry_refuses_bad_input(api, engine, failed_digest, body, code, words):
    r = api.post("/api/v1/outbox/retry", json=body)
    assert r.status_code == code, r.text
    assert words in r.text
    assert statuses(engine)["bo@example.com"] == "failed"


def test_api_retry_needs_the_admin_token(engine, settings, failed_digest):
    client = TestClient(create_app(settings=settings, engine=engine))
    assert client.post("/api/v1/outbox/retry", json={"all": True}).status_code == 401
    assert statuses(engine)["bo@example.com"] == "failed"
