"""/api/v1/feeds: RSS/Atom sources, and polling them now."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Request, Response

from newsletter.core.models import Feed
from newsletter.ingest.feeds import (
    FeedError,
    PollResult,
    add_feed,
    event_counts,
    get_feed,
    list_feeds,
    remove_feed,
    update_feed,
)
from newsletter.pipeline import poll_feeds
from newsletter.web.api.common import admin_router, errors, note, status_on
from newsletter.web.api.models import (
    FeedChange,
    FeedCreate,
    FeedPublic,
    FeedsPublic,
    PollResultPublic,
)
from newsletter.web.deps import AdminDep, SessionDep, SettingsDep

router = admin_router("/feeds", "feeds")

FeedName = Annotated[str, Path(max_length=2000, pattern=r"^[^\x00-\x1f\x7f]+$")]


def feed_public(feed: Feed) -> FeedPublic:
    return FeedPublic(**feed.model_dump(exclude={"etag", "last_modified"}))


def poll_public(result: PollResult) -> PollResultPublic:
    return PollResultPublic(
        feed=result.feed,
        status=result.status,
        new_ids=result.new_ids,
        duplicates=result.duplicates,
        invalid=result.invalid,
        error=result.error,
    )


def poll_summary(result: PollResult) -> str:
    """One line for the audit log and the admin page."""
    if result.status == "error":
        return f"error: {result.error}"
    if result.status == "not-modified":
        return "not modified since the last poll: 0 new events"
    new = len(result.new_ids)
    return f"{new} new event{'s' if new != 1 else ''}, {result.duplicates} already stored" + (
        f", {result.invalid} unusable" if result.invalid else ""
    )


def feed_or_404(session, name: str) -> Feed:
    with status_on(404, FeedError):
        return get_feed(session=session, name=name)


def refused(exc: FeedError) -> HTTPException:
    """A name or URL that is taken is a 409, any other refusal (a URL the SSRF guard
    refuses, a bad region or language) a 400."""
    return HTTPException(409 if "exists already" in str(exc) else 400, str(exc))


@router.get("", response_model=FeedsPublic, summary="List feeds with their last poll and error")
def read_feeds(session: SessionDep) -> FeedsPublic:
    data = [feed_public(f) for f in list_feeds(session=session)]
    return FeedsPublic(data=data, count=len(data))


@router.post(
    "",
    response_model=FeedPublic,
    status_code=201,
    summary="Add a feed (polled on the schedule, or now with POST /feeds/{name}/poll)",
    responses=errors(400, 409, 422),
)
def create_feed(
    session: SessionDep, settings: SettingsDep, admin: AdminDep, feed_in: FeedCreate
) -> FeedPublic:
    try:
        feed = add_feed(session=session, settings=settings, **feed_in.model_dump())
    except FeedError as exc:
        raise refused(exc) from exc
    note(session, admin, "feed.add", feed.name, feed.url)
    return feed_public(feed)


@router.post(
    "/poll",
    response_model=list[PollResultPublic],
    summary="Poll every feed that is due now",
    description="Each feed in its own transaction; a broken feed records its error and "
    "backs off, the others go on. Instant alerts are queued for new events.",
)
def poll_due(
    request: Request, session: SessionDep, settings: SettingsDep
) -> list[PollResultPublic]:
    session.commit()  # polling writes in its own transactions
    results = poll_feeds(engine=request.app.state.engine, settings=settings)
    return [poll_public(r) for r in results]


@router.get("/{name}", response_model=FeedPublic, summary="Read a feed", responses=errors(404, 422))
def read_feed(session: SessionDep, name: FeedName) -> FeedPublic:
    return feed_public(feed_or_404(session, name))


@router.patch(
    "/{name}",
    response_model=FeedPublic,
    summary="Change a feed's URL, name, region or language",
    description="Only the fields given change. A new URL is checked like a new feed's "
    "(public addresses only) and is polled at the scheduler's next check; the events "
    "the feed brought stay as they are.",
    responses=errors(400, 404, 409, 422),
)
def change_feed(
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    name: FeedName,
    change: FeedChange,
) -> FeedPublic:
    feed = feed_or_404(session, name)
    before = feed.name
    try:
        changed = update_feed(session=session, settings=settings, feed=feed,
                              **change.model_dump(exclude_none=True))  # fmt: skip
    except FeedError as exc:
        raise refused(exc) from exc
    if changed:
        detail = ", ".join(f"{key}: {getattr(feed, key)}" for key in changed)
        note(session, admin, "feed.edit", before, detail)
    return feed_public(feed)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Stop polling a feed (its events stay)",
    responses=errors(404, 422),
)
def delete_feed(session: SessionDep, admin: AdminDep, name: FeedName) -> Response:
    feed = feed_or_404(session, name)
    events = event_counts(session=session).get(feed.id, 0)
    remove_feed(session=session, feed=feed)
    note(session, admin, "feed.remove", feed.name, f"{feed.url}; its {events} events stay")
    return Response(status_code=204)


@router.post(
    "/{name}/poll",
    response_model=PollResultPublic,
    summary="Poll one feed now",
    responses=errors(404, 422),
)
def poll_one(
    request: Request, session: SessionDep, settings: SettingsDep, admin: AdminDep, name: FeedName
) -> PollResultPublic:
    feed = feed_or_404(session, name)
    session.commit()  # polling writes in its own transaction
    (result,) = poll_feeds(engine=request.app.state.engine, settings=settings, only=feed.name)
    note(session, admin, "feed.poll", feed.name, poll_summary(result))
    return poll_public(result)
