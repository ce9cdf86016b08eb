"""/api/v1/events: events, why they have their topics, file import and retagging."""

from __future__ import annotations

import csv
from pathlib import Path as FilePath
from typing import Annotated, Literal

from fastapi import File, Form, HTTPException, Path, Query, UploadFile
from pydantic import ValidationError
from sqlmodel import Session

from newsletter import pipeline
from newsletter.core.models import Event
from newsletter.ingest.events import (
    event_as_dict,
    get_event,
    list_events,
    retag,
    set_pinned,
    topic_matches,
)
from newsletter.ingest.files import READERS, Problem, Records, decode, detect_format
from newsletter.web.api.common import admin_router, errors
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
from newsletter.web.deps import SessionDep, SettingsDep

router = admin_router("/events", "events")

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
EventId = Annotated[int, Path(ge=1, le=2**31 - 1)]


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


@router.get("", response_model=EventsPublic, summary="List events", responses=errors(400, 422))
def read_events(
    session: SessionDep,
    topic: Annotated[str | None, Query(max_length=64, pattern=SLUG_PATTERN)] = None,
    month: Annotated[str | None, Query(pattern=MONTH_PATTERN, examples=["2025-07"])] = None,
    region: Annotated[str | None, Query(pattern=REGION_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> EventsPublic:
    events = list_events(session=session, topic=topic, month=month, region=region)
    data = [event_public(session, e) for e in events[offset : offset + limit]]
    return EventsPublic(data=data, count=len(events))


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
    session: SessionDep, settings: SettingsDep, event_in: EventCreate
) -> EventCreatedPublic:
    result, alerts = pipeline.ingest_event(session=session, settings=settings, event_in=event_in)
    if result.event is None:
        assert result.duplicate_of is not None, "an event not created is a duplicate"
        raise HTTPException(
            409, f"a duplicate of event {result.duplicate_of.id} (same URL, or same title that day)"
        )
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
    file: Annotated[UploadFile, File(description="The event file.")],
    format: Annotated[
        Literal["json", "jsonl", "yaml", "csv"] | None,
        Form(description="Default: from the file name's extension."),
    ] = None,
) -> ImportReportPublic:
    data = file.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    fmt = detect_format(FilePath(file.filename or "upload"), format)
    records = _within_column_limits(READERS[fmt](decode(data)))
    try:
        ingested = pipeline.ingest_records(session=session, settings=settings, records=records)
    except csv.Error as exc:  # e.g. a NUL byte, or a field over the csv module's limit
        raise HTTPException(400, f"invalid CSV: {exc}") from exc
    report, alerts = ingested.report, ingested.alerts
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
    include_manual: Annotated[
        bool, Query(description="Also retag events whose topics were chosen by hand.")
    ] = False,
) -> RetagPublic:
    report = retag(session=session, include_manual=include_manual)
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
def change_event(session: SessionDep, event_id: EventId, change: EventChange) -> EventDetailPublic:
    event = get_event(session=session, event_id=event_id)
    if event is None:
        raise HTTPException(404, f"no event {event_id}")
    if change.pinned is not None:
        set_pinned(session=session, event=event, pinned=change.pinned)
    if change.importance is not None:
        event.importance = change.importance
        session.add(event)
    session.flush()
    return event_detail(session, event)
