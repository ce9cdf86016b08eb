"""Where a click link may lead: only to a web page. Event URLs are checked when they are
stored (http or https), but the redirect does not rely on that alone: a row written
before that check or by hand must not turn a signed link into a script or data URL."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.core.models import ClickCount, Event
from newsletter.rendering.click_links import make_token
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.settings import mail_settings
from tests.web.test_clicks import world  # noqa: F401


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "//evil.example/",
        "ms-msdt:/id PCWDiagnostic",
    ],
)
def test_a_signed_link_never_leads_to_anything_but_a_web_page(engine, db_url, url):
    with Session(engine) as s:
        event = Event(title={"en": "Stored by hand"}, url=url, title_key="stored by hand",
                      occurred_on=dt.date(2025, 7, 1))  # fmt: skip
        s.add(event)
        s.commit()
        event_id = event.id
    settings = mail_settings(db_url, click_tracking=True)
    client = TestClient(create_app(settings=settings, engine=engine))
    token = make_token(TEST_SECRET_KEY, event_id=event_id, topic="picks", url=url,
                       period="2025-07")  # fmt: skip
    for method in ("GET", "HEAD"):
        got = client.request(method, f"/r/{token}", follow_redirects=False)
        assert got.status_code == 404, (method, got.headers.get("location"))
        assert "location" not in got.headers
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(ClickCount)).scalar_one() == 0


def test_an_erased_readers_old_links_count_nothing_per_reader(world, db_url, smtp_server):  # noqa: F811
    from newsletter.audience.subscribers import get_subscriber
    from newsletter.core.models import ReaderClick
    from newsletter.core.options import CLICKS_PER_READER, set_flag
    from newsletter.pipeline import remove_subscriber
    from tests.support.planning import plan
    from tests.support.workers import drain
    from tests.web.test_clicks import CLICK, SITE, clicks_total, mailed

    settings = mail_settings(db_url, smtp_server.url, click_tracking=True)
    with Session(world) as s:
        set_flag(s, CLICKS_PER_READER, True)
        s.commit()
    plan(world, settings)
    drain(world, settings)
    _, text, _ = mailed(smtp_server, "ada@example.com")
    link = CLICK.findall(text)[0].removeprefix(SITE)
    client = TestClient(create_app(settings=settings, engine=world))
    with Session(world) as s:
        remove_subscriber(session=s, subscriber=get_subscriber(session=s, email="ada@example.com"))
        s.commit()
    # the link still leads to the source and adds to the daily count, but to no reader's
    assert client.get(link, follow_redirects=False).status_code == 302
    assert clicks_total(world) == 1
    with Session(world) as s:
        assert s.execute(select(func.count()).select_from(ReaderClick)).scalar_one() == 0
