"""Click counting: digests mailed through a real SMTP server carry signed redirect links
(when NEWSLETTER_CLICK_TRACKING is on), following one counts a click that the API and
the dashboard show, and nothing but a link this site signed for an event's own URL
leads anywhere."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import ClickCount, Event, ReaderClick
from newsletter.core.periods import parse_period
from newsletter.pipeline import remove_subscriber
from newsletter.pipeline.sample import load_sample
from newsletter.planning.readers import events_for, period_events
from newsletter.rendering.click_links import make_token
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.planning import plan
from tests.support.settings import mail_settings
from tests.support.smtp_server import free_port
from tests.support.web import api_client, csrf_of, serving
from tests.support.workers import drain

READERS = [
    ("ada@example.com", "Ada", "en", "governance,capital"),
    ("li@example.com", "李雷", "zh", "hardware,open-source"),
]
SITE = "https://news.example.org"
CLICK = re.compile(r"https://news\.example\.org/r/[A-Za-z0-9_\-.]+(?:/[A-Za-z0-9_\-.]+)?")


@pytest.fixture
def world(engine):
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email_, name, lang, topics in READERS:
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(email=email_, name=name, language=lang, topics=topics),
            )
        s.commit()
    return engine


def expected_urls(engine, topics: str) -> set[str]:
    with Session(engine) as s:
        events = period_events(session=s, period=parse_period("monthly", "2025-07"))
    return {e.url for e, _ in events_for(events, tuple(topics.split(",")), "monthly")}


def mailed(smtp_server, address: str):
    (got,) = smtp_server.recorder.to(address)
    msg = got.message
    return msg, msg.get_body(("plain",)).get_content(), msg.get_body(("html",)).get_content()


def clicks_total(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.coalesce(func.sum(ClickCount.count), 0))).scalar_one()


def send_digest(world, db_url, smtp_server, **overrides):
    settings = mail_settings(db_url, smtp_server.url, **overrides)
    plan(world, settings)
    assert drain(world, settings).by_status == {"sent": 2}
    return settings


def test_tracked_digest_links_redirect_to_the_source_and_are_counted(world, db_url, smtp_server):
    settings = send_digest(world, db_url, smtp_server, click_tracking=True)
    msg, text, html = mailed(smtp_server, "ada@example.com")
    links = CLICK.findall(html)
    # every event link of the HTML part (title and "Read") and the plain-text part
    assert links and set(links) == set(CLICK.findall(text))
    assert not re.search(r'href="https://example\.com/ai-review', html)
    assert "https://example.com/ai-review" not in text
    # the unsubscribe and preference links are never wrapped
    unsubscribe = msg["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith(f"{SITE}/u/") and unsubscribe in html and unsubscribe in text
    assert re.search(rf'href="{SITE}/p/[^"]+"', html)

    client = api_client(settings, world, role="viewer")
    targets = {}
    for link in sorted(set(links)):
        got = client.get(link.removeprefix(SITE), follow_redirects=False)
        assert got.status_code == 302
        assert got.headers["cache-control"] == "no-store"
        assert got.headers["referrer-policy"] == "no-referrer"
        targets[link] = got.headers["location"]
    assert set(targets.values()) == expected_urls(world, "governance,capital")
    first = sorted(targets)[0]
    assert client.get(first.removeprefix(SITE), follow_redirects=False).status_code == 302

    answer = client.get("/api/v1/clicks", params={"days": 30})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["tracking"] is True and data["per_reader"] is False and data["days"] == 30
    assert data["total"] == len(targets) + 1 == clicks_total(world)
    top = data["events"][0]
    assert (top["url"], top["clicks"]) == (targets[first], 2)
    assert {t["topic"] for t in data["topics"]} <= {"governance", "capital", "picks"}
    assert sum(t["clicks"] for t in data["topics"]) == data["total"]
    # the Chinese reader's mail is tracked too, in its own sections
    _, zh_text, _ = mailed(smtp_server, "li@example.com")
    assert CLICK.findall(zh_text)
    for bad in (0, 367, "x"):
        assert client.get("/api/v1/clicks", params={"days": bad}).status_code == 422


def test_forged_foreign_and_robot_clicks_are_not_counted_nor_redirected_elsewhere(
    world, db_url, smtp_server
):
    settings = send_digest(world, db_url, smtp_server, click_tracking=True)
    _, text, _ = mailed(smtp_server, "ada@example.com")
    link = CLICK.findall(text)[0].removeprefix(SITE)
    client = TestClient(create_app(settings=settings, engine=world))
    source = client.get(link, follow_redirects=False).headers["location"]
    assert clicks_total(world) == 1
    with Session(world) as s:
        event = s.execute(select(Event).where(Event.url == source)).scalar_one()
        other = s.execute(select(Event).where(Event.url != source)).scalars().first()

    token = link.removeprefix("/r/")
    body, mac = token.split(".")
    swapped = "A" if mac[0] != "A" else "B"
    forged = [
        f"/r/{body}.{swapped}{mac[1:]}",  # a changed signature
        f"/r/{body[:-2]}.{mac}",  # a changed payload
        # signed with our key, but for a URL the event does not have
        "/r/"
        + make_token(
            TEST_SECRET_KEY,
            event_id=event.id,
            topic="capital",
            url="https://evil.example/",
            period="2025-07",
        ),  # fmt: skip
        # another event's own URL under this event's id
        "/r/"
        + make_token(
            TEST_SECRET_KEY, event_id=event.id, topic="capital", url=other.url, period="2025-07"
        ),
        # a real-looking token signed with another site's key
        "/r/"
        + make_token(
            "another-site-key-0123456789abcdefghijklmnopqrstuv",
            event_id=event.id,
            topic="capital",
            url=event.url,
            period="2025-07",
        ),  # fmt: skip
        "/r/not-a-token",
        "/r/" + "A" * 400,
        f"{link}/{body}.{mac}",  # a reader part that is not one
    ]
    for path in forged:
        got = client.get(path, follow_redirects=False)
        assert got.status_code == 404, path
        assert "location" not in got.headers
        assert "This link is not valid" in got.text
        head = client.head(path, follow_redirects=False)
        assert head.status_code == 404 and "location" not in head.headers
    # HEAD (link checkers), robots and prefetches are sent on, but not counted
    head = client.head(link, follow_redirects=False)
    assert head.status_code == 302 and head.headers["location"] == source
    for headers in (
        {"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1)"},
        {"user-agent": "Slackbot-LinkExpanding 1.0"},
        {"sec-purpose": "prefetch"},
        {"purpose": "prefetch"},
    ):
        assert client.get(link, headers=headers, follow_redirects=False).status_code == 302
    assert clicks_total(world) == 1
    # counting turned off later: links in mail already sent still lead to the source
    off = TestClient(create_app(settings=settings.model_copy(update={"click_tracking": False}),
                                engine=world))  # fmt: skip
    assert off.get(link, follow_redirects=False).headers["location"] == source
    assert clicks_total(world) == 1


def test_without_tracking_the_mail_has_the_sources_own_links(world, db_url, smtp_server):
    send_digest(world, db_url, smtp_server)
    msg, text, html = mailed(smtp_server, "ada@example.com")
    assert "/r/" not in text and "/r/" not in html
    urls = set(re.findall(r"https://example\.com/ai-review/2025-07/[a-z0-9-]+", text))
    assert urls == expected_urls(world, "governance,capital")
    assert set(re.findall(r'href="(https://example\.com/ai-review/[^"]+)"', html)) == urls


def owner_session(client: TestClient, token: str) -> str:
    form = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/admin/").text)


def test_per_reader_counts_only_while_an_owner_has_them_on(world, db_url, smtp_server):
    settings = mail_settings(db_url, smtp_server.url, click_tracking=True)
    with Session(world) as s:
        _, owner = create_token(session=s, name="boss", role="owner")
        _, editor = create_token(session=s, name="desk", role="editor")
        s.commit()
    # served over plain HTTP here: the session cookie of an https site would not be sent
    app = create_app(settings=settings.model_copy(update={"base_url": "http://testserver"}),
                     engine=world)  # fmt: skip
    desk = TestClient(app)
    csrf = owner_session(desk, editor)
    page = desk.get("/admin/").text
    assert "Per-reader counts are <strong>off</strong>" in page
    assert "/admin/clicks/per-reader" not in page  # only owners get the switch
    refused = desk.post("/admin/clicks/per-reader", data={"csrf_token": csrf, "on": "1"})
    assert refused.status_code == 403

    boss = TestClient(app)
    csrf = owner_session(boss, owner)
    assert "Turn per-reader counts on…" in boss.get("/admin/").text
    turned = boss.post("/admin/clicks/per-reader", data={"csrf_token": csrf, "on": "1"})
    assert turned.status_code == 200 and "Per-reader click counts are on." in turned.text
    assert "Per-reader counts are <strong>on</strong>" in turned.text

    plan(world, settings)
    drain(world, settings)
    _, text, html = mailed(smtp_server, "ada@example.com")
    links = CLICK.findall(text)
    assert links and all(link.count("/") == 5 for link in links)  # /r/<token>/<reader>
    assert set(links) == set(CLICK.findall(html))
    for link in links[:2]:
        assert boss.get(link.removeprefix(SITE), follow_redirects=False).status_code == 302
    with Session(world) as s:
        assert s.execute(select(func.sum(ReaderClick.count))).scalar_one() == 2
    api = api_client(settings, world, role="viewer")
    data = api.get("/api/v1/clicks").json()
    assert (data["per_reader"], data["readers"], data["total"]) == (True, 1, 2)
    assert api.get("/api/v1/clicks/readers").status_code == 403  # personal data: owners
    owner_api = api_client(settings, world, name="boss-api", role="owner")
    readers = owner_api.get("/api/v1/clicks/readers").json()
    assert readers == {"per_reader": True, "data": [{"email": "ada@example.com", "clicks": 2}]}
    # a changed reader part is refused like a changed token
    token, reader = links[0].removeprefix(f"{SITE}/r/").split("/")
    ref, mac = reader.split(".")
    changed = f"{ref}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    assert boss.get(f"/r/{token}/{changed}", follow_redirects=False).status_code == 404

    # erasing the reader deletes their per-reader counts; daily counts stay
    with Session(world) as s:
        from newsletter.audience.subscribers import get_subscriber

        remove_subscriber(session=s, subscriber=get_subscriber(session=s, email="ada@example.com"))
        s.commit()
        assert s.execute(select(func.count()).select_from(ReaderClick)).scalar_one() == 0
    assert clicks_total(world) == 2
    assert owner_api.get("/api/v1/clicks/readers").json()["data"] == []

    # turned off: per-reader counts are deleted and no longer kept
    boss.get(links[0].removeprefix(SITE), follow_redirects=False)
    turned = boss.post("/admin/clicks/per-reader", data={"csrf_token": csrf, "on": "0"})
    assert "Per-reader click counts are off" in turned.text
    assert api.get("/api/v1/clicks").json()["per_reader"] is False
    audit = api.get("/api/v1/audit").json()["data"]
    assert [a["action"] for a in audit[:2]] == ["clicks.per_reader", "clicks.per_reader"]
    assert audit[0]["token_name"] == "boss" and audit[0]["detail"].startswith("off")


def test_api_switch_is_for_owners(world, web_settings):
    editor = api_client(web_settings, world, name="desk", role="editor")
    assert editor.put("/api/v1/clicks/per-reader", json={"on": True}).status_code == 403
    owner = api_client(web_settings, world, name="boss", role="owner")
    got = owner.put("/api/v1/clicks/per-reader", json={"on": True})
    assert got.status_code == 200 and got.json() == {"per_reader": True, "deleted": 0}
    assert owner.get("/api/v1/clicks").json()["per_reader"] is True


# --- over real HTTP, and the dashboard in Chromium -------------------------------------------


def test_clicks_over_http_on_the_dashboard(page, world, db_url, smtp_server, screenshot_dir):
    port = free_port()
    settings = mail_settings(
        db_url, smtp_server.url, click_tracking=True, base_url=f"http://127.0.0.1:{port}"
    )
    with Session(world) as s:
        _, token = create_token(session=s, name="analyst", role="viewer")
        s.commit()
    plan(world, settings)
    drain(world, settings)
    _, text, _ = mailed(smtp_server, "ada@example.com")
    links = sorted(set(re.findall(rf"http://127\.0\.0\.1:{port}/r/[A-Za-z0-9_\-.]+", text)))
    assert len(links) >= 3
    with serving(create_app(settings=settings, engine=world), port):
        sources = []
        with httpx.Client(follow_redirects=False) as http:
            for n, link in enumerate(links[:3]):
                for _ in range(3 - n):  # 3, 2 and 1 clicks
                    got = http.get(link)
                    assert got.status_code == 302
                sources.append(got.headers["location"])
        page.goto(f"http://127.0.0.1:{port}/admin/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"http://127.0.0.1:{port}/admin/")
        card = page.locator("section.clicks")
        expect(card.locator("h2")).to_contain_text("Clicks, last 30 days")
        expect(card.locator("[data-clicks=total]")).to_have_text("6")
        rows = card.locator("table[aria-label='Most clicked events'] tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.nth(0).locator("td.num")).to_have_text("3")
        expect(rows.nth(0).locator("a")).to_have_attribute("href", sources[0])
        topics = card.locator("table[aria-label='Clicks by topic'] td.num").all_text_contents()
        assert sum(int(n) for n in topics) == 6
        expect(card.locator("summary")).to_have_count(0)  # a viewer gets no switch
        for width in (390, 1200):
            page.set_viewport_size({"width": width, "height": 900})
            # nothing in the card reaches past the window (the page's older channel
            # table is not this card's business)
            wide = card.evaluate(
                "c => Array.from(c.querySelectorAll('*')).filter(e =>"
                " e.getBoundingClientRect().right > document.documentElement.clientWidth)"
                ".map(e => e.tagName)"
            )
            assert wide == [], (width, wide)
            card.scroll_into_view_if_needed()
            shot = screenshot_dir / f"admin-clicks-{width}.png"
            card.screenshot(path=str(shot))
            assert shot.stat().st_size > 5_000


def test_instant_alerts_carry_counted_links_too(engine, db_url, smtp_server):
    from newsletter.ingest.files import import_records
    from newsletter.planning.alerts import enqueue_recent_alerts
    from newsletter.topics.catalogue import ensure_default_topics

    settings = mail_settings(db_url, smtp_server.url, alert_batch_seconds=0, click_tracking=True)
    with Session(engine) as s:
        ensure_default_topics(session=s)
        add_subscriber(
            session=s,
            sub_in=SubscriberIn(email="now@example.com", frequency="instant", topics="hardware"),
        )
        records = [
            ("1", {"title": "New GPU cluster announced", "url": "https://e.com/g1",
                   "occurred_on": "2025-08-01"}),
            ("2", {"title": "Accelerator start-up ships a chip", "url": "https://e.com/g2",
                   "occurred_on": "2025-08-01"}),
        ]  # fmt: skip
        import_records(session=s, records=iter(records))
        assert enqueue_recent_alerts(session=s, settings=settings) == 2
        s.commit()
    drain(engine, settings)
    _, text, html = mailed(smtp_server, "now@example.com")
    links = sorted(set(CLICK.findall(text)))
    assert len(links) == 2 and set(CLICK.findall(html)) == set(links)
    assert "https://e.com/" not in text
    client = TestClient(create_app(settings=settings, engine=engine))
    got = {
        client.get(u.removeprefix(SITE), follow_redirects=False).headers["location"] for u in links
    }
    assert got == {"https://e.com/g1", "https://e.com/g2"}
    with Session(engine) as s:
        rows = s.execute(select(ClickCount.topic, ClickCount.count)).all()
    assert sorted(rows) == [("hardware", 1), ("hardware", 1)]


def test_the_reader_page_shows_their_clicks_per_event_while_per_reader_counts_are_on(
    world, db_url, smtp_server
):
    from markupsafe import escape

    from newsletter.audience.subscribers import get_subscriber

    settings = mail_settings(db_url, smtp_server.url, click_tracking=True)
    with Session(world) as s:
        _, owner = create_token(session=s, name="boss", role="owner")
        _, editor = create_token(session=s, name="desk", role="editor")
        _, viewer = create_token(session=s, name="watch", role="viewer")
        ada = get_subscriber(session=s, email="ada@example.com").id
        li = get_subscriber(session=s, email="li@example.com").id
        s.commit()
    app = create_app(settings=settings.model_copy(update={"base_url": "http://testserver"}),
                     engine=world)  # fmt: skip
    boss, desk, watch = TestClient(app), TestClient(app), TestClient(app)
    csrf = owner_session(boss, owner)
    owner_session(desk, editor)
    owner_session(watch, viewer)
    # off: no clicks section for anyone
    assert 'id="reader-clicks"' not in boss.get(f"/admin/subscribers/{ada}").text
    boss.post("/admin/clicks/per-reader", data={"csrf_token": csrf, "on": "1"})

    plan(world, settings)
    drain(world, settings)
    _, text, _ = mailed(smtp_server, "ada@example.com")
    links = list(dict.fromkeys(CLICK.findall(text)))  # in the mail's order, once each
    for link in [links[0], links[0], links[1]]:
        assert boss.get(link.removeprefix(SITE), follow_redirects=False).status_code == 302
    with Session(world) as s:
        counted = dict(
            s.execute(
                select(ReaderClick.event_id, func.sum(ReaderClick.count)).group_by(
                    ReaderClick.event_id
                )
            ).all()
        )
        titles = {i: s.get(Event, i).title["en"] for i in counted}
    assert sorted(counted.values()) == [1, 2]
    most = max(counted, key=counted.get)

    for client in (boss, desk):
        page = client.get(f"/admin/subscribers/{ada}").text
        assert "Their clicks" in page
        rows = re.findall(
            r'<tr data-event-id="(\d+)">\s*<td data-label="Event"><a href="/admin/events/\d+">'
            r'([^<]*)</a></td>\s*<td data-label="Clicks" class="num">(\d+)</td>',
            page,
        )
        assert [(int(i), int(n)) for i, _, n in rows] == sorted(
            counted.items(), key=lambda kv: -kv[1]
        )
        assert rows[0][0] == str(most)
        assert {int(i): t for i, t, _ in rows} == {i: str(escape(t)) for i, t in titles.items()}
    # another reader's page has none of Ada's clicks
    assert "No clicks counted for them." in boss.get(f"/admin/subscribers/{li}").text
    # a viewer never sees per-reader counts
    assert 'id="reader-clicks"' not in watch.get(f"/admin/subscribers/{ada}").text

    # turned off: the section is gone (and the counts with it)
    boss.post("/admin/clicks/per-reader", data={"csrf_token": csrf, "on": "0"})
    page = boss.get(f"/admin/subscribers/{ada}").text
    assert 'id="reader-clicks"' not in page and "Their clicks" not in page


def test_reader_clicks_in_chromium_fit_a_phone_and_a_desktop(
    page, world, db_url, smtp_server, screenshot_dir
):
    from newsletter.audience.subscribers import get_subscriber
    from newsletter.feedback.clicks import set_per_reader

    port = free_port()
    settings = mail_settings(
        db_url, smtp_server.url, click_tracking=True, base_url=f"http://127.0.0.1:{port}"
    )
    with Session(world) as s:
        _, token = create_token(session=s, name="desk", role="editor")
        set_per_reader(s, True)
        ada = get_subscriber(session=s, email="ada@example.com").id
        s.commit()
    plan(world, settings)
    drain(world, settings)
    _, text, _ = mailed(smtp_server, "ada@example.com")
    links = list(dict.fromkeys(re.findall(rf"http://127\.0\.0\.1:{port}/r/\S+/\S+", text)))
    assert len(links) >= 2
    with serving(create_app(settings=settings, engine=world), port):
        with httpx.Client(follow_redirects=False) as http:
            for link in [links[0], links[0], links[1]]:
                assert http.get(link).status_code == 302
        page.goto(f"http://127.0.0.1:{port}/admin/")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"http://127.0.0.1:{port}/admin/")
        page.goto(f"http://127.0.0.1:{port}/admin/subscribers/{ada}")
        card = page.locator("section[aria-labelledby=clicks-h]")
        expect(card.locator("h2")).to_have_text("Their clicks")
        rows = card.locator("#reader-clicks tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("td.num")).to_have_text("2")
        expect(rows.nth(1).locator("td.num")).to_have_text("1")
        for width in (390, 1200):
            page.set_viewport_size({"width": width, "height": 900})
            wider = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wider <= 0, (width, wider)
            card.scroll_into_view_if_needed()
            shot = screenshot_dir / f"admin-reader-clicks-{width}.png"
            card.screenshot(path=str(shot))
            assert shot.stat().st_size > 5_000
