"""The admin console's feeds page and creating and deleting topics: TestClient for bad
input (nothing stored), roles and the API's PATCH; Chromium for the editor's path (add a
feed served from 127.0.0.1, poll it now, see its new events and next poll, break it and
see the error; create a topic, see it listed, delete it with its readers counted) and the
screenshots at 390 and 1200 px."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Feed, Subscription, Topic
from newsletter.ingest.feeds import add_feed
from newsletter.pipeline.sample import load_sample
from newsletter.web.app import create_app
from tests.ingest.test_feeds import RSS
from tests.support.http import RouteServer
from tests.support.web import api_client, serving
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
def client(loopback_settings, engine) -> TestClient:
    return TestClient(create_app(settings=loopback_settings, engine=engine))


@pytest.fixture
def rss_server():
    """An RSS file on 127.0.0.1; a test may change what a path answers."""
    routes = {"/rss.xml": (200, {"Content-Type": "application/rss+xml"}, RSS)}
    server = RouteServer(routes, default=(404, {}, "nope"))
    server.routes = routes  # type: ignore[attr-defined]
    yield server
    server.close()


@pytest.fixture
def loopback_live_server(loopback_settings, engine):
    """The app on a real HTTP server, allowed to poll feeds on 127.0.0.1."""
    from tests.support.smtp_server import free_port

    port = free_port()
    settings = loopback_settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    with serving(create_app(settings=settings, engine=engine), port) as server:
        server.settings = settings
        yield server


def counts(engine) -> tuple[int, int, int]:
    """Feeds, topics and audit rows stored."""
    with Session(engine) as s:
        return tuple(  # type: ignore[return-value]
            s.exec(select(func.count()).select_from(model)).one()
            for model in (Feed, Topic, AdminAudit)
        )


def audit_rows(engine) -> list[tuple[str, str, str]]:
    with Session(engine) as s:
        rows = s.exec(select(AdminAudit).order_by(AdminAudit.id)).all()
        return [(r.action, r.target, r.detail) for r in rows]


# --- TestClient -----------------------------------------------------------------------------


def test_a_bad_feed_is_refused_next_to_its_field_and_nothing_is_stored(
    client, engine, token, loopback_settings, rss_server
):
    csrf = login(client, token)
    with Session(engine) as s:
        add_feed(session=s, settings=loopback_settings, url=rss_server.url + "/rss.xml",
                 name="wire", region="global", language="en")  # fmt: skip
        s.commit()
    before = counts(engine)
    cases = [  # form, the field marked, what it says
        ({"url": ""}, "url", "is required"),
        ({"url": "ftp://example.com/feed"}, "url", "must be http or https"),
        ({"url": "not a url"}, "url", "refusing feed URL"),
        ({"url": "http://10.1.2.3/rss.xml"}, "url", "refusing feed URL"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url", "refusing feed URL"),
        ({"url": "http://[::ffff:192.168.0.1]/rss"}, "url", "refusing feed URL"),
        ({"url": "https://example.com/" + "a" * 2000}, "url", "longer than 2000"),
        ({"url": rss_server.url + "/rss.xml", "name": "other"}, "url", "exists already"),
        ({"url": rss_server.url + "/other.xml", "name": "wire"}, "name", "exists already"),
        ({"url": rss_server.url + "/x.xml", "name": "a/b"}, "name", "cannot contain '/'"),
        ({"url": rss_server.url + "/x.xml", "region": "Not a region"}, "region", "region"),
        ({"url": rss_server.url + "/x.xml", "language": "english"}, "language", "language"),
    ]
    for form, field, says in cases:
        r = client.post("/admin/feeds", data={"csrf_token": csrf, **form})
        assert r.status_code == 422, (form, r.status_code)
        assert f'id="err-{field}"' in r.text, (form, field)
        assert says in html.unescape(r.text), (form, says)
        assert "Nothing was added" in r.text
    assert counts(engine) == before  # no feed, no audit row


def test_editing_a_feed_checks_it_like_a_new_one(
    client, engine, token, loopback_settings, rss_server
):
    csrf = login(client, token)
    with Session(engine) as s:
        for name in ("wire", "other"):
            add_feed(session=s, settings=loopback_settings, url=f"{rss_server.url}/{name}.rss",
                     name=name, region="global", language="en")  # fmt: skip
        s.commit()
        wire = s.exec(select(Feed).where(Feed.name == "wire")).one()
    form = {"csrf_token": csrf, "url": wire.url, "name": "wire", "region": "global",
            "language": "en"}  # fmt: skip
    for change, field in (
        ({"url": "http://192.168.1.1/rss"}, "url"),
        ({"url": f"{rss_server.url}/other.rss"}, "url"),
        ({"name": "other"}, "name"),
        ({"name": ""}, "name"),
        ({"region": "?"}, "region"),
    ):
        r = client.post(f"/admin/feeds/{wire.id}", data={**form, **change})
        assert r.status_code == 422 and f'id="err-{field}"' in r.text, change
        assert "Nothing was saved" in r.text
    with Session(engine) as s:
        assert s.get(Feed, wire.id).url == f"{rss_server.url}/wire.rss"
    r = client.post(f"/admin/feeds/{wire.id}", data={**form, "region": "china", "language": "zh"})
    assert r.status_code == 200 and "Saved." in r.text
    with Session(engine) as s:
        assert (s.get(Feed, wire.id).region, s.get(Feed, wire.id).language) == ("china", "zh")
    assert audit_rows(engine)[-1] == ("feed.edit", "wire", "region: china, language: zh")
    assert client.get("/admin/feeds/999999").status_code == 404


def test_the_api_changes_a_feed_with_the_same_rules(loopback_settings, engine, token, rss_server):
    api = api_client(loopback_settings, engine, name="robot", role="editor")
    for name in ("wire", "other"):
        r = api.post("/api/v1/feeds", json={"url": f"{rss_server.url}/{name}.rss", "name": name})
        assert r.status_code == 201
    private = api.patch("/api/v1/feeds/wire", json={"url": "http://10.0.0.1/rss"})
    assert private.status_code == 400 and "refusing feed URL" in private.json()["detail"]
    taken = api.patch("/api/v1/feeds/wire", json={"name": "other"})
    assert taken.status_code == 409 and "exists already" in taken.json()["detail"]
    assert api.patch("/api/v1/feeds/wire", json={"colour": "red"}).status_code == 422
    assert api.patch("/api/v1/feeds/nope", json={"name": "x"}).status_code == 404
    moved = api.patch("/api/v1/feeds/wire", json={"url": f"{rss_server.url}/v2.rss"})
    assert moved.status_code == 200 and moved.json()["url"] == f"{rss_server.url}/v2.rss"
    assert moved.json()["next_poll_at"] is None  # a new source: due at the next check
    renamed = api.patch("/api/v1/feeds/wire", json={"name": "wire-v2"})
    assert renamed.json()["name"] == "wire-v2"
    assert api.get("/api/v1/feeds/wire-v2").status_code == 200
    assert api.delete("/api/v1/feeds/wire-v2").status_code == 204
    actions = [(a, t) for a, t, _ in audit_rows(engine)]
    assert actions == [("feed.add", "wire"), ("feed.add", "other"), ("feed.edit", "wire"),
                       ("feed.edit", "wire"), ("feed.remove", "wire-v2")]  # fmt: skip


def test_a_bad_new_topic_is_refused_next_to_its_field_and_nothing_is_stored(client, engine, token):
    csrf = login(client, token)
    before = counts(engine)
    good = {"csrf_token": csrf, "slug": "robotics", "name_en": "Robotics", "name_zh": "机器人",
            "include": "robot*"}  # fmt: skip
    cases = [  # change, field, what it says
        ({"slug": "hardware"}, "slug", "already exists"),
        ({"slug": "Not A Slug"}, "slug", "lower-case letters, digits and hyphens"),
        ({"slug": ""}, "slug", "a slug is required"),
        ({"name_en": " "}, "name_en", "a name is required"),
        ({"name_zh": ""}, "name_zh", "a name is required"),
        ({"regex": "(unclosed"}, "regex", ""),
    ]
    for change, field, says in cases:
        r = client.post("/admin/topics", data={**good, **change})
        assert r.status_code == 422, change
        assert f'id="err-{field}"' in r.text and says in r.text, change
        assert "Nothing was created" in r.text
        assert 'id="new-topic" open' in r.text  # the form stays open with what was typed
    assert counts(engine) == before
    r = client.post("/admin/topics", data=good)
    assert r.status_code == 200 and "Created the topic" in r.text and "robotics" in r.text
    assert audit_rows(engine)[-1] == ("topic.create", "robotics", "Robotics")
    # the live check of the form matches stored events without storing anything
    check = client.post(
        "/admin/topics/_new/check", data={"csrf_token": csrf, "slug": "x", "include": "chip*"}
    )
    assert check.status_code == 200 and "stored events would match" in check.text


def test_a_followed_topic_is_deleted_only_when_the_box_says_so(client, engine, token):
    csrf = login(client, token)
    with Session(engine) as s:
        add_subscriber(session=s, sub_in=SubscriberIn(email="a@example.org", topics=["capital"]))
        add_subscriber(
            session=s, sub_in=SubscriberIn(email="b@example.org", topics=["capital", "hardware"])
        )
        s.commit()
    page = client.get("/admin/topics/capital").text
    assert "2 readers</strong> and <strong>0 webhooks</strong> follow this topic" in page
    assert "For 1 of the readers and 0 of the webhooks it is the only topic" in page
    r = client.post("/admin/topics/capital/delete", data={"csrf_token": csrf})
    assert r.status_code == 409 and "Nothing was deleted" in r.text
    with Session(engine) as s:
        assert s.exec(select(Topic).where(Topic.slug == "capital")).first() is not None
    r = client.post("/admin/topics/capital/delete", data={"csrf_token": csrf, "followed": "drop"})
    assert r.status_code == 200 and "Deleted the topic" in r.text
    with Session(engine) as s:
        assert s.exec(select(Topic).where(Topic.slug == "capital")).first() is None
        assert len(s.exec(select(Subscription)).all()) == 1  # b keeps hardware
    action, target, detail = audit_rows(engine)[-1]
    assert (action, target) == ("topic.delete", "capital")
    assert "2 reader(s) and 0 webhook(s)" in detail


def test_a_viewer_sees_feeds_and_topics_without_controls(client, engine, token, rss_server):
    with Session(engine) as s:
        _, viewer = create_token(session=s, name="analyst", role="viewer")
        s.commit()
    csrf = login(client, viewer)
    api = api_client(client.app.state.settings, engine, name="robot", role="editor")
    assert api.post("/api/v1/feeds", json={"url": rss_server.url + "/rss.xml"}).status_code == 201
    feeds = client.get("/admin/feeds").text
    assert "127.0.0.1" in feeds and "not polled yet" in feeds
    assert "Add feed" not in feeds and "Poll now" not in feeds
    feed_id = engine_feed_id(engine)
    one = client.get(f"/admin/feeds/{feed_id}").text
    assert "A viewer token cannot poll or change feeds" in one and "Yes, remove" not in one
    topics = client.get("/admin/topics").text
    assert "New topic" not in topics
    assert "Delete this topic" not in client.get("/admin/topics/hardware").text
    before = counts(engine)
    for path, data in (
        ("/admin/feeds", {"url": "https://example.com/rss"}),
        (f"/admin/feeds/{feed_id}/poll", {}),
        (f"/admin/feeds/{feed_id}/remove", {}),
        ("/admin/topics", {"slug": "x", "name_en": "X", "name_zh": "X"}),
        ("/admin/topics/hardware/delete", {"followed": "drop"}),
    ):
        r = client.post(path, data={"csrf_token": csrf, **data}, follow_redirects=False)
        assert r.status_code == 403 and "needs an editor token" in r.text, path
    assert counts(engine) == before and rss_server.hits == {}


def engine_feed_id(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(Feed.id)).one()


# --- in Chromium ----------------------------------------------------------------------------


def shoot_part(page, name: str, folder, selector: str) -> None:
    """Like `shoot`, from a little above `selector` down (a form below a long list)."""
    for width in (390, 1200):
        page.set_viewport_size({"width": width, "height": 900})
        box = page.locator(selector).bounding_box()
        top = max(0, int(box["y"] + page.evaluate("window.scrollY")) - 24)
        height = min(int(box["height"]) + 48, 1600)
        shot = folder / f"admin-{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True,
                        clip={"x": 0, "y": top, "width": width, "height": height})  # fmt: skip
        assert shot.stat().st_size > 5_000
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no overflow
    page.set_viewport_size({"width": 1200, "height": 900})


def test_browser_add_a_feed_poll_it_and_see_it_break(
    page, loopback_live_server, engine, token, rss_server, screenshot_dir
):
    live = loopback_live_server
    browser_login(page, live, token, "/admin/feeds")
    expect(page.locator("#feeds")).to_contain_text("No feeds yet")
    page.fill("#url", rss_server.url + "/rss.xml")
    page.fill("#name", "wire")
    page.click("#add-feed button[type=submit]")
    expect(page.locator("#added")).to_contain_text("Added the feed wire")
    row = page.locator("tr[data-feed=wire]")
    expect(row).to_contain_text(rss_server.url + "/rss.xml")
    expect(row.locator(".result")).to_contain_text("not polled yet")

    row.get_by_role("button", name="Poll wire now").click()
    expect(page.locator("#poll-result")).to_contain_text("Polled wire: 2 new events")
    with Session(engine) as s:
        feed = s.exec(select(Feed).where(Feed.name == "wire")).one()
    polled, due = (t.replace(tzinfo=dt.UTC) for t in (feed.last_polled_at, feed.next_poll_at))
    assert due - polled == dt.timedelta(minutes=15)  # NEWSLETTER_FEED_POLL_MINUTES
    row = page.locator("tr[data-feed=wire]")
    expect(row.locator(".result")).to_have_text("2 new events")
    expect(row.locator(".next")).to_contain_text(f"{due:%Y-%m-%d %H:%M} UTC")
    expect(row.locator(".next")).to_contain_text("polled every 15 min")
    expect(row.locator("td.num").first).to_have_text("2")
    shoot(page, "feeds", screenshot_dir)
    for width in (390, 1200):  # nothing wider than the screen
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.set_viewport_size({"width": 1200, "height": 900})

    rss_server.routes["/rss.xml"] = (500, {}, "boom")  # the feed breaks
    row.get_by_role("button", name="Poll wire now").click()
    expect(page.locator("#poll-result")).to_contain_text("the poll failed")
    expect(page.locator("#poll-result")).to_contain_text("HTTP 500")
    row = page.locator("tr[data-feed=wire]")
    expect(row.locator(".result")).to_contain_text("HTTP 500")
    expect(row.locator(".next")).to_contain_text("1 failed poll in a row: it waits 30 min")

    rss_server.routes["/rss.xml"] = (200, {"Content-Type": "text/html"}, "<html>{{ not a feed")
    row.get_by_role("button", name="Poll wire now").click()
    expect(page.locator("#poll-result")).to_contain_text("not a feed")
    expect(page.locator("tr[data-feed=wire] .next")).to_contain_text("2 failed polls in a row")

    # edit, then remove: the confirmation says the events stay, and they do
    page.click("tr[data-feed=wire] a")
    expect(page.locator("h1")).to_have_text("wire")  # the feed's page, not the list
    page.fill("#name", "wire-desk")
    page.click("text=Save feed")
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    expect(page.locator("h1")).to_have_text("wire-desk")
    page.click("text=Remove this feed…")
    expect(page.locator("details.confirm")).to_contain_text("The 2 events it brought stay")
    page.click("text=Yes, remove wire-desk")
    expect(page.locator("#removed")).to_contain_text("Its 2 events stay")
    expect(page.locator("#feeds")).to_contain_text("No feeds yet")
    actions = [a for a, _, _ in audit_rows(engine)]
    assert actions == ["feed.add", "feed.poll", "feed.poll", "feed.poll", "feed.edit",
                       "feed.remove"]  # fmt: skip


def test_browser_create_a_topic_and_delete_it(
    page, loopback_live_server, engine, token, screenshot_dir
):
    live = loopback_live_server
    browser_login(page, live, token, "/admin/topics")
    page.click("#new-topic summary")
    page.fill("#slug", "chips")
    page.fill("#name_en", "Chips")
    page.fill("#name_zh", "芯片新闻")
    page.fill("#description", "Accelerators and the fabs that make them")
    page.fill("#include", "chip*\naccelerator*")
    expect(page.locator("#new-check-result .match-count")).not_to_have_text("0")
    shoot_part(page, "topic-new", screenshot_dir, "#new-topic")
    page.click("text=Create topic")
    expect(page.locator("#created")).to_contain_text("Created the topic Chips")
    expect(page.locator("table")).to_contain_text("芯片新闻")

    with Session(engine) as s:  # three readers choose it, one of them only it
        for n, topics in enumerate((["chips"], ["chips", "hardware"], ["chips", "capital"])):
            add_subscriber(session=s, sub_in=SubscriberIn(email=f"r{n}@example.org", topics=topics))
        s.commit()
    page.click("a[href='/admin/topics/chips']")
    expect(page.locator("h1")).to_contain_text("Chips")
    page.click("text=Delete Chips…")
    expect(page.locator("#delete-followers")).to_contain_text(
        "3 readers and 0 webhooks follow this topic"
    )
    expect(page.locator("#delete-followers")).to_contain_text("For 1 of the readers")
    page.check("#followed")
    page.click("text=Yes, delete chips")
    expect(page.locator("#deleted")).to_contain_text("Deleted the topic chips")
    expect(page.locator("table")).not_to_contain_text("芯片新闻")
    assert [a for a, _, _ in audit_rows(engine)] == ["topic.create", "topic.delete"]
