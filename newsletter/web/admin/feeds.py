"""Admin pages for feeds: the list with each feed's last poll and next one, add, edit,
remove (its events stay) and "Poll now"."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from newsletter.core.models import Feed, utcnow
from newsletter.ingest.feeds import (
    CHECK_SECONDS,
    FeedError,
    add_feed,
    event_counts,
    list_feeds,
    poll_interval,
    remove_feed,
    update_feed,
)
from newsletter.pipeline import poll_feeds
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, note, render
from newsletter.web.deps import SessionDep, SettingsDep

router = APIRouter(route_class=AdminRoute)

FIELDS = ("url", "name", "region", "language")
EMPTY_FORM = {"url": "", "name": "", "region": "global", "language": "en"}


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def when(value: dt.datetime | None) -> str:
    return f"{_aware(value):%Y-%m-%d %H:%M} UTC" if value else ""


def duration(delta: dt.timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {rest} min" if rest else "")


def next_poll(feed: Feed, settings, now: dt.datetime) -> dict[str, str]:
    """When the scheduler polls the feed next, and why then: the interval it uses
    (NEWSLETTER_FEED_POLL_MINUTES, doubled for each error in a row) and its check of due
    feeds every minute."""
    check = f"{CHECK_SECONDS / 60:g} min"
    due = _aware(feed.next_poll_at) if feed.next_poll_at else None
    if due is None or due <= now:
        at = "at the scheduler's next check"
        detail = f"due now; the scheduler looks for due feeds every {check}"
    else:
        at = when(due)
        detail = f"within {check} after that, when the scheduler next looks for due feeds"
    every = duration(poll_interval(settings, 0))
    if feed.consecutive_failures:
        wait = duration(poll_interval(settings, feed.consecutive_failures))
        n = feed.consecutive_failures
        why = (
            f"{n} failed poll{'s' if n != 1 else ''} in a row: it waits {wait} after the last "
            f"try (normally every {every})"
        )
    else:
        why = f"polled every {every}"
    return {"at": at, "detail": detail, "why": why}


def last_result(feed: Feed) -> dict[str, Any]:
    if feed.last_polled_at is None:
        return {"kind": "never", "text": "not polled yet"}
    if feed.last_error:
        return {"kind": "error", "text": feed.last_error}
    if feed.last_new_events is None:
        return {"kind": "ok", "text": "polled"}
    n = feed.last_new_events
    return {"kind": "ok", "text": f"{n} new event{'s' if n != 1 else ''}"}


def _rows(session: Session, settings, feeds: list[Feed]) -> list[dict[str, Any]]:
    now, counts = utcnow(), event_counts(session=session)
    return [
        {
            "feed": f,
            "events": counts.get(f.id, 0),
            "polled": when(f.last_polled_at),
            "result": last_result(f),
            "next": next_poll(f, settings, now),
        }
        for f in feeds
    ]


def _feed_or_404(session: Session, feed_id: int) -> Feed:
    feed = _known(session, feed_id)
    if feed is None:
        raise HTTPException(404, f"no feed {feed_id}")
    return feed


def _list_page(request, admin, session, settings, *, form=None, errors=None, status=200,
               polled: Feed | None = None, added: Feed | None = None, removed: str = "",
               kept: int = 0):  # fmt: skip
    return render(
        request,
        "feeds.html.j2",
        admin=admin,
        section="feeds",
        status=status,
        rows=_rows(session, settings, list_feeds(session=session)),
        form=form or EMPTY_FORM,
        errors=errors or {},
        polled=_rows(session, settings, [polled])[0] if polled else None,
        added=added,
        removed=removed,
        kept=kept,
        every=duration(poll_interval(settings, 0)),
    )


def _form_errors(exc: FeedError) -> dict[str, str]:
    return {exc.field or "form": str(exc)}


@router.get("/feeds")
def feeds_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    polled: int | None = None,
    added: int | None = None,
    removed: str = "",
    kept: int = 0,
):
    return _list_page(
        request, admin, session, settings,
        polled=_known(session, polled), added=_known(session, added),
        removed=removed[:200], kept=kept,
    )  # fmt: skip


def _known(session: Session, feed_id: int | None) -> Feed | None:
    return session.get(Feed, feed_id) if feed_id and 0 < feed_id < 2**31 else None


@router.post("/feeds")
def feed_add(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    url: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "global",
    language: Annotated[str, Form()] = "en",
):
    form = {"url": url.strip(), "name": name.strip(), "region": region, "language": language}
    if not form["url"]:
        errors = {"url": "the feed's address (http or https) is required"}
        return _list_page(request, admin, session, settings, form=form, errors=errors, status=422)
    try:
        feed = add_feed(session=session, settings=settings, url=form["url"],
                        name=form["name"] or None, region=region, language=language)  # fmt: skip
    except FeedError as exc:  # nothing was stored
        session.rollback()
        errors = _form_errors(exc)
        return _list_page(request, admin, session, settings, form=form, errors=errors, status=422)
    note(session, admin, "feed.add", feed.name, feed.url)
    session.commit()  # stored before the browser follows the redirect
    return RedirectResponse(f"/admin/feeds?{urlencode({'added': feed.id})}#feed-{feed.id}",
                            status_code=303)  # fmt: skip


def _feed_page(request, admin, session, settings, feed, *, form=None, errors=None,
               status=200, saved=False, polled=False):  # fmt: skip
    row = _rows(session, settings, [feed])[0]
    return render(
        request,
        "feed.html.j2",
        admin=admin,
        section="feeds",
        status=status,
        row=row,
        feed=feed,
        form=form or {key: getattr(feed, key) for key in FIELDS},
        errors=errors or {},
        saved=saved,
        polled=polled,
    )


@router.get("/feeds/{feed_id}")
def feed_page(
    request: Request,
    feed_id: int,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    saved: int = 0,
    polled: int = 0,
):
    feed = _feed_or_404(session, feed_id)
    return _feed_page(request, admin, session, settings, feed, saved=bool(saved),
                      polled=bool(polled))  # fmt: skip


@router.post("/feeds/{feed_id}")
def feed_save(
    request: Request,
    feed_id: int,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    url: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
):
    feed = _feed_or_404(session, feed_id)
    form = {"url": url.strip(), "name": name.strip(), "region": region, "language": language}
    errors = {k: f"the feed's {k} is required" for k in ("url", "name") if not form[k]}
    before = feed.name
    if not errors:
        try:
            changed = update_feed(session=session, settings=settings, feed=feed, **form)
        except FeedError as exc:
            errors = _form_errors(exc)
    if errors:  # the form again with what was typed; nothing is stored
        session.rollback()
        return _feed_page(request, admin, session, settings, _feed_or_404(session, feed_id),
                          form=form, errors=errors, status=422)  # fmt: skip
    if changed:
        detail = ", ".join(f"{key}: {getattr(feed, key)}" for key in changed)
        note(session, admin, "feed.edit", before, detail)
    session.commit()  # stored before the browser follows the redirect
    return RedirectResponse(f"/admin/feeds/{feed.id}?saved=1", status_code=303)


@router.post("/feeds/{feed_id}/poll")
def feed_poll(
    request: Request,
    feed_id: int,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    back: Annotated[str, Form()] = "",
):
    feed = _feed_or_404(session, feed_id)
    session.commit()  # polling writes in its own transaction
    (result,) = poll_feeds(engine=request.app.state.engine, settings=settings, only=feed.name)
    if result.status == "error":
        detail = f"error: {result.error}"
    else:
        detail = f"{len(result.new_ids)} new, {result.duplicates} already stored"
    note(session, admin, "feed.poll", feed.name, detail)
    session.commit()  # stored before the browser follows the redirect
    if back == "feed":
        return RedirectResponse(f"/admin/feeds/{feed.id}?polled=1", status_code=303)
    return RedirectResponse(f"/admin/feeds?polled={feed.id}", status_code=303)


@router.post("/feeds/{feed_id}/remove")
def feed_remove(feed_id: int, admin: CsrfDep, session: SessionDep):
    feed = _feed_or_404(session, feed_id)
    kept = event_counts(session=session).get(feed.id, 0)
    remove_feed(session=session, feed=feed)
    note(session, admin, "feed.remove", feed.name, f"{feed.url}; its {kept} events stay")
    query = urlencode({"removed": feed.name, "kept": kept})
    session.commit()  # stored before the browser follows the redirect
    return RedirectResponse(f"/admin/feeds?{query}", status_code=303)
