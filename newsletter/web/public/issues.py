"""The archive's pages and feeds: the index, one issue per (frequency, period,
language), old edition links, and RSS, Atom and JSON Feed."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from newsletter.rendering.labels import LANGUAGES
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep
from newsletter.web.public import archive
from newsletter.web.public.errors import PageError
from newsletter.web.public.pages import page_language, render

router = APIRouter(include_in_schema=False)


@router.get("/archive", response_class=HTMLResponse)
def archive_index(request: Request, session: SessionDep, env: EnvDep):
    """Each published (frequency, period) once, in the page's language."""
    return render(
        request,
        env,
        "web/public/archive.html.j2",
        issues=archive.published_issues(session),
    )


@router.get("/archive/{frequency}/{period}", response_class=HTMLResponse)
def archive_issue(
    frequency: str,
    period: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
):
    """One issue: every topic's events of the period, the sharp take, a way to subscribe."""
    issue = archive.published_issue(session, frequency, period)
    lang = page_language(request)
    return render(
        request,
        env,
        "web/public/issue.html.j2",
        lang=lang,
        issue=archive.build_issue(session, issue, lang),
        languages=issue.languages,
        base=settings.base_url.rstrip("/"),
    )


@router.get("/archive/{edition_id:int}")
def archive_edition(edition_id: int, session: SessionDep):
    """Links to a sent edition (from before issues had their own addresses) lead to its issue."""
    # ids beyond a 64-bit integer exist in no database (and SQLite's driver raises on them)
    found = archive.sent_edition_issue(session, edition_id) if 0 < edition_id < 2**63 else None
    if found is None:
        raise PageError(404, "err.no_edition")
    frequency, period, language = found
    return RedirectResponse(f"/archive/{frequency}/{period}?lang={language}", status_code=301)


@router.get("/archive/feed.{kind}")
def archive_feed(
    kind: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    topic: str | None = None,
    lang: str | None = None,
):
    """RSS 2.0, Atom and JSON Feed 1.1: each item one issue, with its content."""
    if kind not in ("rss", "atom", "json"):
        raise HTTPException(404, "feeds are feed.rss, feed.atom and feed.json")
    topic = archive.check_topic(session, topic)
    language = lang if lang in LANGUAGES else None
    items = archive.feed_issues(session, topic=topic, language=language)
    base = settings.base_url.rstrip("/")
    env = request.app.state.env
    if kind == "json":
        return JSONResponse(
            archive.json_feed(items, base, topic, language, env),
            media_type="application/feed+json",
        )
    body = archive.xml_feed(kind, items, base, topic, language, env)
    media = "application/rss+xml" if kind == "rss" else "application/atom+xml"
    return Response(body, media_type=f"{media}; charset=utf-8")
