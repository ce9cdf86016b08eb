"""/api/v1/outbox and /api/v1/stats: delivery state, recent errors, daily counts, and
retrying failed deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import HTTPException, Path, Query, Request
from sqlalchemy import Engine

from newsletter.audience.endpoints import get_endpoint
from newsletter.core.models import utcnow
from newsletter.delivery import history, outbox, stats
from newsletter.delivery.outbox import MAX_ID, STATUSES, last_errors, status_counts
from newsletter.web.api.common import admin_router, errors, note
from newsletter.web.api.models import (
    NO_CONTROL,
    AttemptPublic,
    DeliveriesPublic,
    DeliveryDetailPublic,
    DeliveryKind,
    DeliveryPublic,
    DeliveryStatPublic,
    OutboxCancelIn,
    OutboxCancelPublic,
    OutboxErrorPublic,
    OutboxPublic,
    OutboxRetryIn,
    OutboxRetryPublic,
)
from newsletter.web.deps import AdminDep, SessionDep

router = admin_router("", "outbox")


@router.get(
    "/outbox",
    response_model=OutboxPublic,
    summary="Deliveries by channel and status, and the latest failed attempts",
    responses=errors(422),
)
def read_outbox(
    request: Request, errors_limit: Annotated[int, Query(ge=0, le=100)] = 10
) -> OutboxPublic:
    engine: Engine = request.app.state.engine
    channels = status_counts(engine)
    totals: dict[str, int] = {}
    for counts in channels.values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    recent = [
        OutboxErrorPublic(delivery_id=d, key=k, outcome=o, error=e)
        for d, k, o, e in last_errors(engine, limit=errors_limit)
    ]
    return OutboxPublic(channels=channels, totals=totals, last_errors=recent)


@router.post(
    "/outbox/retry",
    response_model=OutboxRetryPublic,
    summary="Queue failed deliveries again",
    description="Failed deliveries matching every given filter are queued again, due now, "
    "with a fresh set of tries (their earlier attempts stay in the history). Sent "
    "deliveries are never touched; an address on the suppression list is still not "
    "mailed (its delivery ends `suppressed`). With no filter, `all: true` is required. "
    "An unknown endpoint or a `since` that is not a date, time or duration is a 400.",
    responses=errors(400, 422),
)
def retry_failed(session: SessionDep, admin: AdminDep, body: OutboxRetryIn) -> OutboxRetryPublic:
    # a plain def runs in the thread pool: the UPDATE never blocks the event loop
    since = outbox.parse_since(body.since) if body.since is not None else None
    endpoint_id = get_endpoint(session=session, name=body.endpoint).id if body.endpoint else None
    match = history.build_filter(
        session,
        channel=body.channel,
        recipient=body.recipient,
        created_from=body.created_from,
        created_to=body.created_to,
    )
    got = outbox.retry(
        session,
        ids=body.ids,
        endpoint_id=endpoint_id,
        since=since,
        kinds=body.kinds,
        everything=body.all,
        match=None if match.empty else match,
    )
    target = body.model_dump_json(exclude_defaults=True)
    note(session, admin, "outbox.retry", target[:500], f"{got.total} queued again, {got.held} held")
    return OutboxRetryPublic(requeued=got.total, held=got.held)


@router.post(
    "/outbox/cancel",
    response_model=OutboxCancelPublic,
    summary="Cancel waiting deliveries",
    description="Queued or held deliveries matching every given filter (or the given ids) "
    "are cancelled: never sent. A delivery a worker is sending, or one already finished, "
    "is left as it is. With neither ids nor a filter: 400.",
    responses=errors(400, 422),
)
def cancel_waiting(
    session: SessionDep, admin: AdminDep, body: OutboxCancelIn
) -> OutboxCancelPublic:
    match = history.build_filter(
        session,
        channel=body.channel,
        recipient=body.recipient,
        kinds=body.kinds,
        created_from=body.created_from,
        created_to=body.created_to,
    )
    n = outbox.cancel(session, ids=body.ids, match=None if match.empty else match)
    target = body.model_dump_json(exclude_defaults=True)
    note(session, admin, "outbox.cancel", target[:500], f"{n} cancelled")
    return OutboxCancelPublic(cancelled=n)


StatusQuery = Annotated[list[Literal[STATUSES]] | None, Query()]  # type: ignore[valid-type]


@router.get(
    "/outbox/deliveries",
    response_model=DeliveriesPublic,
    summary="Find deliveries, newest first",
    description="Each delivery is named by its recipient (a reader's address or a team "
    "endpoint's name) and what it carries. Filters combine; `status` may repeat. Page "
    "with `before` (the `next_before` of the page before). An unknown recipient, or a "
    "period that ends before it starts, is a 400.",
    responses=errors(400, 422),
)
def find_deliveries(
    session: SessionDep,
    status: StatusQuery = None,
    channel: Annotated[str | None, Query(max_length=16, pattern=r"^[a-z]{1,16}$")] = None,
    recipient: Annotated[str | None, Query(max_length=320, pattern=NO_CONTROL)] = None,
    kind: Annotated[list[DeliveryKind] | None, Query()] = None,
    created_from: Annotated[dt.date | None, Query(description="UTC day, included.")] = None,
    created_to: Annotated[dt.date | None, Query(description="UTC day, included.")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveriesPublic:
    match = history.build_filter(
        session,
        statuses=status or (),
        channel=channel,
        recipient=recipient,
        kinds=kind or (),
        created_from=created_from,
        created_to=created_to,
    )
    page = history.find(session, match, before=before, limit=limit)
    return DeliveriesPublic(
        data=[DeliveryPublic(**line.__dict__) for line in page.rows], next_before=page.next_before
    )


@router.get(
    "/outbox/deliveries/{delivery_id}",
    response_model=DeliveryDetailPublic,
    summary="One delivery and every attempt to send it (code and error)",
    responses=errors(404, 422),
)
def read_delivery(
    session: SessionDep, delivery_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> DeliveryDetailPublic:
    line = history.get(session, delivery_id)
    if line is None:
        raise HTTPException(404, f"no delivery {delivery_id}")
    tries = [AttemptPublic(**a.__dict__) for a in history.attempts(session, delivery_id)]
    return DeliveryDetailPublic(**line.__dict__, attempts_made=tries)


@router.get(
    "/stats/deliveries",
    response_model=list[DeliveryStatPublic],
    summary="Deliveries sent and failed per UTC day and channel",
    description="Sent deliveries count on the day they were sent; failed ones (given up "
    "after the last try) on the day of that try. Only non-zero counts are listed, "
    "ordered by day, channel and status.",
    responses=errors(422),
)
def delivery_stats(
    request: Request, days: Annotated[int, Query(ge=1, le=366)] = 14
) -> list[DeliveryStatPublic]:
    engine: Engine = request.app.state.engine
    first = utcnow().date() - dt.timedelta(days=days - 1)
    rows = [
        DeliveryStatPublic(day=day, channel=channel, status=status, count=count)
        for day, channel, status, count in stats.sent_and_failed(engine, first)
    ]
    return sorted(rows, key=lambda r: (r.day, r.channel, r.status))
