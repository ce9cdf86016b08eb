"""The admin REST API under /api/v1, through the real app (TestClient) on the test database.

Servers (SMTP, chat platforms, an RSS feed) run on 127.0.0.1 only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import socket

import pytest
import schemathesis
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token, revoke_token
from newsletter.core.models import AdminToken, Delivery
from newsletter.core.settings import Settings
from newsletter.ingest.events import localised
from newsletter.topics.catalogue import ensure_default_topics
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.factories import event_record
from tests.support.http import RouteServer
from tests.support.workers import drain

# --- the routes, listed from the app itself ---------------------------------------------------

PATH_VALUES = {
    "slug": "governance",
    "event_id": "1",
    "email": "reader.en@example.com",
    "name": "team",
    "period": "2025-07",
    "language": "en",
    "delivery_id": "1",
}


def api_routes() -> list[tuple[str, str]]:
    app = create_app(settings=Settings(database_url="sqlite://", secret_key=TEST_SECRET_KEY))
    routes = {
        (method, ctx.path)
        for ctx in iter_route_contexts(app.routes)
        if ctx.path and ctx.path.startswith("/api/v1/")
        for method in ctx.methods or ()
        if method != "HEAD"
    }
    return sorted(routes, key=lambda r: (r[1], r[0]))


API_ROUTES = api_routes()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def app(loopback_settings, engine):
    return create_app(settings=loopback_settings, engine=engine)


@pytest.fixture
def token(engine) -> str:
    with Session(engine) as s:
        _, token = create_token(session=s, name="api-tests")
        s.commit()
    return token


@pytest.fixture
def anonymous(db_url, engine, tmp_path):
    """A client without a token, on an app with no mail server (none is needed)."""
    settings = Settings(database_url=db_url, outbox_dir=tmp_path / "outbox")
    return TestClient(create_app(settings=settings, engine=engine))


@pytest.fixture
def client(app, token):
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def add_subscriber(client, email="ada@example.com", topics=("hardware",), **extra):
    body = {"email": email, "name": "Ada", "topics": list(topics), **extra}
    r = client.post("/api/v1/subscribers", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def add_webhook(client, receiver, name="team", platform="slack", **extra):
    body = {
        "name": name,
        "platform": platform,
        "url": receiver.url(f"/{platform}/{name}"),
        "topics": ["hardware", "capital"],
        **extra,
    }
    r = client.post("/api/v1/webhooks", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def fields(response) -> set[str]:
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "invalid input"
    return {e["field"] for e in response.json()["errors"]}


# --- authentication ---------------------------------------------------------------------------


def test_every_api_route_is_listed():
    assert len(API_ROUTES) >= 30
    assert ("POST", "/api/v1/events/import") in API_ROUTES
    assert ("GET", "/api/v1/stats/deliveries") in API_ROUTES


@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[f"{m} {p}" for m, p in API_ROUTES])
def test_every_route_needs_a_live_admin_token(engine, anonymous, method, path):
    with Session(engine) as s:
        _, revoked = create_token(session=s, name="old")
        s.flush()
        revoke_token(session=s, name="old")
        s.commit()
    url = path.format(**PATH_VALUES)

    r = anonymous.request(method, url)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]
    for bad in ("nla_not-a-real-token", "garbage", revoked):
        r = anonymous.request(method, url, headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 403, (bad, r.text)
        assert r.json() == {"detail": "this token is unknown or revoked"}


def test_a_used_token_records_when(client, engine):
    assert client.get("/api/v1/topics").status_code == 200
    with Session(engine) as s:
        row = s.execute(select(AdminToken).where(AdminToken.name == "api-tests")).scalar_one()
        assert row.last_used_at is not None


def test_openapi_schema_describes_every_operation(client):
    schema = client.get("/openapi.json").json()
    ops = {
        (m.upper(), p): op
        for p, item in schema["paths"].items()
        if p.startswith("/api/v1/")
        for m, op in item.items()
    }
    assert set(ops) == set(API_ROUTES)
    for op in ops.values():
        assert op["security"] == [{"HTTPBearer": []}]
        assert {"401", "403"} <= set(op["responses"])
        ok = next(code for code in op["responses"] if code.startswith("2"))
        if ok != "204" and "text/csv" not in op["responses"][ok].get("content", {}):
            assert "$ref" in json.dumps(op["responses"][ok]), op["operationId"]
    components = schema["components"]["schemas"]
    assert {"TopicPublic", "EventPublic", "SubscriberPublic", "WebhookPublic"} <= set(components)
    assert "ValidationErrorPublic" in json.dumps(ops[("POST", "/api/v1/topics")]["responses"])


# --- topics -----------------------------------------------------------------------------------


def test_topics_crud_and_rules(client, sample):
    r = client.get("/api/v1/topics")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 4
    assert [t["slug"] for t in body["data"]] == ["governance", "capital", "hardware", "open-source"]
    assert all(t["events"] > 0 for t in body["data"])

    new = {
        "slug": "robotics",
        "name_en": "Robotics",
        "name_zh": "机器人",
        "rules": {"include": ["humanoid*", "robot*"], "exclude": ["robotic process"]},
    }
    r = client.post("/api/v1/topics", json=new)
    assert r.status_code == 201, r.text
    topic = r.json()
    assert topic["slug"] == "robotics" and topic["position"] == 5
    assert topic["rules"] == {
        "include": ["humanoid*", "robot*"],
        "exclude": ["robotic process"],
        "regex": None,
    }
    assert topic["events"] == topic["subscribers"] == topic["webhooks"] == 0

    r = client.post("/api/v1/topics", json=new)
    assert r.status_code == 409 and "already exists" in r.json()["detail"]

    r = client.patch(
        "/api/v1/topics/robotics", json={"name_en": "Robots", "rules": {"regex": "(?i)unitree"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name_en"] == "Robots" and r.json()["rules"]["regex"] == "(?i)unitree"
    assert r.json()["rules"]["include"] == []  # a rules object replaces the old rules
    assert client.get("/api/v1/topics/robotics").json()["name_zh"] == "机器人"

    r = client.post("/api/v1/events/retag")
    assert r.status_code == 200 and r.json()["examined"] > 0

    r = client.delete("/api/v1/topics/robotics")
    assert r.status_code == 204 and r.content == b""
    assert client.get("/api/v1/topics/robotics").status_code == 404


def test_rules_dry_run_lists_the_events_they_would_match(client, sample):
    r = client.post(
        "/api/v1/topics/match",
        json={"rules": {"include": ["Nvidia", "芯片"]}, "month": "2025-07", "slug": "hardware"},
    )
    assert r.status_code == 200, r.text
    check = r.json()
    assert check["examined"] > check["matched"] > 0
    assert len(check["events"]) == check["matched"]
    first = check["events"][0]
    assert first["reason"].startswith('keyword "') and first["tagged"] is True
    # the narrower rules would no longer match some events the hardware topic has now
    assert check["dropped"]

    r = client.post(
        "/api/v1/topics/match", json={"rules": {"include": ["zzzz-nothing"]}, "limit": 5}
    )
    assert r.json() == {"examined": r.json()["examined"], "matched": 0, "events": [], "dropped": []}

    r = client.post("/api/v1/topics/match", json={"rules": {"regex": "a{4294967296}"}})
    assert fields(r) == {"rules.regex"}
    r = client.post("/api/v1/topics/match", json={"rules": {"include": ["*"]}})
    assert fields(r) == {"rules"} and "empty keyword" in r.text
    r = client.post("/api/v1/topics/match", json={"rules": {"include": ["x"]}, "slug": "nope"})
    assert r.status_code == 404


def test_suggested_keywords_come_from_events_put_in_a_topic_by_hand(client, sample):
    r = client.get("/api/v1/topics/open-source/suggestions")
    assert r.status_code == 200, r.text
    assert r.json() == {"manual": 0, "missed": 0, "data": []}
    for n, (en, zh) in enumerate(
        [
            ("Lab shares its training recipe and datasets publicly", "实验室公开训练配方和数据集"),
            ("Start-up publishes its training recipe for anyone to reuse", "初创公司公开训练配方"),
        ]
    ):
        record = event_record(
            title={"en": en, "zh": zh},
            summary={"en": "", "zh": ""},
            url=f"https://news.example.com/recipe-{n}",
            topics=["open-source"],
        )
        assert client.post("/api/v1/events", json=record).status_code == 201
    r = client.get("/api/v1/topics/open-source/suggestions")
    body = r.json()
    assert (body["manual"], body["missed"]) == (2, 2)
    terms = {s["term"]: s for s in body["data"]}
    assert {"training recipe", "训练配方"} <= set(terms), terms
    assert terms["training recipe"] == {"term": "training recipe", "events": 2, "elsewhere": 0}

    assert client.get("/api/v1/topics/nope/suggestions").status_code == 404
    assert client.get("/api/v1/topics/Not%20A%20Slug/suggestions").status_code == 422


def test_a_followed_topic_is_removed_only_with_force(client, sample, engine):
    add_subscriber(client, topics=["open-source", "capital"])
    r = client.delete("/api/v1/topics/open-source")
    assert r.status_code == 409
    assert "1 subscriber(s)" in r.json()["detail"]
    assert client.get("/api/v1/topics/open-source").json()["subscribers"] == 1

    assert client.delete("/api/v1/topics/open-source?force=true").status_code == 204
    assert client.get("/api/v1/topics/open-source").status_code == 404
    assert client.get("/api/v1/subscribers/ada@example.com").json()["topics"] == ["capital"]


def test_topic_input_errors_name_the_field(client, sample):
    r = client.post("/api/v1/topics", json={"slug": "Bad Slug!", "name_en": "x", "name_zh": "x"})
    assert fields(r) == {"slug"}
    r = client.post("/api/v1/topics", json={"slug": "ok", "name_en": " ", "name_zh": "x"})
    assert fields(r) == {"name_en"}
    r = client.post("/api/v1/topics", json={"slug": "ok", "name_en": "x"})
    assert fields(r) == {"name_zh"}
    r = client.post(
        "/api/v1/topics",
        json={"slug": "ok", "name_en": "x", "name_zh": "x", "rules": {"regex": "(unclosed"}},
    )
    assert fields(r) == {"rules.regex"} and "invalid regex" in r.text
    r = client.post(
        "/api/v1/topics", json={"slug": "ok", "name_en": "x", "name_zh": "x", "rules": {"when": 1}}
    )
    assert fields(r) == {"rules.when"}
    r = client.patch("/api/v1/topics/capital", json={"rules": {"include": "not-a-list"}})
    assert fields(r) == {"rules.include"}
    r = client.post(
        "/api/v1/topics", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert client.get("/api/v1/topics/UPPER").status_code == 422
    assert client.get("/api/v1/topics/unknown").json() == {"detail": "no topic 'unknown'"}
    assert client.patch("/api/v1/topics/unknown", json={}).status_code == 404
    assert client.delete("/api/v1/topics/unknown").status_code == 404


# --- events -----------------------------------------------------------------------------------


def test_events_list_filters_and_why(client, sample):
    r = client.get("/api/v1/events", params={"month": "2025-07"})
    assert r.status_code == 200
    all_july = r.json()
    assert all_july["count"] == len(all_july["data"]) > 10

    r = client.get("/api/v1/events", params={"topic": "hardware", "month": "2025-07", "limit": 3})
    page = r.json()
    assert len(page["data"]) == 3 and page["count"] > 3
    assert all("hardware" in e["topics"] for e in page["data"])
    second = client.get(
        "/api/v1/events", params={"topic": "hardware", "month": "2025-07", "limit": 3, "offset": 3}
    ).json()
    assert {e["id"] for e in second["data"]}.isdisjoint(e["id"] for e in page["data"])

    china = client.get("/api/v1/events", params={"region": "china"}).json()
    assert china["count"] > 0 and all(e["region"] == "china" for e in china["data"])

    event_id = page["data"][0]["id"]
    r = client.get(f"/api/v1/events/{event_id}")
    assert r.status_code == 200
    detail = r.json()
    why = {m["slug"]: m for m in detail["matches"]}
    assert why["hardware"]["source"] == "rule"
    assert why["hardware"]["reason"].startswith(("keyword", "regex"))
    assert client.get("/api/v1/events/999999").status_code == 404

    assert fields(client.get("/api/v1/events", params={"month": "2025-13"})) == {"query.month"}
    assert fields(client.get("/api/v1/events", params={"limit": 0})) == {"query.limit"}
    r = client.get("/api/v1/events", params={"topic": "nope"})
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]
    assert client.get("/api/v1/events/abc").status_code == 422


def test_add_one_event_queues_alerts_and_refuses_duplicates(client, sample, chat_receiver):
    add_webhook(client, chat_receiver)
    record = event_record(occurred_on="2025-08-01", title="Chipmaker ships a new AI accelerator")
    r = client.post("/api/v1/events", json=record)
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["title"] == {"en": "Chipmaker ships a new AI accelerator"}
    assert "hardware" in event["topics"] and event["alerts_enqueued"] == 1
    assert {m["slug"] for m in event["matches"]} == set(event["topics"])

    r = client.post("/api/v1/events", json={**record, "url": record["url"] + "?again"})
    assert r.status_code == 409 and f"event {event['id']}" in r.json()["detail"]

    manual = event_record(topics=["governance"])
    r = client.post("/api/v1/events", json=manual)
    assert r.status_code == 201 and r.json()["topics"] == ["governance"]
    assert r.json()["manual_topics"] is True and r.json()["matches"][0]["source"] == "manual"

    assert fields(client.post("/api/v1/events", json=event_record(topics=["Not A Slug"]))) == {
        "topics.0"
    }
    r = client.post("/api/v1/events", json=event_record(topics=["no-such-topic"]))
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]
    assert fields(client.post("/api/v1/events", json=event_record(url="ftp://x.example/1"))) == {
        "url"
    }
    bad = event_record(importance=9, occurred_on="July")
    assert fields(client.post("/api/v1/events", json=bad)) == {"importance", "occurred_on"}
    assert fields(client.post("/api/v1/events", json={"url": "https://a.example/"})) >= {"title"}


def test_import_upload_reports_each_record(client, sample, engine, chat_receiver):
    add_webhook(client, chat_receiver, topics=["capital"])
    good = [event_record(occurred_on="2025-08-02"), event_record(occurred_on="2025-08-03")]
    lines = [json.dumps(r) for r in good]
    lines.append("{broken json")
    lines.append(json.dumps({**event_record(), "url": "https://x.example/" + "a" * 2100}))
    lines.append(json.dumps(good[0]))  # a duplicate
    upload = ("\n".join(lines) + "\n").encode()

    r = client.post("/api/v1/events/import", files={"file": ("batch.jsonl", upload)})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["format"] == "jsonl"
    assert (report["new"], report["duplicate"]) == (2, 1)
    assert [p["where"] for p in report["invalid"]] == ["line 3", "line 4"]
    assert "invalid JSON" in report["invalid"][0]["reason"]
    assert report["invalid"][1]["reason"].startswith("url:")
    assert len(report["new_ids"]) == 2 and report["alerts_enqueued"] == 2
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Delivery)).scalar_one() == 2

    again = client.post("/api/v1/events/import", files={"file": ("batch.jsonl", upload)}).json()
    assert (again["new"], again["duplicate"], again["alerts_enqueued"]) == (0, 3, 0)

    csv_text = "title_en,title_zh,url,occurred_on,region\nA lab raises funding,实验室融资,https://c.example/1,2025-08-04,china\n"
    r = client.post(
        "/api/v1/events/import",
        files={"file": ("whatever.txt", csv_text.encode())},
        data={"format": "csv"},
    )
    assert r.status_code == 200 and r.json()["new"] == 1


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("events.json", b"[{", 400, "invalid JSON"),
        ("events.yaml", b"a: [b", 400, "invalid YAML"),
        ("events.csv", b"url,occurred_on\nhttps://x.example,2025-07-01\n", 400, "title column"),
        ("events.csv", b"title,url\n" + b"x" * 200_000 + b",https://x.example\n", 400, "CSV"),
        ("events.json", b"\xff\xfe not utf-8", 400, "not UTF-8"),
        ("events.docx", b"[]", 400, "cannot tell the format"),
        ("events.json", b"[" + b" " * (5 * 1024 * 1024) + b"]", 413, "larger than 5 MB"),
    ],
    ids=["json", "yaml", "csv-header", "csv-field-limit", "encoding", "extension", "oversize"],
)
def test_import_refuses_unreadable_files(client, sample, engine, name, data, status, message):
    before = client.get("/api/v1/events").json()["count"]
    r = client.post("/api/v1/events/import", files={"file": (name, data)})
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert client.get("/api/v1/events").json()["count"] == before


def test_import_input_errors(client, sample):
    assert fields(client.post("/api/v1/events/import")) == {"file"}
    r = client.post(
        "/api/v1/events/import", files={"file": ("a.json", b"[]")}, data={"format": "xml"}
    )
    assert fields(r) == {"format"}
    big = b"x" * (7 * 1024 * 1024)
    r = client.post("/api/v1/events/import", files={"file": ("a.json", big)})
    assert r.status_code == 413 and "request body" in r.json()["detail"]

    def chunked():  # no Content-Length: the limit holds while reading
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=a.json\r\n\r\n"
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    r = client.post(
        "/api/v1/events/import",
        content=chunked(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 413 and "request body" in r.json()["detail"]


# --- subscribers ------------------------------------------------------------------------------


def test_subscribers_crud_and_suppression(client, sample):
    sub = add_subscriber(
        client,
        email="Ada@Example.com",
        topics=["hardware", "capital"],
        language="zh",
        timezone="Asia/Shanghai",
        frequency="weekly",
    )
    assert sub["email"] == "ada@example.com" and sub["status"] == "active"
    assert sub["topics"] == ["capital", "hardware"] and sub["language"] == "zh"
    assert sub["source"] == "admin" and sub["confirmed_at"]

    r = client.post("/api/v1/subscribers", json={"email": "ada@example.com", "topics": ["capital"]})
    assert r.status_code == 409 and "already subscribed" in r.json()["detail"]

    listing = client.get("/api/v1/subscribers", params={"status": "active"}).json()
    assert listing["count"] == 1 and listing["data"][0]["email"] == "ada@example.com"
    assert client.get("/api/v1/subscribers", params={"status": "pending"}).json()["count"] == 0

    r = client.patch(
        "/api/v1/subscribers/ada@example.com", json={"topics": ["governance"], "name": "Ada L."}
    )
    assert r.status_code == 200, r.text
    assert r.json()["topics"] == ["governance"] and r.json()["name"] == "Ada L."
    assert r.json()["frequency"] == "weekly"  # untouched
    assert client.get("/api/v1/subscribers/ADA@example.com").json()["name"] == "Ada L."

    assert client.delete("/api/v1/subscribers/ada@example.com").status_code == 204
    assert client.get("/api/v1/subscribers/ada@example.com").status_code == 404
    r = client.post("/api/v1/subscribers", json={"email": "ada@example.com", "topics": ["capital"]})
    assert r.status_code == 409 and "was removed" in r.json()["detail"]


def test_subscriber_input_errors(client, sample):
    def post(body):
        return client.post("/api/v1/subscribers", json=body)

    assert fields(post({"email": "not-an-address", "topics": ["capital"]})) == {"email"}
    assert fields(post({"email": "a@example.com", "topics": []})) == {"topics"}
    assert fields(
        post({"email": "a@example.com", "topics": ["capital"], "timezone": "Mars/Base"})
    ) == {"timezone"}
    assert fields(post({"email": "a@example.com", "topics": ["capital"], "language": "fr"})) == {
        "language"
    }
    assert fields(
        post({"email": "a@example.com", "topics": ["capital"], "frequency": "hourly"})
    ) == {"frequency"}
    r = post({"email": "a@example.com", "topics": ["no-such-topic"]})
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]
    assert client.get("/api/v1/subscribers/nobody@example.com").status_code == 404
    assert client.patch("/api/v1/subscribers/nobody@example.com", json={}).status_code == 404
    assert client.delete("/api/v1/subscribers/nobody@example.com").status_code == 404
    add_subscriber(client)
    r = client.patch("/api/v1/subscribers/ada@example.com", json={"email": "b@example.com"})
    assert fields(r) == {"email"}  # extra fields are refused, not ignored
    r = client.patch("/api/v1/subscribers/ada@example.com", json={"topics": ["no-such-topic"]})
    assert r.status_code == 400


# --- webhooks ---------------------------------------------------------------------------------


def test_webhooks_crud_masks_secrets_and_urls(client, sample, chat_receiver):
    hook = add_webhook(
        client,
        chat_receiver,
        name="cn-team",
        platform="feishu",
        secret="feishu-secret-value",
        language="zh",
        mode="weekly",
    )
    assert hook["secret"] == "••••alue"
    assert hook["url"].startswith("http://127.0.0.1:") and "cn-team" not in hook["url"]
    assert hook["topics"] == ["capital", "hardware"] and hook["enabled"] is True
    generic = add_webhook(client, chat_receiver, name="ops", platform="generic")
    assert generic["secret"].startswith("••••") and len(generic["secret"]) == 8

    listing = client.get("/api/v1/webhooks").json()
    assert [h["name"] for h in listing["data"]] == ["cn-team", "ops"]
    assert "feishu-secret-value" not in json.dumps(listing)

    r = client.post(
        "/api/v1/webhooks",
        json={
            "name": "ops",
            "platform": "slack",
            "url": chat_receiver.url("/slack/x"),
            "topics": ["capital"],
        },
    )
    assert r.status_code == 409

    r = client.patch("/api/v1/webhooks/cn-team", json={"topics": ["governance"], "mode": "monthly"})
    assert r.status_code == 200, r.text
    assert r.json()["topics"] == ["governance"] and r.json()["mode"] == "monthly"
    assert r.json()["secret"] == hook["secret"]
    r = client.patch("/api/v1/webhooks/ops", json={"secret": "plain"})
    assert r.status_code == 400 and "whsec_" in r.json()["detail"]
    r = client.patch("/api/v1/webhooks/ops", json={"url": "https://10.0.0.1/x"})
    assert r.status_code == 400 and "private address" in r.json()["detail"]

    r = client.post("/api/v1/webhooks/cn-team/disable", json={"reason": "team away"})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["disabled_reason"] == "team away"
    r = client.post("/api/v1/webhooks/cn-team/enable")
    assert r.status_code == 200 and r.json()["webhook"]["enabled"] is True
    assert r.json()["requeued"] == 0
    assert (
        client.post("/api/v1/webhooks/cn-team/disable").json()["disabled_reason"]
        == "disabled by an admin"
    )

    assert client.delete("/api/v1/webhooks/cn-team").status_code == 204
    for method, path in [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/enable"),
        ("POST", "/disable"),
        ("POST", "/test"),
    ]:
        r = client.request(
            method, f"/api/v1/webhooks/cn-team{path}", json={} if method == "PATCH" else None
        )
        assert r.status_code == 404, (method, path)
        assert r.json() == {"detail": "no webhook named 'cn-team'"}


def test_webhook_input_errors(client, sample, chat_receiver):
    base = {
        "name": "t",
        "platform": "slack",
        "url": chat_receiver.url("/slack/t"),
        "topics": ["capital"],
    }

    def post(**kw):
        return client.post("/api/v1/webhooks", json={**base, **kw})

    assert fields(post(platform="telegram")) == {"platform"}
    assert fields(post(name="has space")) == {"name"}
    assert fields(post(topics=[])) == {"topics"}
    assert fields(post(mode="hourly", language="fr")) == {"mode", "language"}
    assert fields(post(url="https://hooks.example.com/a b")) == {"url"}
    assert fields(post(secret_env="HOME")) == {"secret_env"}  # rosters only
    assert fields(post(url="ftp://hooks.example.com/x")) == {"url"}
    r = post(url="http://10.1.2.3/x")
    assert r.status_code == 400 and "refusing webhook URL" in r.json()["detail"]
    assert "private address" in r.json()["detail"]
    r = post(topics=["no-such-topic"])
    assert r.status_code == 400 and "unknown topic" in r.json()["detail"]
    r = post(platform="generic", secret="not-whsec")
    assert r.status_code == 400 and "whsec_" in r.json()["detail"]


def test_webhook_test_send_reaches_the_platform(client, sample, chat_receiver):
    add_webhook(client, chat_receiver)
    r = client.post("/api/v1/webhooks/team/test")
    assert r.status_code == 200, r.text
    assert r.json()["answer"]
    (request,) = chat_receiver.platforms.for_path("/slack/team")
    assert request.json["blocks"]

    chat_receiver.platforms.script["/slack/team"] = [(400, {}, "invalid_payload")]
    r = client.post("/api/v1/webhooks/team/test")
    assert r.status_code == 502 and "invalid_payload" in r.json()["detail"]


def test_webhook_test_without_events(client, engine, chat_receiver):
    with Session(engine) as s:
        ensure_default_topics(session=s)
        s.commit()
    add_webhook(client, chat_receiver)
    r = client.post("/api/v1/webhooks/team/test")
    assert r.status_code == 409 and "no events" in r.json()["detail"]
    assert chat_receiver.platforms.requests == []


# --- sharp takes and feeds --------------------------------------------------------------------


def test_sharp_take_write_read_and_preview(client, sample):
    r = client.get("/api/v1/takes/2025-07/en")
    assert r.status_code == 200 and r.json()["body_markdown"]

    body = "## August\n\nChips **everywhere**. <script>alert(1)</script>"
    r = client.put("/api/v1/takes/2025-08/en", json={"body_markdown": body})
    assert r.status_code == 200, r.text
    take = r.json()
    assert take["period"] == "2025-08" and take["language"] == "en"
    assert "<h2>August</h2>" in take["html"] and "<strong>everywhere</strong>" in take["html"]
    assert "<script>" not in take["html"] and "&lt;script&gt;" in take["html"]
    assert client.get("/api/v1/takes/2025-08/en").json()["body_markdown"] == body
    assert client.get("/api/v1/takes/2025-08/zh").status_code == 404

    assert fields(client.put("/api/v1/takes/2025-13/en", json={"body_markdown": "x"})) == {
        "path.period"
    }
    assert fields(client.put("/api/v1/takes/2025-08/fr", json={"body_markdown": "x"})) == {
        "path.language"
    }
    assert fields(client.put("/api/v1/takes/2025-08/en", json={"body_markdown": ""})) == {
        "body_markdown"
    }
    r = client.put("/api/v1/takes/2025-08/en", json={"body_markdown": " \n\x01 "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>AI Wire</title><link>https://wire.example.com/</link>
<description>x</description>
<item><title>Chipmaker unveils a new AI accelerator</title><link>https://wire.example.com/a</link>
<pubDate>Tue, 15 Jul 2025 09:00:00 GMT</pubDate></item>
<item><title>Lab raises $2 billion in new funding</title><link>https://wire.example.com/b</link>
<pubDate>Wed, 16 Jul 2025 09:00:00 GMT</pubDate></item>
</channel></rss>"""


@pytest.fixture
def feed_server():
    """RSS at /rss.xml and a 500 anywhere else."""
    server = RouteServer(
        {"/rss.xml": (200, {"Content-Type": "application/rss+xml"}, RSS)},
        default=(500, {"Content-Type": "application/rss+xml"}, "boom"),
    )
    yield server
    server.close()


def test_feeds_add_poll_and_remove(client, sample, feed_server):
    r = client.post("/api/v1/feeds", json={"url": feed_server.url + "/rss.xml", "name": "wire"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "wire" and r.json()["last_polled_at"] is None
    r = client.post("/api/v1/feeds", json={"url": feed_server.url + "/rss.xml", "name": "other"})
    assert r.status_code == 409 and "exists already" in r.json()["detail"]
    r = client.post("/api/v1/feeds", json={"url": feed_server.url + "/broken", "name": "broken"})
    assert r.status_code == 201

    r = client.post("/api/v1/feeds/wire/poll")
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == "new" and len(result["new_ids"]) == 2 and result["error"] is None
    event = client.get(f"/api/v1/events/{result['new_ids'][0]}").json()
    assert event["source"] == "wire" and "hardware" in event["topics"]

    results = {p["feed"]: p for p in client.post("/api/v1/feeds/poll").json()}
    assert results["broken"]["status"] == "error" and "HTTP 500" in results["broken"]["error"]
    assert "wire" not in results  # polled a moment ago: not due
    feeds = {f["name"]: f for f in client.get("/api/v1/feeds").json()["data"]}
    assert feeds["broken"]["consecutive_failures"] == 1 and feeds["wire"]["last_ok_at"]
    assert client.get("/api/v1/feeds/wire").json()["url"] == feed_server.url + "/rss.xml"

    assert client.delete("/api/v1/feeds/wire").status_code == 204
    assert client.get("/api/v1/feeds/wire").status_code == 404
    assert client.post("/api/v1/feeds/wire/poll").status_code == 404
    assert client.get(f"/api/v1/events/{result['new_ids'][0]}").status_code == 200  # events stay

    assert fields(client.post("/api/v1/feeds", json={"url": "file:///etc/passwd"})) == {"url"}
    r = client.post("/api/v1/feeds", json={"url": "http://169.254.169.254/latest"})
    assert r.status_code == 400 and "refusing feed URL" in r.json()["detail"]
    assert fields(
        client.post("/api/v1/feeds", json={"url": "https://x.example/f", "region": "Not a region"})
    ) == {"region"}
    assert fields(client.post("/api/v1/feeds", json={})) == {"url"}


# --- digests ----------------------------------------------------------------------------------


def test_digest_preview_shows_the_subscribers_events(client, sample):
    add_subscriber(client, topics=["open-source"])
    r = client.get(
        "/api/v1/digests/preview",
        params={"frequency": "monthly", "period": "2025-07", "email": "ada@example.com"},
    )
    assert r.status_code == 200, r.text
    shown = r.json()
    events = client.get(
        "/api/v1/events", params={"topic": "open-source", "month": "2025-07"}
    ).json()
    month = client.get("/api/v1/events", params={"month": "2025-07"}).json()["data"]
    picks = {e["id"] for e in month if e["pinned"] or e["importance"] == 5}
    # the month's topic events, and the editor's picks every monthly reader gets
    assert shown["event_count"] == len(picks | {e["id"] for e in events["data"]}) > len(picks)
    assert "July 2025" in shown["subject"] and "Editor's picks" in shown["text"]
    for event in events["data"]:
        title = localised(event["title"], "en")
        assert f"* {title}" in shown["text"]
        assert html.escape(title, quote=False) in shown["html"]
    others = client.get("/api/v1/events", params={"topic": "capital", "month": "2025-07"}).json()
    only_capital = [
        e for e in others["data"] if "open-source" not in e["topics"] and e["id"] not in picks
    ]
    assert only_capital and all(
        localised(e["title"], "en") not in shown["text"] for e in only_capital
    )
    assert "Ada" in shown["text"]

    def preview(**params):
        base = {"frequency": "monthly", "period": "2025-07", "email": "ada@example.com"}
        return client.get("/api/v1/digests/preview", params={**base, **params})

    assert preview(email="nobody@example.com").status_code == 404
    r = preview(period="2024-01")
    assert r.status_code == 409 and "no events" in r.json()["detail"]
    assert fields(preview(period="2025-W31")) == {"query.period"}
    assert fields(preview(frequency="hourly")) == {"query.frequency"}
    assert fields(client.get("/api/v1/digests/preview")) == {
        "query.frequency",
        "query.period",
        "query.email",
    }


def test_digest_send_now_enqueues_once(client, sample, engine, chat_receiver):
    add_subscriber(client, email="a@example.com", topics=["hardware"])
    add_subscriber(client, email="b@example.com", topics=["capital"], language="zh")
    add_subscriber(client, email="c@example.com", topics=["capital"], frequency="weekly")
    add_webhook(client, chat_receiver, mode="monthly")

    dry = client.post(
        "/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07", "dry_run": True}
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["recipients"], dry.json()["enqueued"], dry.json()["endpoints"]) == (2, 0, 1)
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Delivery)).scalar_one() == 0

    r = client.post("/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07"})
    assert r.status_code == 200, r.text
    first = r.json()
    assert (first["recipients"], first["enqueued"], first["already_enqueued"]) == (2, 2, 0)
    assert first["endpoints"] == 1 and first["endpoint_rows"] >= 1
    assert len(first["segments"]) == 2
    with Session(engine) as s:
        rows = s.execute(select(Delivery)).scalars().all()
        assert len(rows) == 2 + first["endpoint_rows"]
        assert {d.kind for d in rows} == {"digest-monthly"}

    second = client.post(
        "/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07"}
    ).json()
    assert (second["enqueued"], second["endpoint_rows"], second["already_enqueued"]) == (0, 0, 2)

    def send(**kw):
        body = {"frequency": "monthly", "period": "2025-07", **kw}
        return client.post("/api/v1/digests/send", json=body)

    assert fields(send(period="2025-W31")) == {"period"}
    assert fields(send(frequency="instant")) == {"frequency"}
    assert fields(send(dry_run="maybe")) == {"dry_run"}


# --- outbox and statistics --------------------------------------------------------------------


def test_outbox_and_daily_delivery_stats(client, sample, engine, loopback_settings, smtp_server):
    add_subscriber(client, email="ok@example.com", topics=["hardware"])
    add_subscriber(client, email="gone@example.com", topics=["capital"])
    smtp_server.recorder.script["gone@example.com"] = ["550 5.1.1 no such user"]
    client.post("/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07"})

    queued = client.get("/api/v1/outbox").json()
    assert queued["channels"] == {"email": {"queued": 2}} and queued["totals"] == {"queued": 2}
    assert client.get("/api/v1/stats/deliveries").json() == []

    drain(engine, loopback_settings)
    assert len(smtp_server.recorder.to("ok@example.com")) == 1

    outbox = client.get("/api/v1/outbox").json()
    assert outbox["channels"] == {"email": {"sent": 1, "failed": 1}}
    assert outbox["totals"] == {"sent": 1, "failed": 1}
    (error,) = outbox["last_errors"]
    assert error["outcome"] == "permanent" and "550" in error["error"]
    assert error["key"].endswith("|digest-monthly|2025-07")

    today = dt.datetime.now(dt.UTC).date().isoformat()
    r = client.get("/api/v1/stats/deliveries", params={"days": 14})
    assert r.status_code == 200
    assert r.json() == [
        {"day": today, "channel": "email", "status": "failed", "count": 1},
        {"day": today, "channel": "email", "status": "sent", "count": 1},
    ]
    assert client.get("/api/v1/stats/deliveries", params={"days": 1}).json() == r.json()
    assert fields(client.get("/api/v1/stats/deliveries", params={"days": 0})) == {"query.days"}
    assert fields(client.get("/api/v1/stats/deliveries", params={"days": 1000})) == {"query.days"}
    assert client.get("/api/v1/outbox", params={"errors_limit": 0}).json()["last_errors"] == []


def test_stats_count_days_in_utc(client, engine):
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:
        for n, days_ago in enumerate([0, 1, 1, 20]):
            sent_at = now - dt.timedelta(days=days_ago)
            s.add(
                Delivery(
                    idempotency_key=f"k{n}",
                    channel="slack",
                    kind="alert",
                    status="sent",
                    sent_at=sent_at,
                )
            )
        s.add(Delivery(idempotency_key="queued", channel="slack", kind="alert"))
        s.commit()
    stats = client.get("/api/v1/stats/deliveries", params={"days": 14}).json()
    assert stats == [
        {
            "day": (now - dt.timedelta(days=1)).date().isoformat(),
            "channel": "slack",
            "status": "sent",
            "count": 2,
        },
        {"day": now.date().isoformat(), "channel": "slack", "status": "sent", "count": 1},
    ]
    assert len(client.get("/api/v1/stats/deliveries", params={"days": 30}).json()) == 3


# --- property-based: no input produces a server error -----------------------------------------


def _offline_dns(real):
    """Resolve only literal addresses and localhost: no lookups leave the machine."""

    def resolve(host, *args, **kwargs):
        if host in ("localhost",) or host.replace(".", "").isdigit() or ":" in str(host):
            return real(host, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "offline test resolver")

    return resolve


FUZZ_SHARDS = 6  # the operations are shared out over six tests, run in parallel


@pytest.mark.parametrize("shard", range(FUZZ_SHARDS))
def test_no_input_produces_a_server_error(app, sample, token, chat_receiver, monkeypatch, shard):
    """Schemathesis against the app's own OpenAPI schema: valid and invalid input alike."""
    monkeypatch.setattr(socket, "getaddrinfo", _offline_dns(socket.getaddrinfo))
    headers = {"Authorization": f"Bearer {token}"}
    client = TestClient(app, headers=headers)
    add_subscriber(client, email="reader.en@example.com", topics=["hardware", "capital"])
    add_webhook(client, chat_receiver)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith("/api/v1/")]
    assert len(operations) == len(API_ROUTES)
    operations.sort(key=lambda op: (op.path, op.method))
    for operation in operations[shard::FUZZ_SHARDS]:
        for mode, examples in ((GenerationMode.POSITIVE, 12), (GenerationMode.NEGATIVE, 8)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def no_server_error(case):
                # a generous read timeout: with both passes side by side on two CPUs a
                # request can stall for seconds; a hang still fails
                case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=60)

            no_server_error()


def test_generated_generic_secret_is_shown_once(client, sample, chat_receiver):
    created = add_webhook(client, chat_receiver, name="ops", platform="generic")
    secret = created["generated_secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    again = client.get("/api/v1/webhooks/ops").json()
    assert again["generated_secret"] is None and secret not in json.dumps(again)
