"""Public pages: double opt-in, preferences, one-click unsubscribe, archive and its feeds."""

import json
import re

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import get_subscriber, is_suppressed
from newsletter.core.models import Delivery, Subscriber, Topic
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.planning import plan_in
from tests.support.workers import drain


@pytest.fixture
def seeded(engine):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    return engine


@pytest.fixture
def client(seeded, web_settings):
    return TestClient(create_app(settings=web_settings, engine=seeded))


def csrf(client, path="/"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def subscribe(client, email, topics=("capital",), **extra):
    data = {"email": email, "topics": list(topics), "csrf_token": csrf(client), **extra}
    return client.post("/subscribe", data=data)


def test_double_opt_in_sends_a_confirmation_and_activates_on_click(
    client, seeded, web_settings, smtp_server
):
    r = subscribe(
        client,
        "new@example.com",
        ("capital", "hardware"),
        name="Nina",
        language="zh",
        frequency="weekly",
    )
    assert r.status_code == 200 and "请查收邮件" not in r.text and "Check your inbox" in r.text
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email="new@example.com")
        assert sub.status == "pending" and sub.language == "zh"
    drain(seeded, web_settings)
    (mail,) = smtp_server.recorder.to("new@example.com")
    msg = mail.message
    assert msg["Subject"] == "请确认订阅 AI 产业简报"
    link = re.search(
        r"http://127\.0\.0\.1/confirm/\S+", msg.get_body(("plain",)).get_content()
    ).group(0)
    path = link.replace("http://127.0.0.1", "")
    page = client.get(path)  # a page with a button: a GET alone confirms nothing
    assert page.status_code == 200 and "确认订阅" in page.text
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="new@example.com").status == "pending"
    page = client.post(path, data={"csrf_token": csrf(client, path)})
    assert page.status_code == 200 and "订阅成功" in page.text
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="new@example.com").status == "active"


def test_resubscribing_reveals_nothing_and_changes_nothing(
    client, seeded, web_settings, smtp_server
):
    with Session(seeded) as s:
        add_demo_readers(session=s)
        s.commit()
    known = subscribe(client, "reader.en@example.com", ("capital",))
    unknown = subscribe(client, "stranger@example.com", ("capital",))
    strip = lambda html: re.sub(r'value="[^"]+"', "", html)  # noqa: E731
    assert known.status_code == unknown.status_code == 200 and strip(known.text) == strip(
        unknown.text
    )
    drain(seeded, web_settings)
    assert smtp_server.recorder.to("reader.en@example.com") == []
    with Session(seeded) as s:
        reader = get_subscriber(session=s, email="reader.en@example.com")
        assert reader.status == "active" and reader.frequency == "monthly"


def test_bad_input_csrf_and_rate_limits(client, seeded):
    assert subscribe(client, "not-an-email").status_code == 422
    assert subscribe(client, "ok@example.com", ()).status_code == 422
    assert subscribe(client, "ok@example.com", ("nope",)).status_code == 422
    assert subscribe(client, "ok@example.com", timezone="Mars/Olympus").status_code == 422
    no_csrf = client.post("/subscribe", data={"email": "x@example.com", "topics": ["capital"]})
    assert no_csrf.status_code == 403
    codes = [subscribe(client, "same@example.com").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # three per address per hour


def test_preferences_change_and_one_click_unsubscribe(client, seeded, web_settings):
    with Session(seeded) as s:
        add_demo_readers(session=s)
        s.commit()
        sub = get_subscriber(session=s, email="reader.zh@example.com")
    prefs = make_token(web_settings.secret_key, "preferences", sub.id, sub.email)
    page = client.get(f"/p/{prefs}")
    assert page.status_code == 200 and "reader.zh@example.com" in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post(
        f"/p/{prefs}",
        data={
            "topics": ["governance"],
            "frequency": "weekly",
            "language": "en",
            "timezone": "Europe/Berlin",
            "csrf_token": token,
        },
    )
    assert r.status_code == 200 and "Saved" in r.text
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email="reader.zh@example.com")
        assert (sub.frequency, sub.language, sub.timezone) == ("weekly", "en", "Europe/Berlin")
    unsub = make_token(web_settings.secret_key, "unsubscribe", sub.id, sub.email)
    assert client.get(f"/u/{unsub}").status_code == 200  # a GET only asks
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="reader.zh@example.com").status == "active"
    fresh = TestClient(client.app)  # no cookies, as a mail client posts it (RFC 8058)
    r = fresh.post(
        f"/u/{unsub}",
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "unsubscribed" in r.text.lower()
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="reader.zh@example.com").status == "unsubscribed"
        assert is_suppressed(session=s, email="reader.zh@example.com")


@pytest.mark.parametrize("path", ["/u/{t}", "/p/{t}", "/confirm/{t}"])
def test_forged_and_tampered_tokens_get_a_clear_4xx(client, seeded, web_settings, path):
    with Session(seeded) as s:
        add_demo_readers(session=s)
        s.commit()
        sub = get_subscriber(session=s, email="reader.en@example.com")
    purpose = {"/u/{t}": "unsubscribe", "/p/{t}": "preferences", "/confirm/{t}": "confirm"}[path]
    good = make_token(web_settings.secret_key, purpose, sub.id, sub.email)
    for bad in [
        "garbage",
        good[:-2] + ("xy" if not good.endswith("xy") else "ab"),
        make_token("another-secret", purpose, sub.id, sub.email),
        make_token(
            web_settings.secret_key,
            "unsubscribe" if purpose != "unsubscribe" else "preferences",
            sub.id,
            sub.email,
        ),
        make_token(web_settings.secret_key, purpose, sub.id + 1000, sub.email),
    ]:
        r = client.get(path.format(t=bad))
        assert 400 <= r.status_code < 500, bad
        assert "reader.en@example.com" not in r.text
        r = client.post(path.format(t=bad), data={})
        assert 400 <= r.status_code < 500
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="reader.en@example.com").status == "active"


def test_archive_lists_sent_issues_without_personal_data(client, seeded, web_settings):
    with Session(seeded) as s:
        add_demo_readers(session=s)
        topic = s.execute(select(Topic).where(Topic.slug == "capital")).scalar_one()
        topic.description = "<script>alert('x')</script>"
        topic.name_en = "<b>Capital</b>"
        s.add(topic)
        s.commit()
        plan_in(s, web_settings)
        s.commit()
    assert "/archive/monthly" not in client.get("/archive").text  # nothing sent yet
    drain(seeded, web_settings)
    assert "July 2025" in client.get("/archive?lang=en").text
    assert "2025年7月" in client.get("/archive?lang=zh").text
    page = client.get("/archive/monthly/2025-07?lang=en")
    assert page.status_code == 200
    assert "reader." not in page.text and "/u/" not in page.text and "\x1e" not in page.text
    assert "<b>Capital</b>" not in page.text and "&lt;b&gt;Capital&lt;/b&gt;" in page.text
    assert "<script>alert" not in client.get("/").text and "&lt;script&gt;" in client.get("/").text
    rss = feedparser.parse(client.get("/archive/feed.rss").content)
    atom = feedparser.parse(client.get("/archive/feed.atom?topic=open-source").content)
    assert not rss.bozo and len(rss.entries) == 2 and not atom.bozo and len(atom.entries) == 2
    feed = json.loads(client.get("/archive/feed.json").text)
    assert feed["version"].startswith("https://jsonfeed.org/") and len(feed["items"]) == 2
    assert client.get("/archive/99999").status_code == 404
    assert client.get("/archive/feed.xml").status_code == 404
    with Session(seeded) as s:
        assert s.execute(select(Delivery).where(Delivery.status == "sent")).first() is not None
        assert s.execute(select(Subscriber)).first() is not None


@pytest.mark.parametrize(
    "path, lang, words",
    [
        ("/no-such-page", "en", "There is no page at this address."),
        ("/admin/no-such-page", "en", "There is no page at this address."),
        ("/no-such-page?lang=zh", "zh", "这个地址没有页面。"),
    ],
)
def test_unknown_paths_get_the_sites_page_in_the_readers_language(client, path, lang, words):
    r = client.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert words in r.text
    assert f'href="/?lang={lang}"' in r.text  # the way back, in the page's layout
    assert '"detail"' not in r.text


def test_api_paths_keep_json_errors_and_a_wrong_method_gets_a_page(client):
    r = client.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = client.delete("/")
    assert r.status_code == 405 and "This page cannot be used that way." in r.text
    assert "GET" in r.headers["allow"]
