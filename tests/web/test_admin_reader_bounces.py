"""A reader's bounces on their admin page: real digests went out over SMTP, a real DSN (or
ARF complaint) came back and disabled the reader; the editor sees the history and the
bounce on the delivery, re-enables them (a complainer only when forced), and the decision
is in the bounce history and the audit log."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlmodel import Session, select

from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Delivery
from newsletter.feedback.process import process_message
from newsletter.web.app import create_app
from tests.feedback.test_bounces import (
    make_arf,
    make_dsn,
    reader,
    sent,  # noqa: F401 - a fixture
    settings_for,
    suppressed,
)
from tests.web.test_admin_lists_ui import shoot
from tests.web.test_admin_ui import browser_login, login


@pytest.fixture
def token(engine) -> str:
    with Session(engine) as s:
        _, token = create_token(session=s, name="support-desk")
        s.commit()
    return token


def returned(engine, db_url, raw: bytes) -> str:
    """Process a returned message as `bounces import` does; returns what was done."""
    with Session(engine) as s:
        result = process_message(s, settings_for(db_url), raw)
        s.commit()
    return result.action


def audit_of(engine) -> list[tuple[str, str, str]]:
    with Session(engine) as s:
        rows = s.exec(select(AdminAudit).order_by(AdminAudit.id)).all()
        return [(a.token_name, a.action, a.target) for a in rows]


def test_browser_see_the_bounces_and_re_enable_a_reader(
    sent,  # noqa: F811 - the fixture
    engine,
    db_url,
    page,
    live_server,
    token,
    screenshot_dir,
):
    returned(engine, db_url, make_dsn(sent["ada@example.com"], "ada@example.com"))
    ada = reader(engine, "ada@example.com")
    assert ada.status == "disabled" and suppressed(engine, ada.email) == "bounced"

    browser_login(page, live_server, token, "/admin/subscribers?q=ada%40example.com")
    page.get_by_role("link", name="ada@example.com").click()
    expect(page.locator("#sub-status")).to_have_text("disabled")
    expect(page.locator("#sub-score")).to_have_text("1")
    expect(page.locator("#sub-disabled-reason")).to_contain_text("hard bounce: 550 5.1.1")
    expect(page.locator("#sub-disabled")).to_contain_text("UTC")
    history = page.locator("#bounces tbody tr")
    expect(history).to_have_count(1)
    expect(history).to_contain_text("hard")
    expect(history).to_contain_text("5.1.1")
    expect(history.locator("td[data-label=Source]")).to_have_text("import")
    # the bounce is on the delivery it answers
    expect(page.locator("#deliveries tbody tr").first).to_contain_text("hard bounce received")
    # no second way round the history: lifting the suppression is the re-enable itself
    expect(page.get_by_text("Lift suppression…")).to_have_count(0)
    page.get_by_text("Re-enable…").click()
    expect(page.get_by_text("their bounce score goes back to 0")).to_be_visible()
    expect(page.locator("#force")).to_have_count(0)  # a bounce, not a complaint
    shoot(page, "subscriber-bounces", screenshot_dir)
    page.get_by_role("button", name="Yes, re-enable ada@example.com").click()

    expect(page.get_by_role("status")).to_contain_text("Re-enabled")
    expect(page.locator("#sub-status")).to_have_text("active")
    expect(page.locator("#sub-score")).to_have_text("0")
    expect(page.locator("#sub-suppressed")).to_have_text("no")
    expect(page.get_by_text("Re-enable…")).to_have_count(0)
    expect(page.locator("#sub-disabled")).to_have_count(0)
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("enabled")
    expect(history.first).to_contain_text("re-enabled by admin token 'support-desk'")
    expect(history.first.locator("td[data-label=Source]")).to_have_text("admin")
    ada = reader(engine, "ada@example.com")
    assert (ada.status, ada.bounce_score, ada.disabled_reason) == ("active", 0.0, None)
    assert suppressed(engine, ada.email) is None
    assert audit_of(engine) == [("support-desk", "subscriber.enabled", "ada@example.com")]

    page.goto(live_server.url + "/admin/audit")
    expect(page.locator("body")).to_contain_text("subscriber.enabled")
    expect(page.locator("body")).to_contain_text("ada@example.com")


def test_a_complainer_is_re_enabled_only_when_forced(
    sent,  # noqa: F811 - the fixture
    engine,
    db_url,
    web_settings,
    token,
):
    returned(engine, db_url, make_arf(sent["zed@example.com"], "zed@example.com"))
    zed = reader(engine, "zed@example.com")
    assert zed.status == "disabled" and suppressed(engine, zed.email) == "complaint"
    client = TestClient(create_app(settings=web_settings, engine=engine))
    csrf = login(client, token)
    url = f"/admin/subscribers/{zed.id}"

    shown = client.get(url)
    assert 'id="force"' in shown.text and "reported our mail as spam" in shown.text
    assert "complaint" in shown.text
    with Session(engine) as s:
        d = s.exec(select(Delivery).where(Delivery.subscriber_id == zed.id)).one()
    assert f'data-delivery-id="{d.id}"' in shown.text and "complaint received" in shown.text

    assert client.post(f"{url}/enable", data={}).status_code == 403  # no CSRF token
    refused = client.post(f"{url}/enable", data={"csrf_token": csrf})
    assert refused.status_code == 409
    assert "reported our mail as spam; re-enable only if they asked" in refused.text
    assert reader(engine, zed.email).status == "disabled"
    assert suppressed(engine, zed.email) == "complaint" and audit_of(engine) == []

    forced = client.post(f"{url}/enable", data={"csrf_token": csrf, "force": "1"})
    assert forced.status_code == 200 and "Re-enabled" in forced.text
    assert reader(engine, zed.email).status == "active"
    assert suppressed(engine, zed.email) is None
    assert audit_of(engine) == [("support-desk", "subscriber.enabled", "zed@example.com")]

    again = client.post(f"{url}/enable", data={"csrf_token": csrf})
    assert again.status_code == 409 and "is active, not disabled" in again.text
    assert client.post("/admin/subscribers/999999/enable",
                       data={"csrf_token": csrf}).status_code == 404  # fmt: skip
