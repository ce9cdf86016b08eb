"""/api/v1/feeds: RSS/Atom sources, and polling them now."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Request, Response

from newsletter.core.models import Feed
from newsletter.ingest.feeds import (
    FeedError,
    PollResult,
    add_feed,
    get_feed,
    list_feeds,
    remove_feed,
)
from newsletter.pipeline import poll_feeds
from newsletter.web.api.common import admin_router, errors, status_on
from newsletter.web.api.models import FeedCreate, FeedPublic, FeedsPublic, PollResultPublic
from newsletter.web.deps import SessionDep, SettingsDep

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


def feed_or_404(session, name: str) -> Feed:
    with status_on(404, FeedError):
        return get_feed(session=session, name=name)


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
def create_feed(session: SessionDep, settings: SettingsDep, feed_in: FeedCreate) -> FeedPublic:
    try:
        feed = add_feed(session=session, settings=settings, **feed_in.model_dump())
    except FeedError as exc:  # a refused URL (400), or the name or URL is taken (409)
        raise HTTPException(409 if "exists already" in str(exc) else 400, str(exc)) from exc
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


@router.delete(
    "/{name}",
    status_code=204,
    summary="Stop polling a feed (its events stay)",
    responses=errors(404, 422),
)
def delete_feed(session: SessionDep, name: FeedName) -> Response:
    remove_feed(session=session, feed=feed_or_404(session, name))
    return Response(status_code=204)


@router.post(
    "/{name}/poll",
    response_model=PollResultPublic,
    summary="Poll one feed now",
    responses=errors(404, 422),
)
def poll_one(
    request: Request, session: SessionDep, settings: SettingsDep, name: FeedName
) -> PollResultPublic:
    feed = feed_or_404(session, name)
    session.commit()  # polling writes in its own transaction
    (result,) = poll_feeds(engine=request.app.state.engine, settings=settings, only=feed.name)
    return poll_public(result)
