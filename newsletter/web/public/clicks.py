"""/r/<token>: a click on an event's link in an email, counted and sent on to the event.

Only a token this site signed leads anywhere, and only to the URL of the event it names
(rendering/click_links.py): anything else is the site's 404 page, never a redirect. A
GET from a person counts one click (feedback/clicks.py: a daily count, no reader
data); HEAD requests, link previews and prefetches are redirected but not counted.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

from newsletter.feedback.clicks import ClickError, count_click, target
from newsletter.rendering.click_links import ClickTokenError, read_reader_ref, read_token
from newsletter.web.deps import SessionDep, SettingsDep
from newsletter.web.public.errors import PageError

router = APIRouter(include_in_schema=False)

# user agents of link checkers, previews and crawlers: their fetches are nobody's click
ROBOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|preview|prefetch|scanner|linkcheck|"
    r"facebookexternalhit|headlesschrome|curl/|wget/",
    re.IGNORECASE,
)
PREFETCH_HEADERS = ("purpose", "sec-purpose", "x-purpose", "x-moz")
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def is_a_person(request: Request) -> bool:
    """A GET that is not a robot's or a browser's speculative fetch."""
    if request.method != "GET":
        return False
    if any(
        request.headers.get(h, "").lower() in ("prefetch", "preview", "prerender")
        for h in PREFETCH_HEADERS
    ):
        return False
    return not ROBOTS.search(request.headers.get("user-agent", ""))


@router.api_route("/r/{token}", methods=["GET", "HEAD"])
def click(token: str, request: Request, session: SessionDep, settings: SettingsDep):
    return _follow(request, session, settings, token, None)


@router.api_route("/r/{token}/{reader}", methods=["GET", "HEAD"])
def reader_click(
    token: str, reader: str, request: Request, session: SessionDep, settings: SettingsDep
):
    return _follow(request, session, settings, token, reader)


def _follow(request: Request, session, settings, token: str, reader: str | None):
    try:
        signed = read_token(settings.secret_key, token)
        delivery_id = read_reader_ref(settings.secret_key, reader) if reader else None
        url = target(session, signed)
    except (ClickTokenError, ClickError):
        raise PageError(404, "err.link_invalid") from None
    # links in mail sent while counting was on keep working after it is turned off
    if settings.click_tracking and is_a_person(request):
        count_click(session, signed, delivery_id=delivery_id)
    return RedirectResponse(url, status_code=302, headers=HEADERS)
