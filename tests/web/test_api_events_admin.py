"""The events API of the admin console: search and filters with keyset pages, DELETE
(cancelling the alerts that wait), the audit log, and bad input storing nothing."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlmodel import Session, func, select

from newsletter import pipeline
from newsletter.core.models import AdminAudit, Delivery, Event, WebhookEndpoint
from newsletter.ingest.events import topic_slugs
from newsletter.web.api.events import MAX_UPLOAD_BYTES
from tests.support.factories import event_record
from tests.support.web import api_client
from tests.web.test_admin_events import EU, add_events, event_count, event_id, queue_an_alert


@pytest.fixture
def client(web_settings, sample):
    return api_client(web_settings, sample, name="desk", role="editor")


def test_search_filters_and_cursor_pages(client, sample, web_settings):
    add_events(sample, web_settings, 30)  # 27 in July 2025, 30 in June
    first = client.get("/api/v1/events", params={"limit": 20}).json()
    assert first["count"] == 57 and len(first["data"]) == 20
    days = [e["occurred_on"] for e in first["data"]]
    assert days == sorted(days, reverse=True)  # newest first
    last = first["data"][-1]
    assert first["next"] == f"{last['occurred_on']}_{last['id']}"
    seen = [e["id"] for e in first["data"]]
    cursor = first["next"]
    while cursor:
        page = client.get("/api/v1/events", params={"limit": 20, "before": cursor}).json()
        seen += [e["id"] for e in page["data"]]
        cursor = page["next"]
    assert len(seen) == len(set(seen)) == 57

    def ids(**params):
        got = client.get("/api/v1/events", params=params)
        assert got.status_code == 200, got.text
        return got.json()

    found = ids(q="《人工智能法案》")
    assert found["count"] == 1 and found["data"][0]["title"]["en"] == EU
    assert ids(q="providers AI act")["count"] == 1
    assert ids(q="robot maker 00", month="2025-06")["count"] == 10
    assert ids(q="robot maker", month="2025-07")["count"] == 0
    sources = ids(source="European Commission")
    assert sources["count"] == 2 and {e["source"] for e in sources["data"]} == {
        "European Commission"
    }
    china = ids(region="china", topic="governance")
    assert china["count"] > 0
    assert all(e["region"] == "china" and "governance" in e["topics"] for e in china["data"])
    # the old offset pages still work
    assert ids(limit=5, offset=5)["data"][0]["id"] == first["data"][5]["id"]

    for params, field in (
        ({"before": "2025-07-01"}, "query.before"),
        ({"before": "yesterday_1"}, "query.before"),
        ({"q": "x" * 201}, "query.q"),
        ({"source": "s" * 201}, "query.source"),
    ):
        r = client.get("/api/v1/events", params=params)
        assert r.status_code == 422 and field in r.text, params
    r = client.get("/api/v1/events", params={"before": "2025-02-30_4"})
    assert r.status_code == 400 and "is not one this list gave" in r.json()["detail"]
    r = client.get("/api/v1/events", params={"topic": "nope"})
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]


def test_delete_cancels_the_waiting_alerts_and_is_audited(client, sample, web_settings):
    eu = event_id(sample, EU)
    queue_an_alert(sample, web_settings, eu)
    with Session(sample) as s:  # and a paused team's alert for it, held
        team = WebhookEndpoint(name="paused-team", platform="slack", mode="instant",
                               url="https://example.com/h", enabled=False)  # fmt: skip
        s.add(team)
        s.flush()
        s.add(Delivery(idempotency_key=f"endpoint:{team.id}|alert|event:{eu}", channel="slack",
                       kind="alert", period=f"event:{eu}", endpoint_id=team.id,
                       status="held"))  # fmt: skip
        s.add(Delivery(idempotency_key=f"endpoint:{team.id}|alert|event:{eu}|sent",
                       channel="slack", kind="alert", period=f"event:{eu}",
                       endpoint_id=team.id, status="sent"))  # fmt: skip
        s.commit()
    before = event_count(sample)
    r = client.delete(f"/api/v1/events/{eu}")
    assert r.status_code == 204 and r.headers["X-Alerts-Cancelled"] == "2"
    assert event_count(sample) == before - 1
    with Session(sample) as s:
        statuses = sorted(s.exec(select(Delivery.status).where(Delivery.period == f"event:{eu}")))
        assert statuses == ["cancelled", "cancelled", "sent"]
        row = s.exec(select(AdminAudit).where(AdminAudit.action == "event.delete")).one()
        assert (row.token_name, row.target) == ("desk", f"event {eu}: {EU}")
        assert row.detail == "2 waiting alert deliveries cancelled"
    assert client.get(f"/api/v1/events/{eu}").status_code == 404
    assert client.delete(f"/api/v1/events/{eu}").status_code == 404
    assert client.delete("/api/v1/events/0").status_code == 422
    # a sent alert for a deleted event still reads in the outbox
    listed = client.get("/api/v1/outbox/deliveries", params={"recipient": "paused-team"})
    assert listed.status_code == 200
    assert sorted(d["status"] for d in listed.json()["data"]) == ["cancelled", "sent"]


def test_pin_add_and_import_are_audited_and_bad_input_stores_nothing(client, sample, web_settings):
    eu = event_id(sample, EU)
    assert client.patch(f"/api/v1/events/{eu}", json={"pinned": True}).json()["pinned"]
    assert client.post("/api/v1/events", json=event_record()).status_code == 201
    before = event_count(sample)
    good = event_record(title={"en": "A good record"})
    bad = event_record(occurred_on="2025-13-01")
    unknown = event_record(topics=["no-such-topic"])
    body = "\n".join(json.dumps(r) for r in (good, bad, unknown)).encode()
    r = client.post("/api/v1/events/import", files={"file": ("x.jsonl", body)})
    assert r.status_code == 200
    report = r.json()
    assert report["new"] == 1 and [p["where"] for p in report["invalid"]] == ["line 2", "line 3"]
    assert "unknown topic(s): no-such-topic" in report["invalid"][1]["reason"]
    assert event_count(sample) == before + 1
    huge = b"[" + b" " * MAX_UPLOAD_BYTES + b"]"
    r = client.post("/api/v1/events/import", files={"file": ("huge.json", huge)})
    assert r.status_code == 413 and "larger than 5 MB" in r.json()["detail"]
    r = client.post("/api/v1/events", json=event_record(occurred_on="2025-02-30"))
    assert r.status_code == 422
    r = client.post("/api/v1/events", json=event_record(topics=["no-such-topic"]))
    assert r.status_code == 400
    assert event_count(sample) == before + 1
    with Session(sample) as s:
        actions = list(s.exec(select(AdminAudit.action).order_by(AdminAudit.id)))
        assert actions == ["event.pin", "event.add", "event.import"]
        assert s.exec(select(func.count()).select_from(AdminAudit)).one() == 3


def test_a_viewer_cannot_delete(web_settings, sample):
    viewer = api_client(web_settings, sample, name="analyst", role="viewer")
    eu = event_id(sample, EU)
    r = viewer.delete(f"/api/v1/events/{eu}")
    assert r.status_code == 403 and "needs an editor token" in r.json()["detail"]
    assert viewer.get("/api/v1/events", params={"q": "AI Act"}).status_code == 200
    with Session(sample) as s:
        assert s.get(Event, eu) is not None
        assert topic_slugs(session=s, event=s.get(Event, eu))


def test_remove_event_leaves_other_events_alerts_alone(sample, web_settings):
    eu = event_id(sample, EU)
    queue_an_alert(sample, web_settings, eu)
    with Session(sample) as s:
        other = s.exec(select(Event).where(Event.id != eu)).first()
        s.add(Delivery(idempotency_key=f"x|alert|event:{other.id}", channel="email",
                       kind="alert", period=f"event:{other.id}",
                       next_attempt_at=dt.datetime.now(dt.UTC)))  # fmt: skip
        s.commit()
        assert pipeline.remove_event(session=s, event=s.get(Event, eu)) == 1
        s.commit()
        waiting = s.exec(select(Delivery.status).where(Delivery.period == f"event:{other.id}"))
        assert list(waiting) == ["queued"]


def test_migration_makes_stored_events_searchable(engine):
    from sqlalchemy import text

    from newsletter.core.db import downgrade, upgrade

    downgrade(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO event (title, summary, url, source, sources, region, occurred_on, "
                "language, pinned, title_key, manual_topics, created_at) VALUES (:t, :s, "
                "'https://a.example/1', '', '{}', 'china', '2025-07-01', 'zh', false, 'k', "
                "false, '2025-07-01 00:00:00')"
            ),
            {"t": json.dumps({"zh": "上海发布算力券", "en": "Shanghai Vouchers"}),
             "s": json.dumps({"en": "For AI firms"})},
        )  # fmt: skip
    upgrade(engine)
    with Session(engine) as s:
        (event,) = s.exec(select(Event)).all()
        assert event.search_text == "上海发布算力券\nshanghai vouchers\nfor ai firms"
