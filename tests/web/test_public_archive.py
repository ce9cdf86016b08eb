"""The public archive: one issue per (frequency, period, language), rendered from the
period's events under every topic, and feeds (RSS, Atom, JSON Feed 1.1) carrying it."""

import json
import re

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.planning import plan_in
from tests.support.workers import drain

# readers whose topic sets differ: each set is its own email edition (segment)
READERS = [
    ("cap.en@example.com", "en", "monthly", ["capital"]),
    ("hw.en@example.com", "en", "weekly", ["hardware"]),
    ("gov.en@example.com", "en", "weekly", ["governance", "capital"]),
    ("gov.zh@example.com", "zh", "weekly", ["governance"]),
]


@pytest.fixture
def published(engine, web_settings):
    """July 2025 sent monthly (both languages, several segments) and week 30 weekly."""
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        for email, language, frequency, topics in READERS:
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(
                    email=email, language=language, frequency=frequency, topics=topics
                ),
                source="test",
            )
        s.commit()
        plan_in(s, web_settings)
        plan_in(s, web_settings, "weekly", "2025-W30")
        s.commit()
    drain(engine, web_settings)
    return TestClient(create_app(settings=web_settings, engine=engine))


def entries(html: str) -> list[str]:
    return re.findall(r'<a class="issue" href="([^"]+)">', html)


def test_the_index_lists_each_period_once_per_language(published):
    en = published.get("/archive?lang=en")
    assert en.status_code == 200
    assert entries(en.text) == [
        "/archive/weekly/2025-W30?lang=en",
        "/archive/monthly/2025-07?lang=en",
    ]
    assert en.text.count("Monthly review · July 2025") == 1
    zh = published.get("/archive?lang=zh")
    assert entries(zh.text) == [
        "/archive/weekly/2025-W30?lang=zh",
        "/archive/monthly/2025-07?lang=zh",
    ]
    assert "月度观察 · 2025年7月" in zh.text and "Monthly review" not in zh.text


def test_an_issue_lists_every_topic_with_navigation_take_and_call_to_action(published):
    page = published.get("/archive/monthly/2025-07?lang=zh")
    assert page.status_code == 200
    html = page.text
    nav = re.search(r'<nav class="sections"[^>]*>(.*?)</nav>', html, re.S).group(1)
    for name in ("治理与政策", "资本与交易", "芯片与硬件", "开源", "其他"):
        assert name in nav, name
    for anchor in re.findall(r'href="#([^"]+)"', nav):
        assert f'id="{anchor}"' in html, anchor
    assert 'href="#sharp-take"' in nav and "锐评" in html
    assert 'id="subscribe"' in html and 'href="/?lang=zh"' in html
    # a page of the site, not a reader's email
    assert '<header class="site">' in html
    for personal in ("你关注", "topics you follow", "你好", "\x1e", "/u/", "/p/", "reader."):
        assert personal not in html, personal
    # every event of the month that a topic matched is on the page, once
    assert html.count('class="event') >= 20
    en = published.get("/archive/monthly/2025-07?lang=en").text
    assert "Sharp take" in en and "Governance &amp; policy" in en and "锐评" not in en
    assert "阅读中文版" in en  # the other language's edition of the same issue


def test_old_edition_links_lead_to_their_issue_and_unknown_issues_are_404(published, engine):
    from sqlalchemy import select

    from newsletter.core.models import Edition

    with Session(engine) as s:
        edition = (
            s.execute(
                select(Edition).where(Edition.language == "zh", Edition.frequency == "monthly")
            )
            .scalars()
            .first()
        )
    r = published.get(f"/archive/{edition.id}", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/archive/monthly/2025-07?lang=zh"
    assert published.get("/archive/99999").status_code == 404
    assert published.get("/archive/monthly/2025-06?lang=en").status_code == 404  # not sent
    missing = published.get("/archive/monthly/2025-13?lang=zh")
    assert missing.status_code == 404 and "2025-07" in missing.text  # says the right form
    assert published.get("/archive/yearly/2025").status_code == 404


def test_nothing_is_listed_before_anything_is_sent(engine, web_settings):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        plan_in(s, web_settings)
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    assert entries(client.get("/archive?lang=en").text) == []
    assert "No issue has been published yet." in client.get("/archive?lang=en").text
    assert client.get("/archive/monthly/2025-07").status_code == 404
    assert feedparser.parse(client.get("/archive/feed.rss").content).entries == []


def test_rss_and_atom_items_carry_the_issue(published):
    for kind in ("rss", "atom"):
        r = published.get(f"/archive/feed.{kind}?lang=en")
        assert r.status_code == 200
        feed = feedparser.parse(r.content)
        assert not feed.bozo, feed.bozo_exception
        assert [e.title for e in feed.entries] == [
            "AI Industry Brief · Weekly brief · week 30, 2025 (21 Jul–27 Jul)",
            "AI Industry Brief · Monthly review · July 2025",
        ]
        monthly = feed.entries[1]
        assert monthly.link == "http://127.0.0.1/archive/monthly/2025-07?lang=en"
        assert re.match(r"\d+ events · Governance & policy \d+", monthly.summary)
        content = monthly.content[0].value
        assert "Sharp take" in content and "<a" in content and "https://" in content
        assert "greeting" not in r.text and "\x1e" not in r.text and "{{" not in r.text
    both = feedparser.parse(published.get("/archive/feed.atom").content)
    assert len(both.entries) == 4  # two issues, each in English and in Chinese
    capital = feedparser.parse(published.get("/archive/feed.rss?topic=capital&lang=zh").content)
    assert "AI 产业简报 · 月度观察 · 2025年7月" in [e.title for e in capital.entries]
    for e in capital.entries:  # only the topic asked for
        assert re.fullmatch(r"共 \d+ 条动态 · 资本与交易 \d+", e.summary), e.summary


def test_json_feed_is_json_feed_1_1_with_content(published):
    r = published.get("/archive/feed.json?lang=zh")
    assert r.headers["content-type"].startswith("application/feed+json")
    feed = json.loads(r.text)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] and feed["home_page_url"].startswith("http://127.0.0.1/archive")
    assert feed["feed_url"] == "http://127.0.0.1/archive/feed.json?lang=zh"
    assert feed["language"] == "zh" and feed["authors"][0]["name"] == "AI 产业简报"
    assert len(feed["items"]) == 2
    ids = [item["id"] for item in feed["items"]]
    assert len(set(ids)) == len(ids)
    for item in feed["items"]:
        assert {"id", "url", "title", "summary", "date_published"} <= item.keys()
        assert item["content_html"] and item["content_text"]
        assert item["date_published"].endswith("+00:00")
        assert "greeting" not in json.dumps(item) and "\x1e" not in json.dumps(item)
    monthly = feed["items"][1]
    assert monthly["title"] == "AI 产业简报 · 月度观察 · 2025年7月"
    assert "## 锐评" in monthly["content_text"] and "https://" in monthly["content_text"]
    assert "治理与政策" in monthly["tags"]
