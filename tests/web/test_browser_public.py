"""Subscriber pages in headless Chromium: subscribe -> confirmation email -> click -> active;
preferences; unsubscribe. With NEWSLETTER_UPDATE_SCREENSHOTS=1 it refreshes the README's screenshots."""

import re

import pytest
from playwright.sync_api import expect
from sqlmodel import Session

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import get_subscriber
from newsletter.pipeline.sample import load_sample
from tests.support.workers import drain


@pytest.fixture
def site(live_server, engine):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    return live_server


def test_subscribe_confirm_preferences_unsubscribe(site, engine, page, smtp_server, screenshot_dir):
    page.goto(site.url + "/?lang=en")
    page.screenshot(path=str(screenshot_dir / "subscribe.png"), full_page=True)
    page.fill("#email", "reader@example.com")
    page.fill("#name", "Grace")
    page.check("input[name=topics][value=hardware]")
    page.check("input[name=topics][value=open-source]")
    page.check("input[name=frequency][value=weekly]")
    page.select_option("#timezone", "Asia/Singapore")
    page.click("button[type=submit]")
    assert page.locator("h1").inner_text() == "Check your inbox"

    drain(engine, site.settings)
    (mail,) = smtp_server.recorder.to("reader@example.com")
    html = mail.message.get_body(("html",)).get_content()
    link = re.search(r'href="(http://127\.0\.0\.1:\d+/confirm/[^"]+)"', html).group(1)
    page.goto(link)
    assert page.locator("h1").inner_text() == "Confirm your subscription"
    page.click("#confirm button[type=submit]")
    expect(page.locator("h1")).to_have_text("You are subscribed")
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="reader@example.com")
        assert (sub.status, sub.frequency, sub.timezone, sub.name) == (
            "active",
            "weekly",
            "Asia/Singapore",
            "Grace",
        )

    prefs = make_token(site.settings.secret_key, "preferences", sub.id, sub.email)
    page.goto(f"{site.url}/p/{prefs}")
    page.uncheck("input[name=topics][value=hardware]")
    page.check("input[name=topics][value=governance]")
    page.check("input[name=frequency][value=monthly]")
    page.screenshot(path=str(screenshot_dir / "preferences.png"), full_page=True)
    page.click("#preferences button[type=submit]")
    assert "Saved" in page.locator("[role=status]").inner_text()
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="reader@example.com")
        assert sub.frequency == "monthly"

    page.click("form[action^='/u/'] button")
    assert page.locator("h1").inner_text() == "You are unsubscribed"
    with Session(engine) as s:
        assert get_subscriber(session=s, email="reader@example.com").status == "unsubscribed"


def test_one_click_unsubscribe_is_a_cookieless_post(site, engine, browser):
    from newsletter.pipeline.sample import add_demo_readers

    with Session(engine) as s:
        add_demo_readers(session=s)
        s.commit()
        sub = get_subscriber(session=s, email="reader.en@example.com")
    token = make_token(site.settings.secret_key, "unsubscribe", sub.id, sub.email)
    context = browser.new_context()
    response = context.request.post(
        f"{site.url}/u/{token}",
        data="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    context.close()
    assert response.status == 200
    with Session(engine) as s:
        assert get_subscriber(session=s, email="reader.en@example.com").status == "unsubscribed"


def test_chinese_subscribe_page_renders(site, page):
    page.goto(site.url + "/?lang=zh")
    assert page.locator("h1").inner_text() == "AI 产业简报"
    assert page.locator("label", has_text="芯片与硬件").count() == 1
