"""The admin web UI: sessions, CSRF, escaping (TestClient) and every page in real Chromium."""

from __future__ import annotations

import datetime as dt
import random
import re
import time

import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from playwright.sync_api import expect
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.core.admin_tokens import create_token, revoke_token
from newsletter.core.keys import ADMIN_SESSION, derive_key
from newsletter.core.models import (
    AdminToken,
    Delivery,
    DeliveryAttempt,
    Event,
    EventTopic,
    Topic,
    utcnow,
)
from newsletter.ingest.events import EventIn, add_event, topic_slugs
from newsletter.ingest.takes import get_take
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.topics.catalogue import get_topic
from newsletter.web.app import create_app
from tests.support.planning import plan_in
from tests.support.web import ADMIN_PAGES, csrf_of
from tests.support.workers import drain


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


def login(client: TestClient, token: str) -> str:
    """Log the client in; returns the session's CSRF token."""
    form = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/admin/").text)


def topic_rules(engine, slug: str) -> dict:
    with Session(engine) as session:
        return get_topic(session=session, slug=slug).rules


# --- access control and CSRF (TestClient) ----------------------------------------------------


def test_pages_need_a_session(client, token):
    for path in ADMIN_PAGES:
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/admin/login"), path
    response = client.get("/admin/topics", follow_redirects=False)
    assert response.headers["location"] == "/admin/login?next=%2Fadmin%2Ftopics"
    response = client.post("/admin/send", data={"frequency": "monthly"}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login"


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(client, token):
    form = client.get("/admin/login")
    bad = client.post("/admin/login", data={"token": "nla_nope", "csrf_token": csrf_of(form.text)})
    assert bad.status_code == 401
    assert "unknown or revoked" in bad.text
    response = client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(bad.text), "next": "/admin/events"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/events"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("newsletter_admin=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Max-Age=43200" in cookie
    assert "Path=/admin" in cookie
    page = client.get("/admin/")
    assert page.status_code == 200
    assert "Deliveries" in page.text
    out = client.post(
        "/admin/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    assert client.get("/admin/", follow_redirects=False).status_code == 303


def test_forged_expired_and_revoked_sessions_go_to_login(
    client, engine, web_settings, token, monkeypatch
):
    login(client, token)
    real = client.cookies.get("newsletter_admin")
    salt = "newsletter.admin-session"
    right = URLSafeTimedSerializer(derive_key(web_settings.secret_key, ADMIN_SESSION), salt=salt)
    sid = right.loads(real)["sid"]
    with Session(engine) as session:
        token_id = session.exec(select(AdminToken.id).where(AdminToken.name == "editor")).one()
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now - 13 * 3600)
    expired = right.dumps({"sid": sid})
    monkeypatch.undo()
    cookies = {
        "garbage": "not-a-cookie",
        "wrong key": URLSafeTimedSerializer("not-the-secret", salt=salt).dumps({"sid": sid}),
        "master key": URLSafeTimedSerializer(web_settings.secret_key, salt=salt).dumps(
            {"sid": sid}
        ),
        "wrong salt": URLSafeTimedSerializer(
            derive_key(web_settings.secret_key, ADMIN_SESSION), salt="something-else"
        ).dumps({"sid": sid}),
        "unknown session": right.dumps({"sid": "made-up"}),
        "a token id": right.dumps({"tid": token_id, "n": "x"}),
        "not a dict": right.dumps([sid]),
        "expired": expired,
    }
    for name, value in cookies.items():
        client.cookies.clear()
        client.cookies.set("newsletter_admin", value, path="/admin")
        response = client.get("/admin/topics", follow_redirects=False)
        assert response.status_code == 303, name
        assert response.headers["location"].startswith("/admin/login"), name
    # the real cookie stops working once its token is revoked
    client.cookies.clear()
    client.cookies.set("newsletter_admin", real, path="/admin")
    assert client.get("/admin/topics", follow_redirects=False).status_code == 200
    with Session(engine) as session:
        revoke_token(session=session, name="editor")
        session.commit()
    assert client.get("/admin/topics", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_rejected(client, engine, token):
    client.get("/admin/login")
    no_csrf = client.post("/admin/login", data={"token": token})
    assert no_csrf.status_code == 403
    assert "newsletter_admin=" not in ";".join(no_csrf.headers.get_list("set-cookie"))
    csrf = login(client, token)
    before = topic_rules(engine, "hardware")
    data = {"name_en": "Hacked", "name_zh": "黑", "include": "pwned", "exclude": "", "regex": ""}
    for extra in ({}, {"csrf_token": ""}, {"csrf_token": "0" * 64}):
        response = client.post("/admin/topics/hardware", data=data | extra, follow_redirects=False)
        assert response.status_code == 403, extra
    for path, form_data in [
        ("/admin/send", {"frequency": "monthly", "period": "2025-07"}),
        ("/admin/take", {"period": "2025-07", "language": "en", "body": "x"}),
        ("/admin/events/retag", {}),
        ("/admin/topics/hardware/check", {"include": "x"}),
        ("/admin/logout", {}),
    ]:
        assert client.post(path, data=form_data, follow_redirects=False).status_code == 403, path
    assert topic_rules(engine, "hardware") == before
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 0
    # a token from another session does not work either
    other = TestClient(client.app)
    other_csrf = login(other, token)
    assert other_csrf != csrf
    response = client.post(
        "/admin/topics/hardware", data=data | {"csrf_token": other_csrf}, follow_redirects=False
    )
    assert response.status_code == 403
    ok = client.post(
        "/admin/topics/hardware", data=data | {"csrf_token": csrf}, follow_redirects=False
    )
    assert ok.status_code == 303
    assert topic_rules(engine, "hardware")["include"] == ["pwned"]


# --- escaping and errors (TestClient) -------------------------------------------------------


def test_user_strings_are_escaped(client, engine, token):
    with Session(engine) as session:
        add_event(
            session=session,
            event_in=EventIn(
                title={"en": "<script>alert('x')</script> Nvidia chips <b>deal</b>"},
                url="https://news.example.com/xss",
                occurred_on=dt.date(2025, 7, 30),
                source="<img src=x onerror=alert(1)>",
            ),
        )
        session.commit()
    csrf = login(client, token)
    page = client.get("/admin/events?month=2025-07").text
    assert "&lt;script&gt;alert(" in page
    assert "<script>alert(" not in page
    assert "<b>deal</b>" not in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    check = client.post(
        "/admin/topics/hardware/check",
        data={"csrf_token": csrf, "include": "<b>deal</b>", "regex": "(?i)<script>"},
    )
    assert check.status_code == 200
    assert "<script>" not in check.text and "&lt;script&gt;" in check.text
    preview = client.post(
        "/admin/take/preview", data={"csrf_token": csrf, "body": "**bold** <script>x()</script>"}
    )
    assert "<strong>bold</strong>" in preview.text
    assert "<script>" not in preview.text


def test_bad_rules_are_shown_inline_never_a_500(client, engine, token):
    csrf = login(client, token)
    before = topic_rules(engine, "hardware")
    check = client.post(
        "/admin/topics/hardware/check", data={"csrf_token": csrf, "include": "chip", "regex": "(["}
    )
    assert check.status_code == 200
    assert "invalid regex" in check.text
    form = {"csrf_token": csrf, "name_en": "Chips", "name_zh": "芯片", "description": ""}
    for fields, message in [
        ({"include": "chip", "regex": "(unclosed"}, "invalid regex"),
        ({"include": "chip\n*", "regex": ""}, "empty keyword"),
        ({"include": "chip", "regex": "", "name_en": "   "}, "a name is required"),
    ]:
        response = client.post("/admin/topics/hardware", data=form | fields)
        assert response.status_code == 422
        assert message in response.text
        assert "Nothing was saved" in response.text
    assert topic_rules(engine, "hardware") == before
    assert client.get("/admin/topics/nope").status_code == 404
    assert "must be YYYY-MM" in client.get("/admin/events?month=2025-13").text
    assert "unknown topic" in client.get("/admin/events?topic=nope").text
    assert "a monthly period is" in client.get("/admin/send?frequency=monthly&period=July").text
    assert "no subscriber" in client.get("/admin/preview?period=2025-07&email=x@example.com").text


def test_sharp_take_is_saved_and_previewed(client, engine, token):
    csrf = login(client, token)
    body = "## Chips everywhere\n\nThe month of **export licences**."
    preview = client.post(
        "/admin/take",
        data={
            "csrf_token": csrf,
            "period": "2025-08",
            "language": "en",
            "body": body,
            "action": "preview",
        },
    )
    assert "<h2>Chips everywhere</h2>" in preview.text
    with Session(engine) as session:
        assert get_take(session=session, period="2025-08", language="en") is None
    saved = client.post(
        "/admin/take",
        data={"csrf_token": csrf, "period": "2025-08", "language": "en", "body": body},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = client.get(saved.headers["location"]).text
    assert "Saved the en take for 2025-08" in page
    assert "<strong>export licences</strong>" in page
    with Session(engine) as session:
        assert get_take(session=session, period="2025-08", language="en").body_markdown == body
    bad = client.post(
        "/admin/take", data={"csrf_token": csrf, "period": "2025-8", "language": "en", "body": body}
    )
    assert bad.status_code == 422
    assert "a monthly period is" in bad.text


# --- in Chromium ----------------------------------------------------------------------------


def browser_login(page, live_server, token: str, path: str = "/admin/") -> None:
    page.goto(live_server.url + path)
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + path)


def test_browser_login(page, live_server, token):
    page.goto(live_server.url + "/admin/topics")
    assert "/admin/login" in page.url
    page.fill("#token", "nla_not-a-real-token")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_contain_text("unknown or revoked")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/admin/topics")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.get_by_role("heading", name="Deliveries", exact=True)).to_be_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "newsletter_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/admin/login$"))
    page.goto(live_server.url + "/admin/")
    assert "/admin/login" in page.url


def test_browser_topic_edit_with_live_check(page, live_server, engine, token):
    with Session(engine) as session:
        glasses = session.exec(select(Event).where(Event.url.contains("quark-ai-glasses"))).one()
        assert "open-source" not in topic_slugs(session=session, event=glasses)
    browser_login(page, live_server, token, "/admin/topics/open-source")
    include = page.locator("#include")
    include.fill(include.input_value() + "\neyewear")
    match = page.locator(f"#check-matches li[data-event-id='{glasses.id}']")
    expect(match).to_contain_text("Quark AI glasses")
    expect(match).to_contain_text('keyword "eyewear"')
    expect(match.locator(".badge.new")).to_be_visible()
    page.fill("#regex", "(unclosed")
    expect(page.locator("#check-result [role=alert]")).to_contain_text("invalid regex")
    page.fill("#regex", "")
    expect(page.locator("#check-matches")).to_be_visible()
    page.fill("#name_en", "Open source & open weights")
    page.get_by_role("button", name="Save topic").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    with Session(engine) as session:
        topic = get_topic(session=session, slug="open-source")
        assert "eyewear" in topic.rules["include"]
        assert topic.name_en == "Open source & open weights"
        assert "open-source" not in topic_slugs(session=session, event=glasses)
    page.get_by_role("button", name="Retag now").click()
    expect(page.get_by_role("status")).to_contain_text("events examined")
    with Session(engine) as session:
        assert "open-source" in topic_slugs(session=session, event=glasses)
        reason = session.exec(
            select(EventTopic.reason)
            .join(Topic, Topic.id == EventTopic.topic_id)
            .where(EventTopic.event_id == glasses.id, Topic.slug == "open-source")
        ).one()
        assert "eyewear" in reason
    page.goto(live_server.url + "/admin/events?topic=open-source&month=2025-07")
    expect(page.locator(f"tr[data-event-id='{glasses.id}']")).to_contain_text('keyword "eyewear"')


def test_browser_topic_editor_suggests_keywords_from_hand_picked_events(
    page, live_server, engine, token
):
    with Session(engine) as session:
        ids = []
        for n, (en, zh) in enumerate(
            [
                ("Province sets up a sandbox for AI medical devices", "某省设立AI医疗器械沙盒"),
                (
                    "Pilot sandbox lets banks test AI credit models",
                    "试点沙盒允许银行测试AI信贷模型",
                ),
            ]
        ):
            event_in = EventIn(
                title={"en": en, "zh": zh},
                url=f"https://news.example.com/sandbox-{n}",
                occurred_on=dt.date(2025, 7, 28),
                topics=["governance"],
            )
            ids.append(add_event(session=session, event_in=event_in).event.id)
        session.commit()
    browser_login(page, live_server, token, "/admin/topics/governance")
    card = page.locator("#suggestions")
    expect(card).to_contain_text("The rules miss 2 of the 2 events added to this topic by hand")
    add = card.get_by_role("button", name="Add “sandbox” to the include keywords")
    expect(add).to_be_visible()
    expect(card.locator("li[data-term='沙盒']")).to_contain_text("in 2 missed events")
    add.click()
    expect(add).to_be_disabled()
    assert page.locator("#include").input_value().splitlines()[-1] == "sandbox"
    # the live check runs with the new keyword: the hand-picked events would now match
    for event_id in ids:
        match = page.locator(f"#check-matches li[data-event-id='{event_id}']")
        expect(match).to_contain_text('keyword "sandbox"')
    page.get_by_role("button", name="Save topic").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert "sandbox" in topic_rules(engine, "governance")["include"]
    expect(page.locator("#suggestions")).to_contain_text(
        "The rules already match all 2 events added to this topic by hand"
    )


def test_browser_digest_preview(page, live_server, engine, token):
    with Session(engine) as session:
        hardware = get_topic(session=session, slug="hardware")
        event = session.exec(
            select(Event)
            .join(EventTopic, EventTopic.event_id == Event.id)
            .where(EventTopic.topic_id == hardware.id, Event.title["zh"].is_not(None))
            .order_by(Event.importance.desc(), Event.id)
        ).first()
        governance_only = session.exec(
            select(Event).where(Event.url.contains("new-zealand-light-touch-strategy"))
        ).one()
    browser_login(page, live_server, token, "/admin/preview")
    page.select_option("#frequency", "monthly")
    page.fill("#period", "2025-07")
    page.fill("#email", "reader.zh@example.com")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-subject")).to_contain_text("2025年7月")
    iframe = page.locator("iframe.digest")
    assert iframe.get_attribute("sandbox") is not None
    assert "allow-scripts" not in iframe.get_attribute("sandbox")
    frame = page.frame_locator("iframe.digest")
    expect(frame.locator("body")).to_contain_text(event.title["zh"])
    # a governance story is not among this reader's topics
    assert governance_only.title["zh"] not in frame.locator("body").inner_text()
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 0


def test_browser_send_now_with_confirmation(page, live_server, engine, token):
    browser_login(page, live_server, token, "/admin/send")
    page.select_option("#frequency", "monthly")
    page.fill("#period", "2025-07")
    page.get_by_role("button", name="Review (dry run)").click()
    expect(page.locator("#dry-recipients")).to_have_text("2")
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 0
    page.locator("#confirm-send").click()
    expect(page.locator("#enqueued-count")).to_have_text("2")
    with Session(engine) as session:
        rows = session.exec(select(Delivery)).all()
    assert (
        sorted((r.kind, r.period, r.status) for r in rows)
        == [("digest-monthly", "2025-07", "queued")] * 2
    )
    # a second review says they are queued already; confirming adds nothing
    page.goto(live_server.url + "/admin/send?frequency=monthly&period=2025-07")
    page.locator("#confirm-send").click()
    expect(page.locator("#enqueued-count")).to_have_text("0")
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 2


def history_key(channel: str, n: int, at: dt.datetime) -> str:
    if channel == "email":
        return f"subscriber:{n % 97 + 3}|alert|{at:%Y-%m-%d}#{n}"
    return f"endpoint:{1 if channel == 'slack' else 2}|alert|batch:{n}"


def add_history(engine, days: int = 14, seed: int = 7) -> None:
    """Plausible outbox rows for the last two weeks, so the dashboard has something to show."""
    rng = random.Random(seed)
    now = utcnow()
    with Session(engine) as session:
        n = 0
        for ago in range(days - 1, 0, -1):
            day = now - dt.timedelta(days=ago)
            for channel, base in (("email", 26), ("slack", 6), ("feishu", 4)):
                for _ in range(rng.randint(base // 2, base)):
                    n += 1
                    at = day.replace(hour=8, minute=0) + dt.timedelta(minutes=rng.randint(0, 600))
                    roll = rng.random()
                    status, outcomes = "sent", ["sent"]
                    if roll < 0.08:
                        status, outcomes = "sent", ["temporary", "sent"]
                    elif roll < 0.11:
                        status, outcomes = "failed", ["permanent"]
                    elif roll < 0.13 and channel == "email":
                        status, outcomes = "suppressed", []
                    delivery = Delivery(
                        idempotency_key=history_key(channel, n, at), channel=channel, kind="alert",
                        status=status, attempts=len(outcomes), created_at=at, next_attempt_at=at,
                        sent_at=at if status == "sent" else None,
                    )  # fmt: skip
                    session.add(delivery)
                    session.flush()
                    for i, outcome in enumerate(outcomes):
                        error = {"temporary": "451 4.7.1 try again later" if channel == "email"
                                 else "HTTP 429: rate limited, retry after 30 s",
                                 "permanent": "550 5.1.1 mailbox unavailable" if channel == "email"
                                 else "HTTP 404: no such webhook"}.get(outcome)  # fmt: skip
                        session.add(
                            DeliveryAttempt(
                                delivery_id=delivery.id, outcome=outcome, error=error,
                                started_at=at + dt.timedelta(minutes=5 * i),
                                finished_at=at + dt.timedelta(minutes=5 * i, seconds=1),
                                worker="history",
                            )
                        )  # fmt: skip
        for i, (channel, status, attempts) in enumerate(
            [("email", "queued", 1), ("slack", "queued", 2), ("feishu", "held", 0),
             ("feishu", "held", 0), ("email", "queued", 0)]
        ):  # fmt: skip
            session.add(
                Delivery(idempotency_key=f"pending:{i}", channel=channel, kind="alert",
                         status=status, attempts=attempts, next_attempt_at=now + dt.timedelta(hours=1))
            )  # fmt: skip
        session.commit()


def test_dashboard_screenshot(page, live_server, engine, token, smtp_server, screenshot_dir):
    settings = live_server.settings
    with Session(engine, expire_on_commit=False) as session:
        summary = plan_in(session, settings)  # fmt: skip
    assert summary.enqueued == 2
    drain(engine, settings)
    assert len(smtp_server.recorder.received) == 2
    add_history(engine)
    with Session(engine) as session:
        sent = session.exec(
            select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        ).one()
        retrying = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == "queued", Delivery.attempts > 0)
        ).one()
    browser_login(page, live_server, token)
    expect(page.locator(".value[data-status=sent]")).to_have_text(f"{sent:,}")
    expect(page.locator(".value[data-status=retrying]")).to_have_text(str(retrying))
    expect(page.locator(".value[data-status=held]")).to_have_text("2")
    assert page.locator("svg.chart rect.s-sent").count() == 14
    expect(page.locator("svg.chart")).to_contain_text("Today")
    shot = screenshot_dir / "admin-dashboard.png"
    page.set_viewport_size({"width": 1100, "height": 900})
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
