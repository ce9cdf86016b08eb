"""The admin API's subscriber search, reader actions and outbox list, retry and cancel,
through the real app (TestClient) on the test database, with bad input answered 4xx."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlmodel import Session, select

from newsletter.audience.subscribers import address_hash
from newsletter.core.models import (
    Delivery,
    DeliveryAttempt,
    Subscriber,
    Suppression,
    WebhookEndpoint,
    utcnow,
)
from tests.support.web import api_client
from tests.support.workers import drain


@pytest.fixture
def client(loopback_settings, engine, sample):
    return api_client(loopback_settings, engine)


def add(client, email, topics=("hardware",), **extra):
    r = client.post("/api/v1/subscribers", json={"email": email, "topics": list(topics), **extra})
    assert r.status_code == 201, r.text
    return r.json()


def emails(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [s["email"] for s in response.json()["data"]]


def test_search_filters_and_keyset_pages(client):
    add(client, "ada@example.com", name="Ada Lovelace", language="zh", topics=["capital"])
    add(client, "adam@example.org", name="Adam Smith", frequency="weekly")
    add(client, "grace@example.com", name="Grace Hopper", topics=["hardware", "capital"])
    add(client, "linus@example.net", name="Ada_Byron")
    get = lambda **p: client.get("/api/v1/subscribers", params=p)  # noqa: E731

    assert emails(get(q="ada")) == ["ada@example.com", "adam@example.org", "linus@example.net"]
    assert emails(get(q="ADA@")) == ["ada@example.com"]  # an @ searches addresses only
    assert emails(get(q="grace h")) == ["grace@example.com"]  # name prefix, any case
    assert emails(get(q="ada_")) == ["linus@example.net"]  # not a LIKE wildcard
    assert emails(get(q="%")) == []
    assert emails(get(q="hopper")) == []  # a prefix search, not "contains"
    assert emails(get(topic="capital")) == ["ada@example.com", "grace@example.com"]
    assert emails(get(language="zh")) == ["ada@example.com"]
    assert emails(get(frequency="weekly")) == ["adam@example.org"]
    assert emails(get(q="ada", topic="hardware")) == ["adam@example.org", "linus@example.net"]
    assert get(q="a", status="active").json()["count"] == 3

    first = get(limit=2).json()
    assert [s["email"] for s in first["data"]] == ["ada@example.com", "adam@example.org"]
    assert first["next_after"] == first["data"][-1]["id"] and first["count"] == 4
    second = get(limit=2, after=first["next_after"]).json()
    assert [s["email"] for s in second["data"]] == ["grace@example.com", "linus@example.net"]
    assert second["next_after"] is None


def test_search_refuses_bad_filters(client):
    r = client.get("/api/v1/subscribers", params={"topic": "no-such-topic"})
    assert r.status_code == 400 and "unknown topic 'no-such-topic'" in r.json()["detail"]
    for params, field in (
        ({"status": "gone"}, "query.status"),
        ({"language": "fr"}, "query.language"),
        ({"frequency": "hourly"}, "query.frequency"),
        ({"q": "x" * 321}, "query.q"),
        ({"after": -1}, "query.after"),
        ({"topic": "Not A Slug"}, "query.topic"),
    ):
        r = client.get("/api/v1/subscribers", params=params)
        assert r.status_code == 422, (params, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]
    r = client.get("/api/v1/subscribers", params={"q": "a\x00b"})
    assert r.status_code == 400 and "control characters" in r.json()["detail"]
    r = client.get("/api/v1/subscribers/export.csv", params={"topic": "nope"})
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]


def test_export_csv_whole_list_or_the_filtered_view(client):
    add(client, "ada@example.com", name="=HYPERLINK(1)", topics=["capital", "hardware"])
    add(client, "grace@example.com", language="zh")
    r = client.get("/api/v1/subscribers/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["email"] for row in rows] == ["ada@example.com", "grace@example.com"]
    assert rows[0]["topics"] == "capital,hardware"
    assert rows[0]["name"] == "'=HYPERLINK(1)"  # a spreadsheet does not run it
    only = client.get("/api/v1/subscribers/export.csv", params={"language": "zh"})
    assert [row["email"] for row in csv.DictReader(io.StringIO(only.text))] == ["grace@example.com"]


def test_resend_confirmation_unsubscribe_suppress_and_lift(client, engine):
    add(client, "ada@example.com")
    base = "/api/v1/subscribers/ada@example.com"
    r = client.post(f"{base}/confirmation")
    assert r.status_code == 400 and "only a reader who signed up" in r.json()["detail"]

    with Session(engine) as s:
        s.add(Subscriber(email="pending@example.com", status="pending", source="web"))
        s.commit()
    r = client.post("/api/v1/subscribers/pending@example.com/confirmation")
    assert r.status_code == 202 and r.json() == {"queued": True}
    assert client.post("/api/v1/subscribers/pending@example.com/confirmation").json() == {
        "queued": False
    }
    with Session(engine) as s:
        kinds = s.exec(select(Delivery.kind, Delivery.status)).all()
    assert kinds == [("confirm", "queued")]

    assert client.get(f"{base}/suppression").json() == {
        "email": "ada@example.com", "suppressed": False, "reason": None,
    }  # fmt: skip
    r = client.put(f"{base}/suppression")
    assert r.status_code == 200 and r.json()["reason"] == "admin"
    assert client.put(f"{base}/suppression").json()["reason"] == "admin"  # idempotent
    r = client.post("/api/v1/subscribers", json={"email": "ada@example.com", "topics": ["capital"]})
    assert r.status_code == 409
    r = client.delete(f"{base}/suppression")
    assert r.status_code == 200 and r.json() == {
        "email": "ada@example.com", "suppressed": False, "reason": "admin",
    }  # fmt: skip
    r = client.delete(f"{base}/suppression")
    assert r.status_code == 400 and "not on the suppression list" in r.json()["detail"]

    r = client.post(f"{base}/unsubscribe")
    assert r.status_code == 200 and r.json()["status"] == "unsubscribed"
    r = client.post(f"{base}/unsubscribe")
    assert r.status_code == 400 and "unsubscribed already" in r.json()["detail"]
    r = client.delete(f"{base}/suppression")
    assert r.status_code == 400 and "only they can undo that" in r.json()["detail"]
    for method, path in (
        ("POST", "confirmation"), ("POST", "unsubscribe"), ("GET", "suppression"),
        ("PUT", "suppression"), ("DELETE", "suppression"), ("GET", "deliveries"),
    ):  # fmt: skip
        r = client.request(method, f"/api/v1/subscribers/nobody@example.com/{path}")
        assert r.status_code == 404 and "nobody@example.com" in r.json()["detail"]


def test_lifting_a_bounce_suppression_reactivates_a_disabled_reader(client, engine):
    add(client, "ada@example.com")
    with Session(engine) as s:
        sub = s.exec(select(Subscriber)).one()
        sub.status, sub.disabled_reason, sub.bounce_score = "disabled", "3 bounces", 3.0
        s.add(sub)
        s.commit()
    client.put("/api/v1/subscribers/ada@example.com/suppression")
    r = client.delete("/api/v1/subscribers/ada@example.com/suppression")
    assert r.status_code == 200
    sub = client.get("/api/v1/subscribers/ada@example.com").json()
    assert sub["status"] == "active" and sub["bounce_score"] == 0 and sub["disabled_reason"] is None


def test_a_complaint_suppression_is_lifted_only_when_forced_as_enable_is(client, engine):
    """Like `POST .../enable` and `subscribers enable`: a reader who reported our mail as
    spam is mailed again only when the admin says they asked for it."""
    add(client, "ada@example.com")
    with Session(engine) as s:
        sub = s.exec(select(Subscriber)).one()
        sub.status, sub.disabled_reason = "disabled", "complaint"
        s.add(sub)
        s.add(Suppression(address_hash=address_hash("ada@example.com"), reason="complaint"))
        s.commit()
    base = "/api/v1/subscribers/ada@example.com/suppression"
    r = client.delete(base)
    assert r.status_code == 400 and "reported our mail as spam" in r.json()["detail"]
    assert client.get(base).json()["reason"] == "complaint"
    r = client.delete(base, params={"force": "true"})
    assert r.status_code == 200 and r.json()["reason"] == "complaint"
    assert client.get("/api/v1/subscribers/ada@example.com").json()["status"] == "active"


@pytest.fixture
def sent_and_failed(client, engine, loopback_settings, smtp_server):
    """Two readers' July digests: one sent, one refused by the mail server (550)."""
    add(client, "ok@example.com", topics=["hardware"], language="zh")
    add(client, "gone@example.com", topics=["capital"])
    smtp_server.recorder.script["gone@example.com"] = ["550 5.1.1 no such user"]
    r = client.post("/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07"})
    assert r.status_code == 200, r.text
    drain(engine, loopback_settings)
    return client


def test_outbox_rows_are_named_and_show_their_attempts(sent_and_failed, engine):
    client = sent_and_failed
    with Session(engine) as s:
        s.add(WebhookEndpoint(name="cn-team", platform="feishu", url="https://example.com/h"))
        s.commit()
        endpoint = s.exec(select(WebhookEndpoint)).one()
        s.add(Delivery(idempotency_key=f"endpoint:{endpoint.id}|alert|event:1", channel="feishu",
                       kind="alert", period="event:1", endpoint_id=endpoint.id))  # fmt: skip
        s.commit()
    r = client.get("/api/v1/outbox/deliveries")
    assert r.status_code == 200, r.text
    rows = r.json()["data"]
    named = {(d["recipient"], d["carries"], d["status"]) for d in rows}
    alert = next(d for d in rows if d["recipient"] == "cn-team")
    assert alert["carries"].startswith("alert: ") and "|" not in alert["carries"]
    assert ("ok@example.com", "July 2025 monthly digest (zh)", "sent") in named
    assert ("gone@example.com", "July 2025 monthly digest (en)", "failed") in named
    assert all("subscriber:" not in d["carries"] for d in rows)

    failed = client.get("/api/v1/outbox/deliveries", params={"status": "failed"}).json()["data"]
    assert [d["recipient"] for d in failed] == ["gone@example.com"]
    detail = client.get(f"/api/v1/outbox/deliveries/{failed[0]['id']}").json()
    (attempt,) = detail["attempts_made"]
    assert attempt["outcome"] == "permanent" and "550" in attempt["error"]
    by_team = client.get("/api/v1/outbox/deliveries", params={"recipient": "cn-team"}).json()
    assert [d["channel"] for d in by_team["data"]] == ["feishu"]
    by_reader = client.get("/api/v1/subscribers/ok@example.com/deliveries").json()["data"]
    assert [d["carries"] for d in by_reader] == ["July 2025 monthly digest (zh)"]
    today = utcnow().date()
    assert len(client.get("/api/v1/outbox/deliveries", params={
        "created_from": str(today), "created_to": str(today)}).json()["data"]) == 3  # fmt: skip
    assert client.get("/api/v1/outbox/deliveries", params={
        "created_to": str(today - dt.timedelta(days=1))}).json()["data"] == []  # fmt: skip


def test_outbox_pages_newest_first(client, engine):
    with Session(engine) as s:
        for n in range(5):
            s.add(Delivery(idempotency_key=f"k{n}", channel="slack", kind="alert"))
        s.commit()
    first = client.get("/api/v1/outbox/deliveries", params={"limit": 3}).json()
    ids = [d["id"] for d in first["data"]]
    assert ids == sorted(ids, reverse=True) and first["next_before"] == ids[-1]
    rest = client.get("/api/v1/outbox/deliveries", params={"limit": 3, "before": ids[-1]}).json()
    assert len(rest["data"]) == 2 and rest["next_before"] is None
    assert {d["recipient"] for d in rest["data"]} == {"removed team endpoint"}


def test_retry_in_a_filter_and_cancel_queued(sent_and_failed, engine):
    client = sent_and_failed
    r = client.post("/api/v1/outbox/retry", json={"recipient": "ok@example.com"})
    assert r.json() == {"requeued": 0, "held": 0}  # the sent one is never sent again
    r = client.post("/api/v1/outbox/retry", json={"recipient": "gone@example.com"})
    assert r.status_code == 200 and r.json() == {"requeued": 1, "held": 0}
    (queued,) = client.get("/api/v1/outbox/deliveries", params={"status": "queued"}).json()["data"]
    assert queued["recipient"] == "gone@example.com" and queued["attempts"] == 0

    r = client.post(
        "/api/v1/outbox/cancel", json={"channel": "email", "recipient": "ok@example.com"}
    )
    assert r.json() == {"cancelled": 0}  # only waiting rows are cancelled
    r = client.post("/api/v1/outbox/cancel", json={"ids": [queued["id"]]})
    assert r.status_code == 200 and r.json() == {"cancelled": 1}
    with Session(engine) as s:
        statuses = sorted(s.exec(select(Delivery.status)).all())
        tries = s.exec(select(DeliveryAttempt.outcome)).all()
    assert statuses == ["cancelled", "sent"] and sorted(tries) == ["permanent", "sent"]


def test_outbox_bad_input_is_refused_with_the_reason(client):
    def check(method, path, status, reason, **kw):
        r = client.request(method, path, **kw)
        assert r.status_code == status, (path, kw, r.text)
        assert reason in r.text, r.text

    check("GET", "/api/v1/outbox/deliveries", 400, "no reader has the address",
          params={"recipient": "nobody@example.com"})  # fmt: skip
    check("GET", "/api/v1/outbox/deliveries", 400, "no team endpoint is named",
          params={"recipient": "no-team"})  # fmt: skip
    check("GET", "/api/v1/outbox/deliveries", 400, "starts (2025-07-02) after it ends",
          params={"created_from": "2025-07-02", "created_to": "2025-07-01"})  # fmt: skip
    check("GET", "/api/v1/outbox/deliveries", 422, "query.status", params={"status": "lost"})
    check("GET", "/api/v1/outbox/deliveries", 422, "query.created_from",
          params={"created_from": "July"})  # fmt: skip
    check("GET", "/api/v1/outbox/deliveries/99", 404, "no delivery 99")
    check("GET", "/api/v1/outbox/deliveries/0", 422, "path.delivery_id")
    check("POST", "/api/v1/outbox/cancel", 400, "say which queued deliveries", json={})
    check("POST", "/api/v1/outbox/cancel", 422, '"ids.0"', json={"ids": [0]})
    check("POST", "/api/v1/outbox/cancel", 422, '"colour"', json={"colour": "red"})
    check("POST", "/api/v1/outbox/retry", 400, "no reader has the address",
          json={"recipient": "x@example.com"})  # fmt: skip
    check("POST", "/api/v1/outbox/retry", 422, '"channel"', json={"channel": "EMAIL!"})


def test_changes_are_in_the_audit_log_with_their_token(sent_and_failed, engine):
    client = sent_and_failed
    start = client.get("/api/v1/audit").json()["data"]
    assert [(e["action"], e["target"]) for e in start] == [("digest.send", "monthly 2025-07")]
    client.put("/api/v1/subscribers/ok@example.com/suppression")
    client.patch("/api/v1/subscribers/ok@example.com", json={"frequency": "weekly"})
    client.post("/api/v1/outbox/retry", json={"recipient": "gone@example.com"})
    client.delete("/api/v1/subscribers/gone@example.com")
    client.post("/api/v1/outbox/cancel", json={"ids": [1]})  # a sent row: "0 cancelled"
    r = client.post("/api/v1/subscribers/nobody@example.com/unsubscribe")
    assert r.status_code == 404
    log = client.get("/api/v1/audit").json()["data"]
    assert [(e["token_name"], e["action"]) for e in log] == [
        ("tests", "outbox.cancel"),
        ("tests", "subscriber.remove"),
        ("tests", "outbox.retry"),
        ("tests", "subscriber.edit"),
        ("tests", "subscriber.suppressed"),
        ("tests", "digest.send"),  # the fixture's send
    ]
    assert log[0]["detail"] == "0 cancelled"
    assert log[2]["detail"] == "1 queued again, 0 held"
    assert "gone@example.com" in log[2]["target"]
    assert "gone@example.com" not in log[1]["target"]  # the removed reader's address is gone
    assert "weekly" in log[3]["detail"]
    page = client.get("/api/v1/audit", params={"limit": 2}).json()
    assert len(page["data"]) == 2 and page["next_before"] == page["data"][-1]["id"]
    assert client.get("/api/v1/audit", params={"token": "someone-else"}).json()["data"] == []
    assert client.get("/api/v1/audit", params={"before": 0}).status_code == 422
