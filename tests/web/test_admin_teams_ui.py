"""The admin console's Teams page (/admin/webhooks): TestClient for bad input shown next to
its field (nothing stored), the viewer's read-only view and the API's same health values;
Chromium for the editor's path against the real chat receiver (add a Slack team, send a
test card and read the answer, disable, an alert held, enable, delivered, remove with
its confirmation) and the screenshots at 390 and 1200 px."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.audience.endpoints import EndpointIn, add_endpoint
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Delivery, WebhookEndpoint, utcnow
from newsletter.pipeline import disable_endpoint, ingest_records
from newsletter.pipeline.sample import load_sample
from newsletter.web.app import create_app
from tests.support.smtp_server import free_port
from tests.support.web import api_client, serving
from tests.support.workers import drain
from tests.web.test_admin_lists_ui import shoot
from tests.web.test_admin_ui import browser_login, login


@pytest.fixture
def token(engine) -> str:
    """Sample topics and July 2025 events, and an editor's token."""
    with Session(engine) as session:
        load_sample(session=session)
        _, token = create_token(session=session, name="editor", role="editor")
        session.commit()
    return token


@pytest.fixture
def client(web_settings, engine) -> TestClient:
    """The app with the default settings: only public https addresses are webhooks."""
    return TestClient(create_app(settings=web_settings, engine=engine))


def count(engine, model) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def add_team(engine, settings, name="ops", url="https://93.184.216.34/hooks/abcdefgh12345678"):
    with Session(engine) as s:
        add_endpoint(session=s, settings=settings, ep_in=EndpointIn(
            name=name, platform="slack", url=url, topics=["hardware"]))  # fmt: skip
        s.commit()


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="err-{field}">([^<]*)</p>', html)
    return found.group(1) if found else ""


# --- TestClient -----------------------------------------------------------------------------


def test_bad_input_shows_next_to_its_field_and_stores_nothing(client, engine, token):
    csrf = login(client, token)
    good = {"csrf_token": csrf, "name": "infra", "platform": "slack",
            "url": "https://93.184.216.34/services/T0/B0/x", "topics": ["hardware"],
            "mode": "instant", "language": "en", "timezone": "UTC"}  # fmt: skip
    cases = [
        ({"url": "not-a-url"}, "url", "must start with https://"),
        ({"url": "https://hooks.example.com/a b"}, "url", "contains a space"),
        ({"url": "https://10.1.2.3/hook"}, "url", "refusing webhook URL"),
        ({"url": "http://127.0.0.1:9/hook"}, "url", "must use https"),
        ({"url": "https://192.168.1.20/hook"}, "url", "192.168.1.20 is a private address"),
        ({"platform": "myspace"}, "platform", "platform must be one of"),
        ({"topics": []}, "topics", "choose at least one topic"),
        ({"topics": ["no-such-topic"]}, "topics", "no-such-topic"),
        ({"name": "bad name!"}, "name", "name may hold letters"),
        ({"timezone": "Mars/Base"}, "timezone", "unknown time zone"),
        ({"platform": "generic", "secret": "hunter2"}, "secret", "whsec_"),
    ]
    for change, field, message in cases:
        r = client.post("/admin/webhooks", data={**good, **change})
        assert r.status_code == 422, change
        assert message in field_error(r.text, field), (change, field_error(r.text, field))
        assert f'aria-describedby="err-{field}"' in r.text
        assert "The team was not added" in r.text
        assert 'value="infra"' in r.text or field == "name"  # what was typed stays
        assert "hunter2" not in r.text  # a secret is never echoed
    assert count(engine, WebhookEndpoint) == 0 and count(engine, AdminAudit) == 0

    # an existing team: a bad edit leaves it as it was
    add_team(engine, client.app.state.settings)
    r = client.post("/admin/webhooks/ops", data={**good, "url": "https://10.0.0.7/x"})
    assert r.status_code == 422 and "refusing webhook URL" in field_error(r.text, "url")
    assert "Nothing was saved" in r.text
    r = client.post("/admin/webhooks", data={**good, "name": "ops"})
    assert r.status_code == 422 and "exists already" in field_error(r.text, "name")
    with Session(engine) as s:
        ep = s.exec(select(WebhookEndpoint)).one()
        assert ep.url == "https://93.184.216.34/hooks/abcdefgh12345678"
    assert count(engine, AdminAudit) == 0
    # the stored URL is never on the page, only its mask
    page = client.get("/admin/webhooks/ops").text
    assert "abcdefgh12345678" not in page and "https://93.184.216.34/••••5678" in page
    assert client.get("/admin/webhooks/nobody").status_code == 404


def test_edit_keeps_a_blank_url_and_secret_and_a_generated_secret_shows_once(client, engine, token):
    csrf = login(client, token)
    add_team(engine, client.app.state.settings)
    form = {"csrf_token": csrf, "platform": "slack", "url": "", "secret": "",
            "topics": ["hardware", "capital"], "mode": "daily", "language": "zh",
            "timezone": "Asia/Shanghai"}  # fmt: skip
    saved = client.post("/admin/webhooks/ops", data=form)
    assert saved.status_code == 200 and '<p class="notice" role="status">Saved.</p>' in saved.text
    assert 'id="team-topics">capital, hardware<' in saved.text
    with Session(engine) as s:
        ep = s.exec(select(WebhookEndpoint)).one()
        assert ep.url == "https://93.184.216.34/hooks/abcdefgh12345678" and ep.secret is None
        assert (ep.mode, ep.language, ep.timezone) == ("daily", "zh", "Asia/Shanghai")
    # a generic webhook needs a whsec_ secret: moving to it without one is refused
    refused = client.post("/admin/webhooks/ops", data={**form, "platform": "generic"})
    assert refused.status_code == 422
    assert "needs its secret" in field_error(refused.text, "secret")
    secret = "whsec_" + "A" * 28 + "Zz9="
    moved = client.post("/admin/webhooks/ops", data={**form, "platform": "generic",
                                                     "secret": secret})  # fmt: skip
    assert "Saved." in moved.text and secret not in moved.text and "••••Zz9=" in moved.text
    # added without a secret, a generic team gets one, shown this once
    added = client.post("/admin/webhooks", data={**form, "name": "ops-2", "platform": "generic",
                                                 "url": "https://93.184.216.34/in"})  # fmt: skip
    shown = re.search(r'<code class="secret-once">(whsec_[^<]+)</code>', added.text)
    assert shown and "shown only this once" in added.text
    later = client.get("/admin/webhooks/ops-2").text
    assert shown[1] not in later and f"••••{shown[1][-4:]}" in later
    log = client.get("/admin/audit").text
    assert re.findall(r"<code>([a-z.]+)</code>", log) == ["webhook.add", "webhook.edit",
                                                          "webhook.edit"]  # fmt: skip
    assert "platform generic; secret ••••Zz9=" in log and secret not in log
    assert "topics capital,hardware; mode daily; language zh; timezone Asia/Shanghai" in log
    assert shown[1] not in log and "abcdefgh" not in log


def test_a_viewer_sees_teams_without_controls(web_settings, engine, token):
    add_team(engine, web_settings)
    with Session(engine) as s:
        _, viewer = create_token(session=s, name="analyst", role="viewer")
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    csrf = login(client, viewer)
    listed = client.get("/admin/webhooks").text
    assert 'href="/admin/webhooks/ops"' in listed and "Add team" not in listed
    page = client.get("/admin/webhooks/ops").text
    assert "https://93.184.216.34/••••5678" in page and 'id="team-state">enabled' in page
    for control in ("Save team", "Send a test card", "Disable…", "Remove…"):
        assert control not in page
    assert "A viewer token cannot change teams" in page
    refused = client.post("/admin/webhooks/ops/disable", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "needs an editor token" in refused.text
    with Session(engine) as s:
        assert s.exec(select(WebhookEndpoint)).one().enabled


def test_the_page_and_the_api_show_the_same_health(loopback_settings, engine, token):
    add_team(engine, loopback_settings)
    sent_at = dt.datetime(2025, 7, 3, 9, 30, tzinfo=dt.UTC)
    with Session(engine) as s:
        ep = s.exec(select(WebhookEndpoint)).one()
        for n, status in enumerate(("sent", "held", "held", "queued", "failed")):
            s.add(Delivery(idempotency_key=f"endpoint:{ep.id}|alert|event:{n + 1}",
                           channel="slack", kind="alert", period=f"event:{n + 1}",
                           endpoint_id=ep.id, status=status,
                           sent_at=sent_at if status == "sent" else None))  # fmt: skip
        ep.consecutive_failures = 2
        s.add(ep)
        s.commit()
    api = api_client(loopback_settings, engine, name="robot", role="editor")
    (listed,) = api.get("/api/v1/webhooks").json()["data"]
    one = api.get("/api/v1/webhooks/ops").json()
    for got in (listed, one):
        assert (got["held"], got["queued"], got["consecutive_failures"]) == (2, 1, 2)
        assert got["last_success_at"].startswith("2025-07-03T09:30")
    ui = TestClient(create_app(settings=loopback_settings, engine=engine))
    login(ui, token)
    row = re.search(r'<tr data-team="ops">.*?</tr>', ui.get("/admin/webhooks").text, re.S)[0]
    assert "2025-07-03 09:30 UTC" in row and '<td data-label="Held" class="num">2</td>' in row
    assert '<td data-label="Failures" class="num">2</td>' in row
    page = ui.get("/admin/webhooks/ops").text
    assert 'id="team-held">2<' in page and 'id="team-queued">1<' in page
    assert "The <strong>3</strong> messages waiting for it (1 queued, 2 held) are cancelled" in page

    # every change through the API is in the audit log too, with the URL masked
    assert api.patch("/api/v1/webhooks/ops", json={"mode": "daily"}).status_code == 200
    assert api.post("/api/v1/webhooks/ops/disable").status_code == 200
    enabled = api.post("/api/v1/webhooks/ops/enable").json()
    assert enabled["requeued"] == 3 and enabled["webhook"]["held"] == 0  # 2 held + 1 queued
    assert api.delete("/api/v1/webhooks/ops").status_code == 204
    log = api.get("/api/v1/audit").json()["data"]
    assert [(e["action"], e["token_name"]) for e in log] == [
        ("webhook.remove", "robot"), ("webhook.enable", "robot"),
        ("webhook.disable", "robot"), ("webhook.edit", "robot"),
    ]  # fmt: skip
    assert log[0]["detail"] == "3 waiting message(s) cancelled"
    assert log[3]["detail"] == "mode daily"
    with Session(engine) as s:
        statuses = s.exec(select(Delivery.status).order_by(Delivery.id)).all()
    assert statuses == ["sent", "cancelled", "cancelled", "cancelled", "failed"]


def test_a_refused_test_card_shows_the_platforms_answer(
    loopback_settings, engine, token, chat_receiver
):
    with Session(engine) as s:
        for name, platform in (("infra", "slack"), ("cn", "feishu")):
            add_endpoint(session=s, settings=loopback_settings, ep_in=EndpointIn(
                name=name, platform=platform, url=chat_receiver.url(f"/{platform}/{name}"),
                topics=["hardware"]))  # fmt: skip
        s.commit()
    chat_receiver.platforms.script["/slack/infra"] = [(404, "no_service")]
    chat_receiver.platforms.script["/feishu/cn"] = [
        (200, '{"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}')
    ]
    client = TestClient(create_app(settings=loopback_settings, engine=engine))
    csrf = login(client, token)
    slack = client.post("/admin/webhooks/infra/test", data={"csrf_token": csrf})
    answer = re.search(r'<div class="answer failed" id="test-answer".*?</div>', slack.text, re.S)
    assert answer and "The test card failed." in answer[0] and "HTTP 404: no_service" in answer[0]
    feishu = client.post("/admin/webhooks/cn/test", data={"csrf_token": csrf})
    answer = re.search(r'<div class="answer failed" id="test-answer".*?</div>', feishu.text, re.S)
    assert answer and "feishu code 19021: sign match fail" in answer[0]
    assert '<span class="badge">HTTP 200</span>' in answer[0]
    with Session(engine) as s:  # a test changes nothing: no row, no failure counted
        assert count(engine, Delivery) == 0
        assert [e.consecutive_failures for e in s.exec(select(WebhookEndpoint))] == [0, 0]


def test_disabling_holds_what_is_queued_and_held_rows_can_be_cancelled(client, engine, token):
    csrf = login(client, token)
    add_team(engine, client.app.state.settings)
    with Session(engine) as s:
        ep = s.exec(select(WebhookEndpoint)).one()
        for n in (1, 2):
            s.add(Delivery(idempotency_key=f"endpoint:{ep.id}|alert|event:{n}", channel="slack",
                           kind="alert", period=f"event:{n}", endpoint_id=ep.id))  # fmt: skip
        s.commit()
    page = client.get("/admin/webhooks/ops").text
    assert "the <strong>2</strong> messages queued for it now and new alerts" in page
    done = client.post("/admin/webhooks/ops/disable", data={"csrf_token": csrf, "reason": ""})
    assert "Disabled: nothing is sent to this team; 2 messages held until it is enabled." in (
        done.text
    )
    assert 'id="team-disabled-reason">disabled by an admin<' in done.text
    assert done.text.count('<tr data-delivery-id="') == 2 and "Cancel 2 held…" in done.text
    assert "they will never be sent, also not when it is enabled again" in done.text
    gone = client.post("/admin/webhooks/ops/held/cancel", data={"csrf_token": csrf})
    assert "2 messages held for this team cancelled: they will never be sent." in gone.text
    assert "No message is held for this team." in gone.text and "Cancel 2 held" not in gone.text
    with Session(engine) as s:
        assert s.exec(select(Delivery.status)).all() == ["cancelled", "cancelled"]
    log = client.get("/admin/audit").text
    assert re.findall(r"<code>([a-z.]+)</code>", log) == ["outbox.cancel", "webhook.disable"]
    assert "held messages for team ops" in log and "2 messages cancelled" in log


def test_the_cli_says_how_many_waiting_messages_a_removal_cancels(cli, web_settings, engine, token):
    add_team(engine, web_settings)
    with Session(engine) as s:
        ep = s.exec(select(WebhookEndpoint)).one()
        s.add(Delivery(idempotency_key=f"endpoint:{ep.id}|alert|event:1", channel="slack",
                       kind="alert", period="event:1", endpoint_id=ep.id))  # fmt: skip
        s.commit()
    done = cli("webhooks", "remove", "ops")
    assert done.exit_code == 0
    assert "Removed webhook ops; 1 waiting message(s) cancelled." in done.output


# --- in Chromium ----------------------------------------------------------------------------


@pytest.fixture
def loopback_server(loopback_settings, engine):
    """The app on 127.0.0.1 with settings that let webhooks reach 127.0.0.1 (the chat
    receiver), as `live_server` is for the default settings."""
    port = free_port()
    settings = loopback_settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    with serving(create_app(settings=settings, engine=engine), port) as server:
        server.settings = settings
        yield server


def alert(engine, settings, title: str, day: str) -> None:
    """A new event on hardware, as an import brings it: its instant alerts are queued."""
    record = {"title": title, "url": f"https://news.example/{day}/{len(title)}",
              "occurred_on": day}  # fmt: skip
    with Session(engine) as s:
        ingest_records(session=s, settings=settings, records=iter([("record 1", record)]))
        s.commit()


def fits(page) -> bool:
    """No horizontal scrolling."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_browser_add_test_disable_enable_and_remove_a_team(
    page, loopback_server, engine, token, chat_receiver, screenshot_dir
):
    settings = loopback_server.settings
    hook = "/slack/T000/B000/XXXXXXXXsecret42"
    browser_login(page, loopback_server, token, "/admin/webhooks")
    expect(page.get_by_role("heading", name="Teams", exact=True)).to_be_visible()
    expect(page.locator("#teams")).to_contain_text("No team yet.")

    # add a Slack team pointing at the receiver
    page.get_by_label("Name").fill("infra-slack")
    page.get_by_label("Platform").select_option("slack")
    page.get_by_label("Webhook URL").fill(chat_receiver.url(hook))
    page.get_by_label("Hardware").check()
    page.get_by_role("button", name="Add team").click()
    expect(page.get_by_role("status")).to_have_text("Team added.")
    expect(page.locator("#team-url")).to_have_text(
        re.compile(r"^http://127\.0\.0\.1:\d+/••••et42$")
    )
    assert "XXXXXXXX" not in page.content()

    # a test card: the receiver's answer on the page
    page.get_by_role("button", name="Send a test card").click()
    expect(page.locator("#test-answer")).to_contain_text("The platform accepted the test card.")
    expect(page.locator("#test-answer")).to_contain_text("HTTP 200: ok")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert len(chat_receiver.platforms.for_path(hook)) == 1
    shoot(page, "team", screenshot_dir)

    # disabled: a new alert is held, not sent
    page.get_by_text("Disable…").click()
    expect(page.get_by_text("are held, not lost")).to_be_visible()
    page.get_by_label("Reason").fill("channel is being moved")
    page.get_by_role("button", name="Yes, disable infra-slack").click()
    expect(page.get_by_role("status")).to_contain_text("Disabled: nothing is sent to this team")
    expect(page.locator("#team-state")).to_have_text("disabled")
    expect(page.locator("#team-disabled-reason")).to_have_text("channel is being moved")
    alert(engine, settings, "Chipmaker ships a new GPU", "2025-08-01")
    drain(engine, settings)
    assert len(chat_receiver.platforms.for_path(hook)) == 1
    page.reload()
    expect(page.locator("#team-held")).to_have_text("1")
    held = page.locator("#held tbody tr")
    expect(held).to_have_count(1)
    expect(held).to_contain_text("alert: Chipmaker ships a new GPU")

    # enabled: the page says how many are released; the worker delivers them
    page.get_by_role("button", name="Enable infra-slack and release 1").click()
    expect(page.get_by_role("status")).to_have_text(
        "Enabled: 1 message released and queued to send now."
    )
    drain(engine, settings)
    received = chat_receiver.platforms.for_path(hook)
    assert len(received) == 2 and "Chipmaker ships a new GPU" in received[1].body.decode()
    page.reload()
    expect(page.locator("#team-held")).to_have_text("0")
    expect(page.locator("#team-last-success")).to_contain_text(f"{utcnow():%Y-%m-%d}")

    # a second team, disabled after failures, for the list's health column; the screenshots
    with Session(engine) as s:
        cn = add_endpoint(session=s, settings=settings, ep_in=EndpointIn(
            name="cn-policy", platform="feishu", url=chat_receiver.url("/feishu/cn"),
            topics=["governance", "capital"], language="zh", mode="daily"))  # fmt: skip
        cn.consecutive_failures = 5
        s.add(Delivery(idempotency_key=f"endpoint:{cn.id}|digest-daily|2025-07-31",
                       channel="feishu", kind="digest-daily", period="2025-07-31",
                       endpoint_id=cn.id))  # fmt: skip
        s.flush()
        disable_endpoint(session=s, endpoint=cn, reason="the platform says the webhook is "
                         "gone: feishu code 19001: param invalid: incoming webhook access "
                         "token invalid")  # fmt: skip
        s.commit()
    page.get_by_role("link", name="Teams", exact=True).click()
    row = page.locator('#teams tr[data-team="infra-slack"]')
    expect(row).to_contain_text("enabled")
    expect(row).to_contain_text(f"{utcnow():%Y-%m-%d}")
    other = page.locator('#teams tr[data-team="cn-policy"]')
    expect(other.locator(".badge.st-disabled")).to_have_text("disabled")
    expect(other).to_contain_text("the platform says the webhook is gone")
    expect(other.locator('td[data-label="Held"]')).to_have_text("1")
    expect(other.locator('td[data-label="Failures"]')).to_have_text("5")
    shoot(page, "teams", screenshot_dir)
    for path in ("/admin/webhooks", "/admin/webhooks/infra-slack", "/admin/webhooks/cn-policy"):
        page.goto(loopback_server.url + path)
        page.set_viewport_size({"width": 390, "height": 900})
        assert fits(page), path
        page.set_viewport_size({"width": 1200, "height": 900})
        assert fits(page), path
    page.goto(loopback_server.url + "/admin/webhooks")

    # removed, after a confirmation that says what is cancelled
    page.get_by_role("link", name="infra-slack").click()
    page.get_by_text("Disable…").click()
    page.get_by_role("button", name="Yes, disable infra-slack").click()
    alert(engine, settings, "Another accelerator launch", "2025-08-02")
    page.reload()
    page.get_by_text("Remove…").click()
    expect(page.locator("#remove")).to_contain_text(
        "The 1 message waiting for it (0 queued, 1 held) is cancelled and never sent"
    )
    page.get_by_role("button", name="Yes, remove infra-slack and cancel 1").click()
    expect(page.get_by_role("status")).to_have_text(
        "Team removed; 1 message waiting for it cancelled."
    )
    expect(page.locator("#teams tbody tr")).to_have_count(1)
    with Session(engine) as s:
        statuses = s.exec(
            select(Delivery.status).where(Delivery.channel == "slack").order_by(Delivery.id)
        ).all()
    assert statuses == ["sent", "cancelled"]

    page.get_by_role("link", name="Audit", exact=True).click()
    actions = page.locator("td code").all_inner_texts()
    assert actions[:5] == ["webhook.remove", "webhook.disable", "webhook.enable",
                           "webhook.disable", "webhook.add"]  # fmt: skip
