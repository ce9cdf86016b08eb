"""/api/v1/subscribers: readers of the email digests and the topics they follow."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import HTTPException, Path, Query, Response
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.audience.subscribers import (
    SubscriberIn,
    add_subscriber,
    get_subscriber,
    subscriber_topics,
    update_subscriber,
    why_not_addable,
)
from newsletter.core.models import Subscriber, Subscription, Topic
from newsletter.feedback.reenable import ReenableError, enable_reader
from newsletter.feedback.sources import recent
from newsletter.pipeline import remove_subscriber
from newsletter.web.api.common import admin_router, errors
from newsletter.web.api.models import (
    BouncePublic,
    BouncesPublic,
    EnableRequest,
    SubscriberChange,
    SubscriberCreate,
    SubscriberPublic,
    SubscribersPublic,
)
from newsletter.web.deps import AdminDep, SessionDep

router = admin_router("/subscribers", "subscribers")

EmailPath = Annotated[str, Path(max_length=320, examples=["ada@example.com"])]


def subscriber_public(session: Session, sub: Subscriber) -> SubscriberPublic:
    topics = [t.slug for t in subscriber_topics(session=session, subscriber=sub)]
    return SubscriberPublic(**sub.model_dump(), topics=topics)


def subscriber_or_404(session: Session, email: str) -> Subscriber:
    sub = get_subscriber(session=session, email=email)
    if sub is None:
        raise HTTPException(404, f"no subscriber {email!r}")
    return sub


@router.get("", response_model=SubscribersPublic, summary="List subscribers", responses=errors(422))
def read_subscribers(
    session: SessionDep,
    status: Literal["pending", "active", "unsubscribed", "disabled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> SubscribersPublic:
    # one page from the database, not every reader (a list call stays cheap at any size)
    query = select(Subscriber)
    if status:
        query = query.where(Subscriber.status == status)
    count = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    page = list(
        session.execute(query.order_by(Subscriber.id).offset(offset).limit(limit)).scalars()
    )
    topics: dict[int, list[str]] = {s.id: [] for s in page}
    for sub_id, slug in session.execute(  # every topic of the page in one query
        select(Subscription.subscriber_id, Topic.slug)
        .join(Topic, Topic.id == Subscription.topic_id)
        .where(Subscription.subscriber_id.in_(list(topics)))
        .order_by(Topic.position, Topic.slug)
    ):
        topics[sub_id].append(slug)
    return SubscribersPublic(
        data=[SubscriberPublic(**s.model_dump(), topics=topics[s.id]) for s in page],
        count=count,
    )


@router.post(
    "",
    response_model=SubscriberPublic,
    status_code=201,
    summary="Add a subscriber (active at once: the admin vouches for consent)",
    description="Refused with 409, saying why, when the address is subscribed already, "
    "waiting for its confirmation, disabled, or on the suppression list (a reader who "
    "unsubscribed can only come back by signing up again and confirming).",
    responses=errors(400, 409, 422),
)
def create_subscriber(session: SessionDep, sub_in: SubscriberCreate) -> SubscriberPublic:
    refused = why_not_addable(session=session, email=sub_in.email)
    if refused is not None:
        raise HTTPException(409, refused)
    sub = add_subscriber(session=session, sub_in=sub_in)
    return subscriber_public(session, sub)


@router.get(
    "/{email}",
    response_model=SubscriberPublic,
    summary="Read a subscriber",
    responses=errors(404, 422),
)
def read_subscriber(session: SessionDep, email: EmailPath) -> SubscriberPublic:
    return subscriber_public(session, subscriber_or_404(session, email))


@router.patch(
    "/{email}",
    response_model=SubscriberPublic,
    summary="Change a subscriber's name, language, time zone, frequency or topics",
    responses=errors(400, 404, 422),
)
def change_subscriber(
    session: SessionDep, email: EmailPath, change: SubscriberChange
) -> SubscriberPublic:
    sub = subscriber_or_404(session, email)
    current = {
        "email": sub.email,
        "name": sub.name,
        "language": sub.language,
        "timezone": sub.timezone,
        "frequency": sub.frequency,
        "topics": [t.slug for t in subscriber_topics(session=session, subscriber=sub)],
    }
    wanted = SubscriberIn.model_validate({**current, **change.model_dump(exclude_none=True)})
    update_subscriber(session=session, subscriber=sub, sub_in=wanted)
    return subscriber_public(session, sub)


@router.delete(
    "/{email}",
    status_code=204,
    summary="Remove a subscriber",
    description="Deletes the personal data; the address stays on the suppression list.",
    responses=errors(404, 422),
)
def delete_subscriber(session: SessionDep, email: EmailPath) -> Response:
    remove_subscriber(session=session, subscriber=subscriber_or_404(session, email))
    return Response(status_code=204)


@router.get(
    "/{email}/bounces",
    response_model=BouncesPublic,
    summary="A subscriber's bounces and complaints, newest first",
    responses=errors(404, 422),
)
def read_subscriber_bounces(
    session: SessionDep,
    email: EmailPath,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BouncesPublic:
    sub = subscriber_or_404(session, email)
    rows = recent(
        session, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), limit=limit, subscriber_id=sub.id
    )
    return BouncesPublic(data=[BouncePublic(**r.__dict__) for r in rows])


@router.post(
    "/{email}/enable",
    response_model=SubscriberPublic,
    summary="Re-enable a reader that bounces disabled",
    description="Resets the bounce score, lifts a suppression for bounces and records who "
    "did it (the admin token's name) in the reader's bounce history. 409, saying why, when "
    "the reader is not disabled, reported our mail as spam (unless `force`), or unsubscribed.",
    responses=errors(404, 409, 422),
)
def enable_subscriber(
    session: SessionDep, admin: AdminDep, email: EmailPath, body: EnableRequest | None = None
) -> SubscriberPublic:
    sub = subscriber_or_404(session, email)
    try:
        enable_reader(
            session=session,
            subscriber=sub,
            by=f"admin token {admin.name!r}",
            via="api",
            force=bool(body and body.force),
        )
    except ReenableError as exc:
        raise HTTPException(409, str(exc)) from exc
    return subscriber_public(session, sub)
