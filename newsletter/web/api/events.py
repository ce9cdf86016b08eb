"""/api/v1/events: events, why they have their topics, file import and retagging."""

from __future__ import annotations

import csv
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import File, Form, HTTPException, Path, Query, Response, UploadFile
from pydantic import ValidationError
from sqlmodel import Session

from newsletter import pipeline
from newsletter.core.models import Event
from newsletter.core.settings import Settings
from newsletter.ingest import event_search
from newsletter.ingest.event_search import EventFilter
from newsletter.ingest.events import (
    event_as_dict,
    get_event,
    localised,
    retag,
    set_pinned,
    topic_matches,
)
from newsletter.ingest.files import (
    READERS,
    ImportFileError,
    Problem,
    Records,
    decode,
    detect_format,
)
from newsletter.web.api.common import admin_router, errors, note
from newsletter.web.api.models import (
    MONTH_PATTERN,
    REGION_PATTERN,
    SLUG_PATTERN,
    EventChange,
    EventCreate,
    EventCreatedPublic,
    EventDetailPublic,
    EventLimits,
    EventPublic,
    EventsPublic,
    ImportProblemPublic,
    ImportReportPublic,
    RetagPublic,
    TopicMatchPublic,
)
from newsletter.web.deps import AdminDep, SessionDep, SettingsDep

router = admin_router("/events", "events")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
EventId = Annotated[int, Path(ge=1, le=2**31 - 1)]
CURSOR_PATTERN = r"^\d{4}-\d{2}-\d{2}_\d{1,10}$"


class UploadTooLarge(ImportFileError):
    """An uploaded event file over the size the web accepts."""


def import_upload(
    *, session: Session, settings: Settings, data: bytes, filename: str, fmt: str | None
) -> tuple[str, pipeline.Ingested]:
    """An uploaded event file, imported as `events import` imports one: (format, what was
    stored). ImportFileError (nothing stored) for a file that cannot be read as a whole."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge(
            f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB; split it, or import "
            "it with the command line (newsletter events import)"
        )
    fmt = detect_format(FilePath(filename or "upload"), fmt)
    records = _within_column_limits(READERS[fmt](decode(data)))
    try:
        return fmt, pipeline.ingest_records(session=session, settings=settings, records=records)
    except csv.Error as exc:  # e.g. a NUL byte, or a field over the csv module's limit
        raise ImportFileError(f"invalid CSV: {exc}") from exc


def _note(session: Session, admin, action: str, event: Event, detail: str = "") -> None:
    target = f"event {event.id}: {localised(event.title, 'en')}"[:500]
    note(session, admin, action, target, detail)


def event_public(session: Session, event: Event) -> EventPublic:
    return EventPublic(**event_as_dict(session=session, event=event))


def event_detail(session: Session, event: Event) -> EventDetailPublic:
    matches = [
        TopicMatchPublic(
            slug=t.slug, name_en=t.name_en, name_zh=t.name_zh, source=m.source, reason=m.reason
        )
        for t, m in topic_matches(session=session, event=event)
    ]
    return EventDetailPublic(**event_as_dict(session=session, event=event), matches=matches)


@router.get(
    "",
    response_model=EventsPublic,
    summary="List events, newest first",
    description="Filters combine: `q` finds events whose title or summary (in any language) "
    "holds every word of it; `month`, `topic`, `region` and `source` narrow further. Page "
    "with `before` (the `next` of the page before): fast at any depth. `offset` still works "
    "for short lists.",
    responses=errors(400, 422),
)
def read_events(
    session: SessionDep,
    q: Annotated[str, Query(max_length=event_search.MAX_QUERY, examples=["芯片 export"])] = "",
    topic: Annotated[str | None, Query(max_length=64, pattern=SLUG_PATTERN)] = None,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, examples=["2025-07"])] = None,
    region: Annotated[str | None, Query(pattern=REGION_PATTERN)] = None,
    source: Annotated[str | None, Query(max_length=200)] = None,
    before: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, examples=["2025-07-14_120"])
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EventsPublic:
    match = EventFilter(q=q.strip(), month=month or "", topic=topic or "",
                        region=region or "", source=(source or "").strip())  # fmt: skip
    page = event_search.find(session, match, before=before, limit=limit, offset=offset)
    data = [event_public(session, e) for e in page.rows]
    total = event_search.count(session, match, page=page, paged=bool(before or offset),
                               limit=limit)  # fmt: skip
    return EventsPublic(data=data, count=total, next=page.next)


@router.post(
    "",
    response_model=EventCreatedPublic,
    status_code=201,
    summary="Add one event (tagged by the rules unless topics are given)",
    description="Instant webhook alerts are queued for it. A duplicate (same URL, or same "
    "title on the same day) is refused with 409.",
    responses=errors(400, 409, 422),
)
def create_event(
    session: SessionDep, settings: SettingsDep, admin: AdminDep, event_in: EventCreate
) -> EventCreatedPublic:
    result, alerts = pipeline.ingest_event(session=session, settings=settings, event_in=event_in)
    if result.event is None:
        assert result.duplicate_of is not None, "an event not created is a duplicate"
        raise HTTPException(
            409, f"a duplicate of event {result.duplicate_of.id} (same URL, or same title that day)"
        )
    _note(session, admin, "event.add", result.event, f"{alerts} instant alert(s) queued")
    detail = event_detail(session, result.event)
    return EventCreatedPublic(**detail.model_dump(), alerts_enqueued=alerts)


def _within_column_limits(records: Records) -> Records:
    """Report records the database would refuse (too long for a column) as invalid."""
    for where, record in records:
        if not isinstance(record, Problem):
            try:
                EventLimits.model_validate(record)
            except ValidationError as exc:
                reason = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'record'}: "
                    + e["msg"].removeprefix("Value error, ")
                    for e in exc.errors()
                )
                record = Problem(where, reason)
        yield where, record


@router.post(
    "/import",
    response_model=ImportReportPublic,
    summary="Import an event file (JSON, JSON Lines, YAML or CSV)",
    description=f"Up to {MAX_UPLOAD_BYTES // 2**20} MB. Each record is stored or reported on "
    "its own: the report lists new, duplicate and invalid records (with line or record "
    "number and reason). Instant webhook alerts are queued for the new events.",
    responses=errors(400, 413, 422),
)
def import_events(
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    file: Annotated[UploadFile, File(description="The event file.")],
    format: Annotated[
        Literal["json", "jsonl", "yaml", "csv"] | None,
        Form(description="Default: from the file name's extension."),
    ] = None,
) -> ImportReportPublic:
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    try:
        fmt, ingested = import_upload(session=session, settings=settings, data=data,
                                      filename=file.filename or "upload", fmt=format)  # fmt: skip
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except ImportFileError as exc:
        raise HTTPException(400, str(exc)) from exc
    report, alerts = ingested.report, ingested.alerts
    note(
        session,
        admin,
        "event.import",
        (file.filename or "upload")[:200],
        f"{report.new} new, {report.duplicate} duplicate, "
        f"{len(report.invalid)} invalid; {alerts} alert(s) queued",
    )
    return ImportReportPublic(
        format=fmt,
        new=report.new,
        duplicate=report.duplicate,
        invalid=[ImportProblemPublic(where=p.where, reason=p.reason) for p in report.invalid],
        new_ids=report.new_ids,
        alerts_enqueued=alerts,
    )


@router.post(
    "/retag",
    response_model=RetagPublic,
    summary="Re-run the topic rules on stored events (after changing rules)",
    responses=errors(422),
)
def retag_events(
    session: SessionDep,
    admin: AdminDep,
    include_manual: Annotated[
        bool, Query(description="Also retag events whose topics were chosen by hand.")
    ] = False,
) -> RetagPublic:
    report = retag(session=session, include_manual=include_manual)
    note(
        session, admin, "events.retag", "", f"{report.examined} examined, {report.changed} changed"
    )
    return RetagPublic(
        examined=report.examined, changed=report.changed, kept_manual=report.kept_manual
    )


@router.get(
    "/{event_id}",
    response_model=EventDetailPublic,
    summary="Read an event, with each topic and the rule that matched",
    responses=errors(404, 422),
)
def read_event(session: SessionDep, event_id: EventId) -> EventDetailPublic:
    event = get_event(session=session, event_id=event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    return event_detail(session, event)


@router.patch(
    "/{event_id}",
    response_model=EventDetailPublic,
    summary="Pin or unpin an event (editor's picks), or change its importance",
    responses=errors(404, 422),
)
def change_event(
    session: SessionDep, admin: AdminDep, event_id: EventId, change: EventChange
) -> EventDetailPublic:
    event = get_event(session=session, event_id=event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    if change.pinned is not None and change.pinned != event.pinned:
        set_pinned(session=session, event=event, pinned=change.pinned)
        _note(session, admin, "event.pin" if change.pinned else "event.unpin", event)
    if change.importance is not None and change.importance != event.importance:
        _note(session, admin, "event.edit", event,
              f"changed: importance {event.importance} -> {change.importance}")  # fmt: skip
        event.importance = change.importance
        session.add(event)
    session.flush()
    return event_detail(session, event)


@router.delete(
    "/{event_id}",
    status_code=204,
    summary="Delete an event",
    description="Its alerts still waiting in the outbox (queued, or held for a disabled "
    "endpoint) are cancelled and never sent; the `X-Alerts-Cancelled` header says how many. "
    "Alerts already sent and digests already planned keep it. Its click counts (from "
    "click counting, per section and day, and per reader when those are on) are deleted "
    "with it, and leave the click statistics.",
    responses=errors(404, 422),
)
def delete_event(session: SessionDep, admin: AdminDep, event_id: EventId) -> Response:
    event = get_event(session=session, event_id=event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    target = f"event {event.id}: {localised(event.title, 'en')}"[:500]
    cancelled = pipeline.remove_event(session=session, event=event)
    note(session, admin, "event.delete", target, f"{cancelled} waiting alert deliveries cancelled")
    return Response(status_code=204, headers={"X-Alerts-Cancelled": str(cancelled)})
