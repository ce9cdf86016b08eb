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
