"""The admin console's events pages: TestClient for search, filters, pages, bad input
(nothing stored), the import report, viewers; Chromium for the editor's path (search,
filter, open, edit a title and see it on the list, pin, import a mixed file, delete an
event whose alert is queued) and the screenshots at 390 and 1200 px."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlmodel import Session, func, select

from newsletter import pipeline
from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Delivery, Event, Subscriber
from newsletter.ingest.events import retag, topic_slugs
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.admin.events import MAX_UPLOAD_BYTES
from newsletter.web.app import create_app
from tests.support.factories import event_record
from tests.web.test_admin_ui import browser_login, login

WIDTHS = (390, 1200)
EU = "EU spells out what the AI Act demands of general-purpose AI providers"


@pytest.fixture
def token(engine) -> str:
    """Sample topics and July 2025 events, the two demo readers, and an editor token."""
    with Session(engine, expire_on_commit=False) as session:
        load_sample(session=session)
        add_demo_readers(session=session)
        _, token = create_token(session=session, name="desk", role="editor")
        session.commit()
    return token


@pytest.fixture
def client(web_settings, engine) -> TestClient:
    return TestClient(create_app(settings=web_settings, engine=engine))


def event_count(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(Event)).one()


def event_id(engine, title_en: str) -> int:
    with Session(engine) as s:
        for e in s.exec(select(Event)):
            if e.title.get("en") == title_en:
                return e.id
    raise AssertionError(f"no event {title_en!r}")


def add_events(engine, settings, n: int) -> None:
    """`n` more events, one a day back from 2025-06-30, through the import pipeline."""
    day = dt.date(2025, 6, 30)
    records = [
        ("record", event_record(occurred_on=(day - dt.timedelta(days=i)).isoformat(),
                                title={"en": f"Robot maker {i:03d} opens a plant"}))
        for i in range(n)
    ]  # fmt: skip
    with Session(engine) as s:
        pipeline.ingest_records(session=s, settings=settings, records=iter(records))
        s.commit()


def queue_an_alert(engine, settings, event: int) -> int:
    """An instant reader who follows the event's topics; their alert for it is queued."""
    with Session(engine) as s:
        slugs = topic_slugs(session=s, event=s.get(Event, event))
        reader = add_subscriber(
            session=s,
            sub_in=SubscriberIn(email="instant@example.org", frequency="instant", topics=slugs),
        )
        reader.created_at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)  # before the event
        s.add(reader)
        s.flush()
        queued = pipeline.queue_alerts(session=s, settings=settings, ids=[event])
        s.commit()
    assert queued == 1
    return queued


def rows_of(html: str) -> list[str]:
    return re.findall(r'data-event-id="(\d+)"', html)


def audit_actions(engine) -> list[str]:
    with Session(engine) as s:
        return list(s.exec(select(AdminAudit.action).order_by(AdminAudit.id)))


# --- TestClient -----------------------------------------------------------------------------


def test_search_filters_and_keyset_pages(client, engine, token, web_settings):
    add_events(engine, web_settings, 40)  # 27 sample events + 40 in June
    login(client, token)
    page = client.get("/admin/events")
    assert page.status_code == 200 and 'type="search"' in page.text
    assert "67 events · newest first" in page.text
    first = rows_of(page.text)
    assert len(first) == 50
    next_url = re.search(r'href="([^"]+)" rel="next"', page.text).group(1).replace("&amp;", "&")
    second = client.get(next_url)
    assert len(rows_of(second.text)) == 17 and 'rel="next"' not in second.text
    assert set(first).isdisjoint(rows_of(second.text))
    # both languages, any case, words in any order
    for q in ("providers ai act", "《人工智能法案》", "GENERAL-PURPOSE AI PROVIDERS"):
        found = client.get("/admin/events", params={"q": q})
        assert EU in found.text and "1 event matches" in found.text, q
    china = client.get("/admin/events", params={"region": "china", "month": "2025-07"})
    assert "15 events match" in china.text and EU not in china.text
    source = client.get("/admin/events", params={"source": "European Commission"})
    assert "2 events match" in source.text
    topic = client.get("/admin/events", params={"topic": "governance", "q": "EU"})
    assert EU in topic.text
    june = client.get("/admin/events", params={"month": "2025-06", "q": "robot maker 00"})
    assert "10 events match" in june.text
    for params, reason in (
        ({"topic": "nope"}, "unknown topic"),
        ({"month": "2025-13"}, "must be YYYY-MM"),
        ({"before": "yesterday"}, "is not one this list gave"),
        ({"q": "x" * 201}, "longer than 200 characters"),
    ):
        bad = client.get("/admin/events", params=params)
        assert bad.status_code == 400 and reason in bad.text, params


def test_add_and_edit_refuse_bad_input_inline_and_store_nothing(client, engine, token):
    csrf = login(client, token)
    before = event_count(engine)
    blank = client.get("/admin/events/new")
    assert blank.status_code == 200 and "Add event</button>" in blank.text
    assert 'name="topics" value="hardware"' in blank.text and "Waiting alerts" not in blank.text
    good = {"csrf_token": csrf, "title_en": "Chip startup opens a fab in Ohio",
            "title_zh": "芯片初创公司在俄亥俄州建厂", "summary_en": "A new fab for AI chips.",
            "url": "https://news.example.com/ohio-fab", "occurred_on": "2025-07-30",
            "region": "global", "source_en": "Example Wire", "source_zh": "示例通讯社",
            "language": "en", "importance": "4", "topics": ["capital"]}  # fmt: skip
    for change, field, message in (
        ({"occurred_on": "2025-07-32"}, "occurred_on", "a date like 2025-07-31"),
        ({"occurred_on": "1900-01-01"}, "occurred_on", "occurred_on"),
        ({"topics": ["capital", "no-such-topic"]}, "topics", "unknown topic(s): no-such-topic"),
        ({"title_en": " ", "title_zh": ""}, "title", "give the title in English or Chinese"),
        ({"url": "ftp://x.example/1"}, "url", "starting with http:// or https://"),
        ({"importance": "9"}, "importance", "importance is 1"),
        ({"url": "https://example.com/ai-review/2025-07/eu-gpai-provider-guidelines"}, "url",
         "has the same URL"),
    ):  # fmt: skip
        r = client.post("/admin/events/new", data=good | change)
        assert r.status_code == 422, change
        assert "Nothing was saved" in r.text
        assert re.search(rf'id="err-{field}">[^<]*{re.escape(message)}', r.text), (change, r.text)
        assert 'value="Chip startup opens a fab in Ohio"' in r.text or "title_en" in change
    assert event_count(engine) == before

    added = client.post("/admin/events/new", data=good, follow_redirects=False)
    assert added.status_code == 303
    new_id = int(added.headers["location"].split("/")[-1].split("?")[0])
    page = client.get(added.headers["location"])
    assert (
        "Added." in page.text and 'id="event-title">Chip startup opens a fab in Ohio' in page.text
    )
    with Session(engine) as s:
        event = s.get(Event, new_id)
        assert event.title == {"en": "Chip startup opens a fab in Ohio",
                               "zh": "芯片初创公司在俄亥俄州建厂"}  # fmt: skip
        assert event.sources == {"en": "Example Wire", "zh": "示例通讯社"}
        assert event.manual_topics and topic_slugs(session=s, event=event) == ["capital"]
        retag(session=s)  # hand-picked topics are kept when the rules run again
        assert topic_slugs(session=s, event=event) == ["capital"]
        s.commit()

    # an edit that collides with another event changes nothing
    edit = good | {"title_en": "Chip startup opens a second fab", "topics": []}
    clash = client.post(
        f"/admin/events/{new_id}",
        data=edit | {"url": "https://example.com/ai-review/2025-07/eu-gpai-provider-guidelines"},
    )
    assert clash.status_code == 422 and "has the same URL" in clash.text
    bad_day = client.post(f"/admin/events/{new_id}", data=edit | {"occurred_on": "July"})
    assert (
        bad_day.status_code == 422 and "a date like 2025-07-31, not &#39;July&#39;" in bad_day.text
    )
    with Session(engine) as s:
        assert s.get(Event, new_id).title["en"] == "Chip startup opens a fab in Ohio"
    saved = client.post(f"/admin/events/{new_id}", data=edit)
    assert "Saved." in saved.text and "from the topic rules" in saved.text
    with Session(engine) as s:
        event = s.get(Event, new_id)
        assert event.title["en"] == "Chip startup opens a second fab" and not event.manual_topics
        assert "hardware" in topic_slugs(session=s, event=event)  # "chip" in the rules
    listed = client.get("/admin/events", params={"q": "second fab"})
    assert "Chip startup opens a second fab" in listed.text
    assert audit_actions(engine) == ["event.add", "event.edit"]
    assert client.get("/admin/events/999999").status_code == 404


def test_import_reports_each_record_and_refuses_a_huge_file(client, engine, token):
    csrf = login(client, token)
    before = event_count(engine)
    lines = [
        event_record(title={"en": "Good one: a lab ships a model"}),
        event_record(url="https://example.com/ai-review/2025-07/eu-gpai-provider-guidelines"),
        event_record(occurred_on="2025-02-30"),
        event_record(topics=["no-such-topic"]),
        event_record(title={"en": "Good two: a chip export rule"}),
    ]
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in lines).encode()
    r = client.post("/admin/events/import", data={"csrf_token": csrf},
                    files={"file": ("mixed.jsonl", body, "application/octet-stream")})  # fmt: skip
    assert r.status_code == 200
    assert "2 added, 1 duplicate skipped, 2 refused" in r.text
    refused = re.findall(r'<td data-label="Record" class="date">([^<]+)</td>', r.text)
    assert refused == ["line 3", "line 4"]
    assert "unknown topic(s): no-such-topic" in r.text and "occurred_on" in r.text
    assert "Good one: a lab ships a model" in r.text
    assert event_count(engine) == before + 2

    huge = b"[" + b" " * MAX_UPLOAD_BYTES + b"]"
    r = client.post("/admin/events/import", data={"csrf_token": csrf},
                    files={"file": ("huge.json", huge, "application/json")})  # fmt: skip
    assert r.status_code == 413 and "larger than 5 MB" in r.text and 'id="err-file"' in r.text
    r = client.post("/admin/events/import", data={"csrf_token": csrf},
                    files={"file": ("notes.txt", b"hello", "text/plain")})  # fmt: skip
    assert r.status_code == 400 and "cannot tell the format" in r.text
    r = client.post("/admin/events/import", data={"csrf_token": csrf},
                    files={"file": ("bad.json", b"[{", "application/json")})  # fmt: skip
    assert r.status_code == 400 and "invalid JSON" in r.text
    assert event_count(engine) == before + 2
    assert audit_actions(engine) == ["event.import"]


def test_delete_states_and_cancels_the_waiting_alerts(client, engine, token, web_settings):
    csrf = login(client, token)
    eu = event_id(engine, EU)
    queue_an_alert(engine, web_settings, eu)
    page = client.get(f"/admin/events/{eu}")
    assert "<strong>1 alert delivery</strong> that carries it is waiting" in page.text
    assert "cancelled and never sent" in page.text
    done = client.post(f"/admin/events/{eu}/delete", data={"csrf_token": csrf,
                       "back": "/admin/events?q=EU"})  # fmt: skip
    assert f"Event {eu} deleted; 1 waiting alert cancelled." in done.text
    assert EU not in done.text
    with Session(engine) as s:
        assert s.get(Event, eu) is None
        alert = s.exec(select(Delivery).where(Delivery.period == f"event:{eu}")).one()
        assert alert.status == "cancelled"
    assert client.get(f"/admin/events/{eu}").status_code == 404
    # a forged message is not shown
    assert "pwned" not in client.get("/admin/events", params={"done": "pwned"}).text
    with Session(engine) as s:
        row = s.exec(select(AdminAudit).where(AdminAudit.action == "event.delete")).one()
        assert EU in row.target and row.detail.startswith("1 waiting alert")


def test_delete_states_the_click_counts_that_go_with_the_event(client, engine, token):
    from newsletter.core.models import ClickCount
    from newsletter.feedback.clicks import count_click
    from newsletter.rendering.click_links import ClickToken

    csrf = login(client, token)
    eu = event_id(engine, EU)
    page = client.get(f"/admin/events/{eu}")
    assert "counted click" not in page.text  # nothing counted: nothing said
    with Session(engine) as s:
        for day, topic in [(1, "governance"), (1, "governance"), (2, "picks")]:
            count_click(s, ClickToken(eu, topic, "", ""), day=dt.date(2025, 7, day))
        s.commit()
    page = client.get(f"/admin/events/{eu}")
    effect = re.sub(r"\s+", " ", page.text)
    assert "Its click counts go with it: <strong>3 counted clicks</strong>" in effect
    done = client.post(f"/admin/events/{eu}/delete", data={"csrf_token": csrf,
                       "back": "/admin/events?q=EU"})  # fmt: skip
    assert (
        f"Event {eu} deleted; 0 waiting alerts cancelled; its 3 counted clicks deleted with it."
        in done.text
    )
    with Session(engine) as s:
        assert s.exec(select(ClickCount).where(ClickCount.event_id == eu)).first() is None
        row = s.exec(select(AdminAudit).where(AdminAudit.action == "event.delete")).one()
        assert row.detail.endswith("3 counted clicks deleted")


def test_pin_toggle_and_a_viewer_sees_no_controls(client, web_settings, engine, token):
    csrf = login(client, token)
    eu = event_id(engine, EU)
    back = "/admin/events?q=EU"
    r = client.post(f"/admin/events/{eu}/pin", data={"csrf_token": csrf, "pinned": "1",
                    "back": back})  # fmt: skip
    assert "editor's pick</span>" in r.text and "★ Pinned" in r.text
    r = client.post(f"/admin/events/{eu}/pin", data={"csrf_token": csrf, "pinned": "0",
                    "back": f"/admin/events/{eu}"})  # fmt: skip
    assert "Unpinned" in r.text
    with Session(engine) as s:
        assert s.get(Event, eu).pinned is False
    assert audit_actions(engine) == ["event.pin", "event.unpin"]

    with Session(engine) as s:
        _, viewer = create_token(session=s, name="analyst", role="viewer")
        s.commit()
    watcher = TestClient(create_app(settings=web_settings, engine=engine))
    vcsrf = login(watcher, viewer)
    listed = watcher.get("/admin/events").text
    assert "Add an event" not in listed and "☆ Pin" not in listed and "/pin" not in listed
    assert "Add event</button>" not in watcher.get("/admin/events/new").text
    assert "Import</button>" not in watcher.get("/admin/events/import").text
    page = watcher.get(f"/admin/events/{eu}").text
    assert "Save event" not in page and "Yes, delete" not in page
    assert "A viewer token cannot change events" in page
    refused = watcher.post(f"/admin/events/{eu}/delete", data={"csrf_token": vcsrf})
    assert refused.status_code == 403 and "needs an editor token" in refused.text
    refused = watcher.post("/admin/events/import", data={"csrf_token": vcsrf},
                           files={"file": ("a.json", b"[]", "application/json")})  # fmt: skip
    assert refused.status_code == 403
    assert event_id(engine, EU) == eu


# --- in Chromium ----------------------------------------------------------------------------


def shoot(page, name: str, folder) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways at {width} px"
        shot = folder / f"admin-{name}-{width}.png"
        height = min(page.evaluate("document.documentElement.scrollHeight"), 1600)
        clip = {"x": 0, "y": 0, "width": width, "height": height}
        page.screenshot(path=str(shot), full_page=True, clip=clip)
        assert shot.stat().st_size > 5_000
    page.set_viewport_size({"width": 1200, "height": 900})


def test_browser_editor_works_the_events_list(
    page, live_server, engine, token, screenshot_dir, tmp_path
):
    settings = live_server.settings
    eu = event_id(engine, EU)
    queue_an_alert(engine, settings, eu)
    browser_login(page, live_server, token, "/admin/events")
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    shoot(page, "events", screenshot_dir)

    # search, then filter (by keyboard: the box, the four filters, the button)
    page.get_by_label("Search").focus()
    page.keyboard.type("人工智能法案")
    for _ in range(5):
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Search")).to_be_focused()
    page.keyboard.press("Enter")
    rows = page.locator("#events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(EU)
    page.get_by_label("Search").fill("")
    page.get_by_label("Region").select_option(label="China")
    page.get_by_label("Source").select_option("新华社")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#events-count")).to_contain_text("2 events match")
    for cell in rows.locator("td[data-label=Event] .why").all():
        expect(cell).to_contain_text("新华社 · China")

    # open one, edit its title, see it on the list
    page.get_by_role("link", name="Clear").click()
    page.get_by_label("Search").fill("AI Act")
    page.get_by_label("Search").press("Enter")
    rows.get_by_role("link", name=EU).click()
    expect(page.locator("#event-waiting")).to_have_text("1")
    page.get_by_label("Title (English)").fill("EU explains the AI Act duties of model makers")
    page.get_by_role("button", name="Save event").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    page.get_by_text("Delete…").click()
    expect(page.locator("#delete-effect")).to_contain_text("1 alert delivery")
    shoot(page, "event", screenshot_dir)
    page.get_by_role("link", name="← All events").click()
    page.get_by_label("Search").fill("duties of model makers")
    page.get_by_label("Search").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.locator(".event-title")).to_have_text(
        "EU explains the AI Act duties of model makers"
    )

    # pin from the list, then unpin
    rows.get_by_role("button", name=re.compile("^Pin ")).click()
    expect(rows.locator(".pick")).to_have_text("editor's pick")
    expect(page.get_by_label("Search")).to_have_value("duties of model makers")
    rows.get_by_role("button", name=re.compile("^Unpin ")).click()
    expect(rows.locator(".pick")).to_have_count(0)
    with Session(engine) as s:
        assert s.get(Event, eu).pinned is False

    # import a file with good and bad records
    upload = tmp_path / "week.csv"
    upload.write_text(
        "title_en,title_zh,url,occurred_on,region,source\n"
        "Shanghai opens a compute exchange,上海开设算力交易所,https://news.example.com/sh,"
        "2025-07-29,china,Xinhua\n"
        "Bad day,坏日子,https://news.example.com/bad,2025-07-99,china,Xinhua\n"
        "EU spells out what the AI Act demands,,https://news.example.com/sh,2025-07-29,"
        "global,EC\n",
        encoding="utf-8",
    )
    page.get_by_role("link", name="Events", exact=True).click()
    page.get_by_role("link", name="Import a file").click()
    page.get_by_label("Event file").set_input_files(str(upload))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-summary")).to_contain_text(
        "1 added, 1 duplicate skipped, 1 refused"
    )
    expect(page.locator("#import-refused")).to_contain_text("line 3")
    expect(page.locator("#import-refused")).to_contain_text("occurred_on")
    page.get_by_role("link", name="Shanghai opens a compute exchange").click()
    expect(page.locator("#event-title")).to_have_text("Shanghai opens a compute exchange")

    # delete the event whose alert is queued: the count, then the alert cancelled
    page.goto(f"{live_server.url}/admin/events/{eu}")
    page.get_by_text("Delete…").click()
    expect(page.locator("#delete-effect")).to_contain_text(
        "1 alert delivery that carries it is waiting in the outbox"
    )
    page.get_by_role("button", name="Yes, delete this event").click()
    expect(page.get_by_role("status")).to_have_text(
        f"Event {eu} deleted; 1 waiting alert cancelled."
    )
    page.get_by_role("link", name="Outbox").click()
    page.get_by_label("Recipient").fill("instant@example.org")
    page.get_by_role("button", name="Filter").click()
    row = page.locator("#outbox tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("cancelled")
    with Session(engine) as s:
        reader = s.exec(select(Subscriber).where(Subscriber.email == "instant@example.org")).one()
        alert = s.exec(select(Delivery).where(Delivery.subscriber_id == reader.id)).one()
        assert alert.status == "cancelled" and s.get(Event, eu) is None
