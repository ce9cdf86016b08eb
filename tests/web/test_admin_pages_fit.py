"""Every admin page in Chromium at a phone's and a desktop's width: nothing wider than the
screen, every form field named by a label, every control reachable with the keyboard."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.pipeline.sample import add_demo_readers, load_sample
from tests.support.web import ADMIN_PAGES
from tests.web.test_admin_lists_ui import shoot
from tests.web.test_admin_ui import add_history, browser_login

# pages whose screenshots no other test takes
SHOTS = {"/admin/": "dashboard", "/admin/topics": "topics", "/admin/topics/hardware": "topic",
         "/admin/preview": "preview", "/admin/send": "send", "/admin/audit": "audit"}  # fmt: skip

OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
UNLABELLED = """() => [...document.querySelectorAll(
    'input:not([type=hidden]):not([type=submit]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))"""
UNREACHABLE = """() => [...document.querySelectorAll('a[href], button, input, select, textarea')]
  .filter(el => el.type !== 'hidden' && !el.disabled && el.offsetParent !== null
                && el.tabIndex < 0)
  .map(el => el.outerHTML.slice(0, 120))"""


@pytest.fixture
def owner_token(engine) -> str:
    with Session(engine, expire_on_commit=False) as session:
        load_sample(session=session)
        add_demo_readers(session=session)
        _, token = create_token(session=session, name="owner", role="owner")
        session.commit()
    add_history(engine)
    return token


def test_every_admin_page_fits_a_phone_and_a_desktop(
    page, live_server, engine, owner_token, screenshot_dir
):
    browser_login(page, live_server, owner_token)
    problems = []
    for path in [*ADMIN_PAGES, "/admin/tokens"]:
        for width in (390, 1200):
            page.set_viewport_size({"width": width, "height": 900})
            response = page.goto(live_server.url + path)
            assert response is not None and response.status == 200, path
            wider = page.evaluate(OVERFLOW)
            if wider > 0:
                problems.append(f"{path} at {width}px: {wider}px wider than the screen")
        for html in page.evaluate(UNLABELLED):
            problems.append(f"{path}: a field without a label: {html}")
        for html in page.evaluate(UNREACHABLE):
            problems.append(f"{path}: out of the keyboard's reach: {html}")
        if path in SHOTS:
            shoot(page, SHOTS[path], screenshot_dir)
    assert not problems, "\n".join(problems)
