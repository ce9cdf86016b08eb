"""The public archive and the reader's choices in headless Chromium, as a visitor uses
them. With NEWSLETTER_UPDATE_SCREENSHOTS=1 it refreshes docs/screenshots/archive-*.png."""

import re

import pytest
from playwright.sync_api import expect
from sqlmodel import Session

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import get_subscriber
from newsletter.pipeline.sample import add_demo_readers, load_sample
from tests.support.planning import plan_in
from tests.support.workers import drain


@pytest.fixture
def published(live_server, engine):
    """July 2025 went out to the sample readers (two languages, two topic sets)."""
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
        plan_in(s, live_server.settings)
        s.commit()
    drain(engine, live_server.settings)
    return live_server


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize(
    "lang, entry, section, take",
    [
        ("zh", "月度观察 · 2025年7月", "芯片与硬件", "锐评"),
        ("en", "Monthly review · July 2025", "Chips & hardware", "Sharp take"),
    ],
)
def test_a_visitor_reads_an_issue_of_the_archive(
    published, browser, screenshot_dir, lang, entry, section, take
):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.goto(f"{published.url}/?lang={lang}")
    page.click("header.site nav a[href^='/archive']")
    entries = page.locator("ul.issues a.issue")
    expect(entries).to_have_count(1)  # one per period, whatever the readers' topic sets
    expect(entries.first).to_have_text(entry)
    entries.first.click()
    expect(page.locator("h1")).to_have_text(entry.split(" · ")[1])
    nav = page.locator("nav.sections")
    expect(nav.locator("a")).to_have_count(6)  # four topics, other, the sharp take
    nav.get_by_text(section).click()
    assert page.url.endswith("#topic-hardware")
    expect(page.locator("#topic-hardware li.event").first).to_be_in_viewport()
    nav.get_by_text(take, exact=True).click()
    expect(page.locator("#sharp-take h2")).to_have_text(take)
    expect(page.locator("#sharp-take")).to_be_in_viewport()
    expect(page.locator("#subscribe a.button")).to_have_attribute("href", f"/?lang={lang}")
    links = page.locator("li.event a.title")
    assert links.count() >= 20 and links.first.get_attribute("href").startswith("https://")
    if lang == "zh":
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(screenshot_dir / "archive-issue-zh-1200.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        assert no_horizontal_scroll(page)
        page.screenshot(path=str(screenshot_dir / "archive-issue-zh-390.png"))
    context.close()


def test_the_issue_page_fits_a_small_phone(published, browser):
    context = browser.new_context(viewport={"width": 320, "height": 640})
    page = context.new_page()
    for lang in ("zh", "en"):
        page.goto(f"{published.url}/archive/monthly/2025-07?lang={lang}")
        assert no_horizontal_scroll(page)
        page.goto(f"{published.url}/archive?lang={lang}")
        assert no_horizontal_scroll(page)
    context.close()


def test_unsubscribe_one_topic_then_everything_then_come_back(published, engine, page, smtp_server):
    settings = published.settings
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="reader.zh@example.com")
    unsub = make_token(settings.secret_key, "unsubscribe", sub.id, sub.email)
    page.goto(f"{published.url}/u/{unsub}")
    expect(page.locator("h1")).to_have_text("退订")
    page.click("#stop-hardware button")
    expect(page.locator("[role=status]")).to_contain_text("你将不再收到「芯片与硬件」")
    page.goto(f"{published.url}/u/{unsub}")
    expect(page.locator("#stop-hardware")).to_have_count(0)  # one topic left: not offered
    page.check("#frequency input[value=weekly]")
    page.click("#frequency button")
    expect(page.locator("[role=status]")).to_contain_text("每周")
    page.goto(f"{published.url}/u/{unsub}")
    page.click("#stop-all button")
    expect(page.locator("h1")).to_have_text("已退订")
    page.click("#next")  # "changed your mind?": the preference page
    expect(page.locator("#unsubscribed")).to_contain_text("你已退订")
    page.click("#resubscribe button")
    expect(page.locator("h1")).to_have_text("请查收邮件")
    drain(engine, settings)
    confirm = [
        m
        for m in smtp_server.recorder.to("reader.zh@example.com")
        if m.message["Subject"] == "请确认订阅 AI 产业简报"
    ]
    assert len(confirm) == 1
    html = confirm[0].message.get_body(("html",)).get_content()
    page.goto(re.search(r'href="(http://127\.0\.0\.1:\d+/confirm/[^"]+)"', html).group(1))
    page.click("#confirm button[type=submit]")
    expect(page.locator("h1")).to_have_text("订阅成功")
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="reader.zh@example.com")
        assert (sub.status, sub.frequency) == ("active", "weekly")
    drain(engine, settings)
    welcome = [
        m
        for m in smtp_server.recorder.to("reader.zh@example.com")
        if m.message["Subject"] == "欢迎订阅 AI 产业简报"
    ]
    assert len(welcome) == 1
    assert "每周一 08:00（Asia/Shanghai）" in welcome[0].message.get_body(("plain",)).get_content()
