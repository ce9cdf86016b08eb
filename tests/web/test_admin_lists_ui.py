"""The admin console's subscriber and outbox pages: TestClient for access, CSRF and bad
input; Chromium for the editor's path (log in, search, edit, see the change; filter the
failed rows, retry one, see it queued) and the screenshots at 390 and 1200 px."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlmodel import Session, select

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, address_hash
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    Subscriber,
    Suppression,
    WebhookEndpoint,
    utcnow,
)
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.planning import plan_in
from tests.support.web import csrf_of
from tests.support.workers import drain
from tests.web.test_admin_ui import browser_login, login

WIDTHS = (390, 1200)


@pytest.fixture
def token(engine) -> str:
    """Sample topics and July 2025 events, the two demo readers, and an admin token."""
    with Session(engine, expire_on_commit=False) as session:
        load_sample(session=session)
        add_demo_readers(session=session)
        _, token = create_token(session=session, name="editor")
        session.commit()
    return token


@pytest.fixture
def client(web_settings, engine) -> TestClient:
    return TestClient(create_app(settings=web_settings, engine=engine))


def subscriber_id(engine, email: str) -> int:
    with Session(engine) as s:
        return s.exec(select(Subscriber.id).where(Subscriber.email == email)).one()


def add_readers(engine, n: int = 60) -> None:
    """`n` more readers beside the two demo ones, so the list has a second page."""
    with Session(engine) as s:
        for i in range(n):
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(
                    email=f"reader{i:03d}@example.org",
                    name=f"Reader {i:03d}",
                    language="zh" if i % 3 == 0 else "en",
                    frequency=("monthly", "weekly", "daily")[i % 3],
                    topics=["hardware"] if i % 2 else ["governance", "capital"],
                ),
            )
        s.commit()


def add_team_alerts(engine) -> None:
    """Two team endpoints and their alerts for the sample events: sent, failed, queued."""
    now = utcnow()
    with Session(engine) as s:
        teams = [
            WebhookEndpoint(name="cn-policy-team", platform="feishu", url="https://example.com/f",
                            language="zh"),
            WebhookEndpoint(name="research-slack", platform="slack", url="https://example.com/s"),
        ]  # fmt: skip
        s.add_all(teams)
        s.flush()
        events = s.exec(select(Event.id).order_by(Event.id).limit(8)).all()
        for n, event_id in enumerate(events):
            team = teams[n % 2]
            status = ("sent", "sent", "failed", "queued")[n % 4]
            at = now - dt.timedelta(hours=8 - n)
            d = Delivery(
                idempotency_key=f"endpoint:{team.id}|alert|event:{event_id}",
                channel=team.platform, kind="alert", period=f"event:{event_id}",
                endpoint_id=team.id, status=status, attempts=0 if status == "queued" else 1,
                created_at=at, next_attempt_at=at, sent_at=at if status == "sent" else None,
                last_error="HTTP 404: the webhook no longer exists" if status == "failed" else None,
            )  # fmt: skip
            s.add(d)
            s.flush()
            if status != "queued":
                s.add(
                    DeliveryAttempt(
                        delivery_id=d.id, started_at=at, finished_at=at, worker="worker-1",
                        outcome="sent" if status == "sent" else "permanent",
                        status_code=200 if status == "sent" else 404, error=d.last_error,
                    )
                )  # fmt: skip
        s.commit()


# --- TestClient -----------------------------------------------------------------------------


def test_list_pages_and_export(client, engine, token):
    add_readers(engine)
    login(client, token)
    page = client.get("/admin/subscribers")
    assert page.status_code == 200
    assert 'type="search"' in page.text and "reader.en@example.com" in page.text
    assert page.text.count("data-subscriber-id=") == 50
    next_url = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
    second = client.get(next_url)
    assert second.text.count("data-subscriber-id=") == 12 and 'rel="next"' not in second.text
    found = client.get("/admin/subscribers", params={"q": "Reader 00", "language": "zh"})
    assert found.text.count("data-subscriber-id=") == 4  # 000, 003, 006, 009
    bad = client.get("/admin/subscribers", params={"topic": "nope"})
    assert bad.status_code == 400 and "unknown topic" in bad.text
    bad = client.get("/admin/subscribers", params={"status": "gone"})
    assert bad.status_code == 400 and "status must be one of" in bad.text
    export = client.get("/admin/subscribers/export.csv", params={"q": "reader.zh"})
    assert [r["email"] for r in csv.DictReader(io.StringIO(export.text))] == [
        "reader.zh@example.com"
    ]
    everyone = client.get("/admin/subscribers/export.csv")
    assert len(list(csv.DictReader(io.StringIO(everyone.text)))) == 62
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_actions_need_the_csrf_token_and_say_what_they_did(client, engine, token):
    login(client, token)
    sub = subscriber_id(engine, "reader.en@example.com")
    page = client.get(f"/admin/subscribers/{sub}")
    csrf = csrf_of(page.text)
    assert "Yes, unsubscribe reader.en@example.com" in page.text
    assert "as if they had unsubscribed themselves" in page.text
    forged = client.post(f"/admin/subscribers/{sub}/suppress", data={"csrf_token": "x"})
    assert forged.status_code == 403
    done = client.post(f"/admin/subscribers/{sub}/suppress", data={"csrf_token": csrf})
    assert "Suppressed: nothing more is mailed" in done.text
    assert "Lift suppression" in done.text
    done = client.post(f"/admin/subscribers/{sub}/lift", data={"csrf_token": csrf})
    assert "The suppression is lifted." in done.text
    refused = client.post(f"/admin/subscribers/{sub}/confirmation", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "only a reader who signed up" in refused.text
    bad = client.post(
        f"/admin/subscribers/{sub}",
        data={"csrf_token": csrf, "timezone": "Mars/Base", "language": "en",
              "frequency": "monthly", "topics": ["hardware"]},
    )  # fmt: skip
    assert bad.status_code == 422 and "unknown time zone" in bad.text
    none = client.post(
        f"/admin/subscribers/{sub}",
        data={"csrf_token": csrf, "timezone": "UTC", "language": "en", "frequency": "monthly"},
    )
    assert none.status_code == 422 and "Choose at least one topic." in none.text
    done = client.post(f"/admin/subscribers/{sub}/unsubscribe", data={"csrf_token": csrf})
    assert "Unsubscribed" in done.text and 'id="sub-status">unsubscribed' in done.text
    log = client.get("/admin/audit")
    assert log.status_code == 200
    actions = re.findall(r"<code>([a-z.]+)</code>", log.text)
    assert actions == ["subscriber.unsubscribed", "subscriber.lifted", "subscriber.suppressed"]
    assert log.text.count('<td data-label="Token">editor</td>') == 3


def test_lifting_a_complaint_needs_the_box_saying_they_asked(client, engine, token):
    login(client, token)
    sub = subscriber_id(engine, "reader.en@example.com")
    # an active reader whose address is suppressed for a complaint (one disabled by it is
    # taken back with Re-enable instead: tests/web/test_admin_reader_bounces.py)
    with Session(engine) as s:
        reader = s.get(Subscriber, sub)
        s.add(Suppression(address_hash=address_hash(reader.email), reason="complaint"))
        s.commit()
    page = client.get(f"/admin/subscribers/{sub}")
    assert "They asked for our mail again" in page.text
    csrf = csrf_of(page.text)
    refused = client.post(f"/admin/subscribers/{sub}/lift", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "reported our mail as spam" in refused.text
    done = client.post(f"/admin/subscribers/{sub}/lift", data={"csrf_token": csrf, "force": "1"})
    assert "The suppression is lifted." in done.text
    with Session(engine) as s:
        assert s.get(Subscriber, sub).status == "active"


def test_outbox_page_names_rows_and_refuses_bad_filters(client, engine, token):
    with Session(engine) as s:
        s.add(WebhookEndpoint(name="cn-team", platform="feishu", url="https://example.com/h"))
        s.commit()
        ep = s.exec(select(WebhookEndpoint)).one()
        s.add(Delivery(idempotency_key=f"endpoint:{ep.id}|alert|event:1", channel="feishu",
                       kind="alert", period="event:1", endpoint_id=ep.id))  # fmt: skip
        s.commit()
    login(client, token)
    page = client.get("/admin/outbox")
    assert "cn-team" in page.text and "alert: " in page.text
    assert "endpoint:" not in page.text
    for params, reason in (
        ({"recipient": "nobody@example.com"}, "no reader has the address"),
        ({"from": "July"}, "must be a date like 2025-07-31"),
        ({"from": "2025-07-02", "to": "2025-07-01"}, "after it ends"),
        ({"status": "lost"}, "status must be one of"),
    ):
        r = client.get("/admin/outbox", params=params)
        assert r.status_code == 400 and reason in r.text, params
    csrf = csrf_of(page.text)
    r = client.post("/admin/outbox/cancel", data={"csrf_token": csrf})
    assert r.status_code == 400
    r = client.post(
        "/admin/outbox/cancel",
        data={
            "csrf_token": csrf,
            "recipient": "cn-team",
            "back": "/admin/outbox?recipient=cn-team",
        },
    )
    assert "1 queued delivery cancelled." in r.text and "cancelled" in r.text


# --- in Chromium ----------------------------------------------------------------------------


def shoot(page, name: str, folder) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        shot = folder / f"admin-{name}-{width}.png"
        height = min(page.evaluate("document.documentElement.scrollHeight"), 1600)
        clip = {"x": 0, "y": 0, "width": width, "height": height}
        page.screenshot(path=str(shot), full_page=True, clip=clip)  # a long list: its top
        assert shot.stat().st_size > 5_000
    page.set_viewport_size({"width": 1200, "height": 900})


def test_browser_search_and_edit_a_subscriber(page, live_server, engine, token, screenshot_dir):
    add_readers(engine)
    browser_login(page, live_server, token)
    page.get_by_role("link", name="Subscribers").click()
    expect(page.get_by_role("heading", name="Subscribers")).to_be_visible()
    shoot(page, "subscribers", screenshot_dir)
    page.get_by_label("Search").fill("reader.zh")
    page.get_by_label("Search").press("Enter")
    rows = page.locator("#subscribers tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("link", name="reader.zh@example.com").click()
    expect(page.locator("#sub-topics")).to_have_text("hardware, open-source")
    page.get_by_label("Capital").check()
    page.get_by_label("Open source", exact=False).uncheck()
    page.get_by_label("Frequency").select_option("weekly")
    page.get_by_label("Time zone").fill("Asia/Tokyo")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.locator("#sub-topics")).to_have_text("capital, hardware")
    with Session(engine) as s:
        sub = s.exec(select(Subscriber).where(Subscriber.email == "reader.zh@example.com")).one()
        assert (sub.frequency, sub.timezone) == ("weekly", "Asia/Tokyo")
    # a destructive action states its effect and waits for the second click
    page.get_by_text("Suppress…").click()
    expect(page.get_by_text("nothing more is mailed to it")).to_be_visible()
    shoot(page, "subscriber", screenshot_dir)
    page.get_by_role("button", name="Yes, suppress this address").click()
    expect(page.locator("#sub-suppressed")).to_have_text("admin")
    # keyboard: the search box, the filters and the button are reachable with Tab
    page.goto(live_server.url + "/admin/subscribers")
    page.get_by_label("Search").focus()
    page.keyboard.type("reader00")
    for _ in range(5):
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Search")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#subscribers tbody tr")).to_have_count(10)


def test_browser_outbox_filter_failed_and_retry_one(
    page,
    live_server,
    engine,
    token,
    smtp_server,
    screenshot_dir,
):
    settings = live_server.settings
    smtp_server.recorder.script["reader.en@example.com"] = ["550 5.1.1 no such user"]
    with Session(engine, expire_on_commit=False) as session:
        assert plan_in(session, settings).enqueued == 2
    drain(engine, settings)
    add_team_alerts(engine)
    browser_login(page, live_server, token, "/admin/outbox")
    shoot(page, "outbox", screenshot_dir)
    page.get_by_label("Status").select_option("failed")
    page.get_by_label("Recipient").fill("reader.en@example.com")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("#outbox tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("July 2025 monthly digest (en)")
    expect(row).to_contain_text("550")
    row.get_by_role("link", name="July 2025 monthly digest (en)").click()
    expect(page.locator("#attempts")).to_contain_text("permanent")
    expect(page.locator("#attempts")).to_contain_text("550 5.1.1")
    shoot(page, "delivery", screenshot_dir)
    page.go_back()
    row.get_by_role("button", name=re.compile("^Retry delivery")).click()
    expect(page.get_by_role("status")).to_contain_text("1 failed delivery queued again")
    page.get_by_label("Status").select_option("queued")
    page.get_by_role("button", name="Filter").click()
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("queued")
    with Session(engine) as s:
        d = s.exec(select(Delivery).where(Delivery.kind == "digest-monthly",
                                          Delivery.status == "queued")).one()  # fmt: skip
        assert d.attempts == 0


def test_retry_every_failed_row_in_the_filter_and_cancel_one(client, engine, token):
    add_team_alerts(engine)  # cn-policy-team: 2 failed, 2 sent; research-slack: 2 queued, 2 sent
    login(client, token)
    page = client.get("/admin/outbox", params={"recipient": "cn-policy-team"})
    assert "Retry 2 failed…" in page.text and "queued…" not in page.text
    assert "queues again, due now, the <strong>2</strong> failed deliveries" in page.text
    csrf = csrf_of(page.text)
    back = "/admin/outbox?recipient=cn-policy-team"
    done = client.post(
        "/admin/outbox/retry",
        data={"csrf_token": csrf, "recipient": "cn-policy-team", "back": back},
    )
    assert "2 failed deliveries queued again." in done.text
    with Session(engine) as s:
        left = s.exec(select(Delivery.id).where(Delivery.status == "failed")).all()
    page = client.get("/admin/outbox", params={"recipient": "research-slack"})
    assert "Cancel 2 queued…" in page.text and "they will never be sent" in page.text
    with Session(engine) as s:
        queued = s.exec(
            select(Delivery.id).where(Delivery.status == "queued").order_by(Delivery.id)
        ).all()
    assert len(queued) == 4 and left == []
    detail = client.get(f"/admin/outbox/{queued[0]}")
    assert "This cancels" in detail.text and "never be sent" in detail.text
    done = client.post(f"/admin/outbox/{queued[0]}/cancel", data={"csrf_token": csrf})
    assert "1 queued delivery cancelled." in done.text
    assert 'id="delivery-status">cancelled' in done.text
    again = client.post(f"/admin/outbox/{queued[0]}/cancel", data={"csrf_token": csrf})
    assert again.status_code == 409 and "this one is cancelled" in again.text
    sent = client.post(f"/admin/outbox/{queued[1]}/retry", data={"csrf_token": csrf})
    assert sent.status_code == 409 and "only a failed delivery is retried" in sent.text
