"""Admin pages for events: search and filter (keyset pages), add and edit one, import a
file, pin or unpin an editor's pick, and delete one (its waiting alerts are cancelled).
Every change is kept in the audit log."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session

from newsletter import pipeline
from newsletter.core.models import Event
from newsletter.core.text import title_key
from newsletter.delivery import outbox
from newsletter.feedback import clicks
from newsletter.ingest import event_search
from newsletter.ingest.event_search import REGION_NAMES, EventFilter, SearchError
from newsletter.ingest.events import (
    EventConflict,
    find_duplicate,
    localised,
    primary_title,
    set_pinned,
    topic_matches,
    update_event,
)
from newsletter.ingest.files import FORMATS, ImportFileError
from newsletter.topics.catalogue import TopicError, list_topics, topics_by_slug
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, note, render
from newsletter.web.api.events import MAX_UPLOAD_BYTES, import_upload
from newsletter.web.api.models import EventCreate
from newsletter.web.deps import SessionDep, SettingsDep

router = APIRouter(route_class=AdminRoute)

MAX_ID = event_search.MAX_ID
#: refused records an import's page lists (a file that is all wrong must not make a page
#: of millions of rows)
REFUSED_LISTED = 5000
DONE = {
    "added": "Added.",
    "saved": "Saved.",
    "pinned": "Pinned: it opens the monthly digest's editor's picks for every reader.",
    "unpinned": "Unpinned: it is no longer an editor's pick.",
}
# what the list may say after a deletion (nothing else from the query string is shown)
_DELETED = re.compile(
    r"Event [0-9]+ deleted; [0-9]+ waiting alerts? cancelled"
    r"(; its [0-9]+ counted clicks? deleted with it)?\."
)
FIELDS = ("title_en", "title_zh", "summary_en", "summary_zh", "url", "occurred_on",
          "region", "source_en", "source_zh", "language", "importance")  # fmt: skip
# which form fields a validation error of a record's key is shown next to
_ERROR_FIELD = {"title": "title", "summary": "summary", "source": "source", "sources": "source",
                "url": "url", "occurred_on": "occurred_on", "region": "region",
                "language": "language", "importance": "importance", "topics": "topics"}  # fmt: skip


def _list_url(match: EventFilter, **extra: Any) -> str:
    params = match.as_params() | {k: v for k, v in extra.items() if v}
    return "/admin/events" + ("?" + urlencode(params) if params else "")


def _back_to_list(back: str) -> str:
    ok = back.startswith("/admin/events") and "//" not in back and "\\" not in back
    return back if ok else "/admin/events"


@router.get("/events")
def events_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    q: str = "",
    month: str = "",
    topic: str = "",
    region: str = "",
    source: str = "",
    before: str = "",
    done: str = "",
):
    month = "" if month.strip() == "all" else month.strip()
    match = EventFilter(q=q.strip()[:500], month=month, topic=topic.strip(),
                        region=region.strip(), source=source.strip()[:200])  # fmt: skip
    error, page, total, code = "", None, 0, 200
    try:
        page = event_search.find(session, match, before=before or None)
        total = event_search.count(session, match, page=page, paged=bool(before))
    except SearchError as exc:
        error, code = str(exc), 400
    rows = []
    found = page.rows if page else []
    matches = event_search.matches_by_event(session, [e.id for e in found])
    for e in found:
        title = localised(e.title, "en")
        rows.append(
            {
                "event": e,
                "title": title,
                "other_titles": [v for v in e.title.values() if v != title],
                "matches": matches[e.id],
            }
        )
    filtered = bool(match.as_params())
    here = _list_url(match, before=before if page else "")
    return render(
        request,
        "events.html.j2",
        admin=admin,
        section="events",
        status=code,
        match=match,
        rows=rows,
        total=total,
        error=error,
        done=done if _DELETED.fullmatch(done) else "",
        filtered=filtered,
        topics=list_topics(session=session),
        regions=event_search.regions(session),
        region_names=REGION_NAMES,
        sources=event_search.sources(session),
        paged=bool(before) and page is not None,
        next_url=_list_url(match, before=page.next) if page and page.next else "",
        first_url=_list_url(match),
        here=here,
    )


# --- add and edit -----------------------------------------------------------------------------


def _form_of(event: Event, session: Session) -> dict[str, Any]:
    sources = event.sources or {}
    return {
        "title_en": event.title.get("en", ""),
        "title_zh": event.title.get("zh", ""),
        "summary_en": event.summary.get("en", ""),
        "summary_zh": event.summary.get("zh", ""),
        "url": event.url,
        "occurred_on": event.occurred_on.isoformat(),
        "region": event.region,
        "source_en": sources.get("en", event.source if event.language == "en" else ""),
        "source_zh": sources.get("zh", event.source if event.language == "zh" else ""),
        "language": event.language,
        "importance": str(event.importance or ""),
        # the boxes show a choice made by hand; rule topics are shown beside them
        "topics": [t.slug for t, m in topic_matches(session=session, event=event)]
        if event.manual_topics
        else [],
    }


def _blank_form() -> dict[str, Any]:
    return {name: "" for name in FIELDS} | {"region": "global", "language": "en", "topics": []}


def _record(form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The form as an event record (as the API and files give one); errors by field."""
    day = form["occurred_on"].strip()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):
            raise ValueError
        dt.date.fromisoformat(day)
    except ValueError:
        errors["occurred_on"] = f"a date like 2025-07-31{f', not {day!r}' if day else ''}"
    importance = form["importance"].strip()
    if importance and importance not in {"1", "2", "3", "4", "5"}:
        errors["importance"] = "importance is 1 (least) to 5 (most), or none"
    titles = {lang: form[f"title_{lang}"] for lang in ("en", "zh") if form[f"title_{lang}"].strip()}
    if not titles:
        errors["title"] = "give the title in English or Chinese (or both)"
    language = form["language"] if form["language"] in titles else next(iter(titles), "en")
    sources = {lang: form[f"source_{lang}"] for lang in ("en", "zh") if form[f"source_{lang}"]}
    return {
        "title": titles,
        "summary": {lang: form[f"summary_{lang}"] for lang in ("en", "zh")
                    if form[f"summary_{lang}"].strip()},
        "url": form["url"].strip(),
        "occurred_on": day,
        "region": form["region"],
        "source": sources or None,
        "language": language,
        "importance": int(importance) if importance in {"1", "2", "3", "4", "5"} else None,
        "topics": form["topics"] or None,
    }  # fmt: skip


def _validated(session: Session, form: dict[str, Any], errors: dict[str, str]) -> EventCreate:
    """The form's event, checked as the API checks one (ValueError if anything is wrong)."""
    record = _record(form, errors)
    if form["topics"]:
        try:
            topics_by_slug(session=session, slugs=form["topics"])
        except TopicError as exc:
            errors["topics"] = str(exc)
    try:
        event_in = EventCreate.model_validate(record)
    except ValidationError as exc:
        for err in exc.errors():
            key = _ERROR_FIELD.get(str(err["loc"][0]) if err["loc"] else "", "form")
            msg = err["msg"].removeprefix("Value error, ")
            if key == "url" and err["type"] == "string_pattern_mismatch":
                msg = "a web address starting with http:// or https://"
            errors.setdefault(key, msg)
        raise ValueError("invalid") from None
    if errors:
        raise ValueError("invalid")
    return event_in


def _edit_page(request, admin, session, *, event, form, errors, done="", status=200):
    waiting = outbox.waiting_alerts(session, event.id) if event else []
    return render(
        request,
        "event.html.j2",
        admin=admin,
        section="events",
        status=status,
        event=event,
        title=localised(event.title, "en") if event else "",
        matches=topic_matches(session=session, event=event) if event else [],
        form=form,
        errors=errors,
        done=DONE.get(done, ""),
        waiting=len(waiting),
        clicked=clicks.event_clicks(session, event.id) if event else 0,
        topics=list_topics(session=session),
        regions=event_search.regions(session),
        region_names=REGION_NAMES,
    )


def _form_fields(**fields: Any) -> dict[str, Any]:
    return {name: (fields.get(name) or "") for name in FIELDS} | {
        "topics": list(dict.fromkeys(fields.get("topics") or []))
    }


EventField = Annotated[str, Form()]


def _posted_form(
    title_en: EventField = "",
    title_zh: EventField = "",
    summary_en: EventField = "",
    summary_zh: EventField = "",
    url: EventField = "",
    occurred_on: EventField = "",
    region: EventField = "global",
    source_en: EventField = "",
    source_zh: EventField = "",
    language: EventField = "en",
    importance: EventField = "",
    topics: Annotated[list[str] | None, Form()] = None,
) -> dict[str, Any]:
    """The add and edit forms' fields as posted (the same on both pages)."""
    return _form_fields(**{k: v for k, v in locals().items() if k in FIELDS}, topics=topics)


EventForm = Annotated[dict[str, Any], Depends(_posted_form)]


@router.get("/events/new")
def event_new(request: Request, admin: AdminDep, session: SessionDep):
    return _edit_page(request, admin, session, event=None, form=_blank_form(), errors={})


@router.post("/events/new")
def event_add(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    form: EventForm,
):
    errors: dict[str, str] = {}
    try:
        event_in = _validated(session, form, errors)
        dup = find_duplicate(session=session, url=event_in.url, key=_key(event_in),
                             day=event_in.occurred_on)  # fmt: skip
        if dup is not None:
            same = "URL" if dup.url == event_in.url else "title on the same day"
            errors["url" if same == "URL" else "title"] = f"event {dup.id} has the same {same}"
            raise ValueError("duplicate")
        result, alerts = pipeline.ingest_event(session=session, settings=settings,
                                               event_in=event_in)  # fmt: skip
    except (ValueError, TopicError):
        session.rollback()
        return _edit_page(request, admin, session, event=None, form=form, errors=errors,
                          status=422)  # fmt: skip
    event = result.event
    assert event is not None, "a duplicate was refused above"
    note(session, admin, "event.add", _target(event), f"{alerts} instant alert(s) queued")
    return RedirectResponse(f"/admin/events/{event.id}?done=added", status_code=303)


def _key(event_in: EventCreate) -> str:
    assert isinstance(event_in.title, dict), "validation made the title a mapping"
    return title_key(primary_title(event_in.title, event_in.language))


def _target(event: Event) -> str:
    return f"event {event.id}: {localised(event.title, 'en')}"[:500]


# --- import -----------------------------------------------------------------------------------


def _import_page(request, admin, *, report=None, error="", fmt="", name="", status=200):
    return render(
        request,
        "events_import.html.j2",
        admin=admin,
        section="events",
        status=status,
        report=report,
        error=error,
        fmt=fmt,
        name=name,
        formats=FORMATS,
        max_mb=MAX_UPLOAD_BYTES // 2**20,
        refused_listed=REFUSED_LISTED,
    )


@router.get("/events/import")
def events_import_form(request: Request, admin: AdminDep):
    return _import_page(request, admin)


@router.post("/events/import")
def events_import(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile | None, File()] = None,
    format: Annotated[str, Form()] = "",
):
    name = (file.filename or "") if file else ""
    if file is None or not name:
        return _import_page(request, admin, error="Choose a file to import.", fmt=format,
                            status=400)  # fmt: skip
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    try:
        fmt, ingested = import_upload(session=session, settings=settings, data=data,
                                      filename=name, fmt=format or None)  # fmt: skip
    except ImportFileError as exc:
        session.rollback()
        code = 413 if len(data) > MAX_UPLOAD_BYTES else 400
        return _import_page(request, admin, error=str(exc), fmt=format, name=name, status=code)
    report = ingested.report
    summary = f"{report.new} new, {report.duplicate} duplicate, {len(report.invalid)} invalid"
    note(
        session, admin, "event.import", name[:200], f"{summary}; {ingested.alerts} alert(s) queued"
    )
    new = event_search.by_ids(session, report.new_ids[:50])
    return _import_page(
        request,
        admin,
        report={"summary": summary, "new": report.new, "duplicate": report.duplicate,
                "invalid": report.invalid, "alerts": ingested.alerts, "format": fmt,
                "added": [(e.id, localised(e.title, "en")) for e in new],
                "more": max(0, report.new - len(new))},
        name=name,
    )  # fmt: skip


# --- one event --------------------------------------------------------------------------------


def _event_or_404(session: Session, event_id: int) -> Event:
    event = session.get(Event, event_id) if 0 < event_id <= MAX_ID else None
    if event is None:
        raise HTTPException(404, "no such event (deleted, or never added)")
    return event


@router.get("/events/{event_id}")
def event_page(
    request: Request, event_id: int, admin: AdminDep, session: SessionDep, done: str = ""
):
    event = _event_or_404(session, event_id)
    return _edit_page(request, admin, session, event=event, form=_form_of(event, session),
                      errors={}, done=done)  # fmt: skip


@router.post("/events/{event_id}")
def event_save(
    request: Request,
    event_id: int,
    admin: CsrfDep,
    session: SessionDep,
    form: EventForm,
):
    event = _event_or_404(session, event_id)
    errors: dict[str, str] = {}
    changed: list[str] = []
    try:
        event_in = _validated(session, form, errors)
        changed = update_event(session=session, event=event, event_in=event_in)
    except EventConflict as exc:
        errors["url"] = str(exc)
    except (ValueError, TopicError):
        pass
    if errors:
        session.rollback()
        event = _event_or_404(session, event_id)
        return _edit_page(request, admin, session, event=event, form=form, errors=errors,
                          status=422)  # fmt: skip
    if changed:
        note(session, admin, "event.edit", _target(event), "changed: " + ", ".join(changed))
    return RedirectResponse(f"/admin/events/{event.id}?done=saved", status_code=303)


@router.post("/events/{event_id}/pin")
def event_pin(
    event_id: int,
    admin: CsrfDep,
    session: SessionDep,
    pinned: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
):
    event = _event_or_404(session, event_id)
    if pinned not in ("0", "1"):
        raise HTTPException(400, "pinned must be 1 (pin) or 0 (unpin)")
    wanted = pinned == "1"
    if event.pinned != wanted:
        set_pinned(session=session, event=event, pinned=wanted)
        note(session, admin, "event.pin" if wanted else "event.unpin", _target(event))
    if back.startswith(f"/admin/events/{event.id}"):
        done = "pinned" if wanted else "unpinned"
        return RedirectResponse(f"/admin/events/{event.id}?done={done}", status_code=303)
    target = _back_to_list(back)
    return RedirectResponse(f"{target}#event-{event.id}", status_code=303)


@router.post("/events/{event_id}/delete")
def event_delete(
    event_id: int,
    admin: CsrfDep,
    session: SessionDep,
    back: Annotated[str, Form()] = "",
):
    event = _event_or_404(session, event_id)
    target = _target(event)
    clicked = clicks.event_clicks(session, event.id)  # they cascade with the event
    cancelled = pipeline.remove_event(session=session, event=event)
    gone = (f"; its {clicked} counted click{'' if clicked == 1 else 's'} deleted with it"
            if clicked else "")  # fmt: skip
    message = (f"Event {event_id} deleted; {cancelled} waiting "
               f"alert{'' if cancelled == 1 else 's'} cancelled{gone}.")  # fmt: skip
    note(session, admin, "event.delete", target, f"{cancelled} waiting alert deliveries cancelled"
         + (f"; {clicked} counted clicks deleted" if clicked else ""))  # fmt: skip
    list_url = _back_to_list(back)
    sep = "&" if "?" in list_url else "?"
    return RedirectResponse(list_url + sep + urlencode({"done": message}), status_code=303)
