"""/api/v1/subscribers: readers of the email digests and the topics they follow."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.audience import directory
from newsletter.audience.directory import DirectoryError, SubscriberFilter
from newsletter.audience.subscribers import (
    SubscriberIn,
    add_subscriber,
    get_subscriber,
    subscriber_topics,
    suppression_reason,
    update_subscriber,
    why_not_addable,
)
from newsletter.core.models import Subscriber
from newsletter.delivery import history
from newsletter.delivery.outbox import MAX_ID, DeliveryFilter
from newsletter.feedback.reenable import ReenableError, enable_reader
from newsletter.feedback.sources import recent
from newsletter.pipeline import readers, remove_subscriber
from newsletter.web.api.common import admin_router, errors, note, status_on
from newsletter.web.api.models import (
    SLUG_PATTERN,
    BouncePublic,
    BouncesPublic,
    ConfirmationPublic,
    DeliveriesPublic,
    DeliveryPublic,
    EnableRequest,
    Language,
    Mode,
    SubscriberChange,
    SubscriberCreate,
    SubscriberPublic,
    SubscribersPublic,
    SuppressionPublic,
)
from newsletter.web.deps import AdminDep, SessionDep, role

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


StatusQuery = Literal["pending", "active", "unsubscribed", "disabled"] | None
SearchQuery = Annotated[
    str,
    Query(
        max_length=320,
        description="Start of the address, or of the name (case-insensitive).",
        examples=["ada"],
    ),
]
TopicQuery = Annotated[str | None, Query(max_length=64, pattern=SLUG_PATTERN)]


def subscriber_filter(
    q: SearchQuery = "",
    status: StatusQuery = None,
    topic: TopicQuery = None,
    frequency: Mode | None = None,
    language: Language | None = None,
) -> SubscriberFilter:
    return SubscriberFilter(q=q, status=status, topic=topic, frequency=frequency, language=language)


FilterDep = Annotated[SubscriberFilter, Depends(subscriber_filter)]


@router.get(
    "",
    response_model=SubscribersPublic,
    summary="List and search subscribers",
    description="Filters combine. Page with `after` (the `next_after` of the page before): "
    "keyset pagination, as fast deep in a million readers as on the first page. `offset` "
    "still works but gets slower the deeper it goes. An unknown topic is a 400.",
    responses=errors(400, 422),
)
def read_subscribers(
    session: SessionDep,
    match: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
) -> SubscribersPublic:
    # one page from the database, not every reader (a list call stays cheap at any size)
    with status_on(400, DirectoryError):
        where = directory.conditions(session, match)
    count = session.execute(select(func.count()).select_from(Subscriber).where(*where)).scalar_one()
    query = select(Subscriber).where(*where)
    if after is not None:
        query = query.where(Subscriber.id > after)
    found = list(
        session.execute(query.order_by(Subscriber.id).offset(offset).limit(limit + 1)).scalars()
    )
    page = found[:limit]
    topics = directory.topics_of(session, [s.id for s in page])
    return SubscribersPublic(
        data=[SubscriberPublic(**s.model_dump(), topics=topics.get(s.id, [])) for s in page],
        count=count,
        next_after=page[-1].id if len(found) > limit else None,
    )


@router.get(
    "/export.csv",
    summary="Export subscribers as CSV (all, or those the filters select)",
    description="Columns email, name, language, timezone, frequency, topics, status (as "
    "`newsletter subscribers export`). Streamed a batch at a time, so it starts at once "
    "whatever the size. Cells a spreadsheet would run as formulas are quoted.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}, **errors(400, 422)},
)
def export_subscribers_csv(request: Request, session: SessionDep, match: FilterDep):
    with status_on(400, DirectoryError):
        directory.conditions(session, match)
    engine = request.app.state.engine
    return StreamingResponse(
        directory.export_csv(lambda: Session(engine), match),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="subscribers.csv"'},
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
    session: SessionDep, admin: AdminDep, email: EmailPath, change: SubscriberChange
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
    if update_subscriber(session=session, subscriber=sub, sub_in=wanted):
        detail = f"topics {','.join(wanted.topics)}; {wanted.frequency}; {wanted.language}; "
        note(session, admin, "subscriber.edit", sub.email, detail + wanted.timezone)
    return subscriber_public(session, sub)


@router.delete(
    "/{email}",
    status_code=204,
    summary="Remove a subscriber",
    description="Deletes the personal data; the address stays on the suppression list. "
    "Needs an owner token.",
    openapi_extra=role("owner"),
    responses=errors(404, 422),
)
def delete_subscriber(session: SessionDep, admin: AdminDep, email: EmailPath) -> Response:
    sub = subscriber_or_404(session, email)
    remove_subscriber(session=session, subscriber=sub)
    note(session, admin, "subscriber.remove", f"subscriber {sub.id}", "personal data deleted")
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
    note(session, admin, "subscriber.enabled", sub.email)
    return subscriber_public(session, sub)


@router.get(
    "/{email}/deliveries",
    response_model=DeliveriesPublic,
    summary="What a subscriber was sent (their deliveries), newest first",
    responses=errors(404, 422),
)
def read_subscriber_deliveries(
    session: SessionDep,
    email: EmailPath,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> DeliveriesPublic:
    sub = subscriber_or_404(session, email)
    page = history.find(session, DeliveryFilter(subscriber_id=sub.id), before=before, limit=limit)
    return DeliveriesPublic(
        data=[DeliveryPublic(**line.__dict__) for line in page.rows], next_before=page.next_before
    )


@router.post(
    "/{email}/confirmation",
    response_model=ConfirmationPublic,
    status_code=202,
    summary="Send the confirmation email again (a pending subscriber only)",
    description="Queued through the outbox; at most one a minute. A subscriber who is not "
    "pending, or whose address is suppressed, is refused with 400 and the reason.",
    responses=errors(400, 404, 422),
)
def resend_confirmation(
    session: SessionDep, admin: AdminDep, email: EmailPath
) -> ConfirmationPublic:
    sub = subscriber_or_404(session, email)
    queued = readers.resend_confirmation(session=session, subscriber=sub)
    if queued:
        note(session, admin, "subscriber.confirmation", sub.email)
    return ConfirmationPublic(queued=queued)


@router.post(
    "/{email}/unsubscribe",
    response_model=SubscriberPublic,
    summary="Unsubscribe a subscriber",
    description="Stops all mail to them, as their own unsubscribe would (the address goes "
    "on the suppression list; they may come back by signing up and confirming). Already "
    "unsubscribed: 400.",
    responses=errors(400, 404, 422),
)
def unsubscribe_subscriber(
    session: SessionDep, admin: AdminDep, email: EmailPath
) -> SubscriberPublic:
    sub = subscriber_or_404(session, email)
    readers.unsubscribe(session=session, subscriber=sub)
    note(session, admin, "subscriber.unsubscribed", sub.email)
    return subscriber_public(session, sub)


@router.get(
    "/{email}/suppression",
    response_model=SuppressionPublic,
    summary="Whether a subscriber's address is on the suppression list, and why",
    responses=errors(404, 422),
)
def read_suppression(session: SessionDep, email: EmailPath) -> SuppressionPublic:
    sub = subscriber_or_404(session, email)
    why = suppression_reason(session=session, email=sub.email)
    return SuppressionPublic(email=sub.email, suppressed=why is not None, reason=why)


@router.put(
    "/{email}/suppression",
    response_model=SuppressionPublic,
    summary="Suppress a subscriber's address",
    description="Nothing more is mailed to them (what is queued ends `suppressed`); the "
    "subscriber and their settings are kept. Idempotent.",
    responses=errors(404, 422),
)
def suppress_subscriber(
    session: SessionDep, admin: AdminDep, email: EmailPath
) -> SuppressionPublic:
    sub = subscriber_or_404(session, email)
    if readers.suppress(session=session, subscriber=sub):
        note(session, admin, "subscriber.suppressed", sub.email)
    why = suppression_reason(session=session, email=sub.email)
    return SuppressionPublic(email=sub.email, suppressed=True, reason=why)


@router.delete(
    "/{email}/suppression",
    response_model=SuppressionPublic,
    summary="Lift a subscriber's suppression",
    description="Takes the address off the suppression list; a subscriber disabled by "
    "bounces or a complaint becomes active again. Refused with 400 when the address is "
    "not suppressed, when the subscriber unsubscribed themselves (only they can undo "
    "that), or for a complaint unless `force` (the reader asked for our mail again). "
    "`reason` is the reason the address had.",
    responses=errors(400, 404, 422),
)
def lift_suppression(
    session: SessionDep,
    admin: AdminDep,
    email: EmailPath,
    force: Annotated[bool, Query(description="Also a complaint (they asked).")] = False,
) -> SuppressionPublic:
    sub = subscriber_or_404(session, email)
    had = readers.lift_suppression(session=session, subscriber=sub, force=force)
    note(session, admin, "subscriber.lifted", sub.email, f"the address was suppressed: {had}")
    return SuppressionPublic(email=sub.email, suppressed=False, reason=had)
