"""/api/v1/clicks: clicks on events' links in emails (when NEWSLETTER_CLICK_TRACKING is on),
and the owner's switch for per-reader counts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query, Request
from pydantic import BaseModel, Field

from newsletter.feedback.clicks import (
    MAX_DAYS,
    click_stats,
    per_reader,
    set_per_reader,
    top_readers,
)
from newsletter.web.api.common import admin_router, errors, note
from newsletter.web.deps import AdminDep, SessionDep, role

router = admin_router("/clicks", "clicks")


class EventClicksPublic(BaseModel):
    event_id: int
    title: str = Field(description="The event's English title, else its first one.")
    url: str = Field(description="Where its links lead.")
    clicks: int


class TopicClicksPublic(BaseModel):
    topic: str = Field(description="The section's topic slug, or `picks`.")
    name: str
    clicks: int


class ClicksPublic(BaseModel):
    tracking: bool = Field(description="Whether new emails get counted links.")
    per_reader: bool = Field(description="Whether clicks are also counted per reader.")
    days: int
    since: dt.date = Field(description="First UTC day counted (today is the last).")
    total: int
    events: list[EventClicksPublic] = Field(description="The most clicked events, at most 10.")
    topics: list[TopicClicksPublic] = Field(description="Clicks per digest section.")
    readers: int = Field(description="Readers with per-reader counts in the period.")


class ReaderClicksPublic(BaseModel):
    email: str
    clicks: int


class ReadersPublic(BaseModel):
    per_reader: bool
    data: list[ReaderClicksPublic] = Field(description="Most clicks first.")


class PerReaderIn(BaseModel):
    on: bool


class PerReaderPublic(BaseModel):
    per_reader: bool
    deleted: int = Field(description="Per-reader counts deleted by turning them off.")


@router.get(
    "",
    response_model=ClicksPublic,
    summary="Clicks on events' links in emails over the last days",
    description="Daily counts per event and digest section (no reader data), summed over "
    "the last `days` UTC days, today included.",
    responses=errors(422),
)
def read_clicks(
    request: Request,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 30,
) -> ClicksPublic:
    stats = click_stats(session, days=days)
    return ClicksPublic(
        tracking=request.app.state.settings.click_tracking,
        per_reader=per_reader(session),
        days=stats.days,
        since=stats.since,
        total=stats.total,
        events=[EventClicksPublic(**vars(e)) for e in stats.events],
        topics=[TopicClicksPublic(**vars(t)) for t in stats.topics],
        readers=stats.readers,
    )


@router.get(
    "/readers",
    response_model=ReadersPublic,
    summary="Readers with the most clicks (owner; only while per-reader counts are on)",
    description="Per-reader counts exist only while an owner has them on; empty otherwise.",
    responses=errors(422),
    openapi_extra=role("owner"),
)
def read_reader_clicks(
    session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> ReadersPublic:
    return ReadersPublic(
        per_reader=per_reader(session),
        data=[ReaderClicksPublic(email=e, clicks=n) for e, n in top_readers(session, limit=limit)],
    )


@router.put(
    "/per-reader",
    response_model=PerReaderPublic,
    summary="Turn per-reader click counts on or off (owner)",
    description="On: emails rendered from now on carry the delivery in their click links, "
    "and each reader's clicks are counted. Off: no longer counted, and every per-reader "
    "count is deleted.",
    responses=errors(422),
    openapi_extra=role("owner"),
)
def put_per_reader(session: SessionDep, admin: AdminDep, body: PerReaderIn) -> PerReaderPublic:
    deleted = set_per_reader(session, body.on)
    note(
        session,
        admin,
        "clicks.per_reader",
        "per-reader click counts",
        "on" if body.on else f"off; {deleted} per-reader counts deleted",
    )
    return PerReaderPublic(per_reader=body.on, deleted=deleted)
