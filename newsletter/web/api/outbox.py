"""/api/v1/outbox and /api/v1/stats: delivery state, recent errors, daily counts, and
retrying failed deliveries."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query, Request
from sqlalchemy import Engine

from newsletter.audience.endpoints import get_endpoint
from newsletter.core.models import utcnow
from newsletter.delivery import outbox, stats
from newsletter.delivery.outbox import last_errors, status_counts
from newsletter.web.api.common import admin_router, errors
from newsletter.web.api.models import (
    DeliveryStatPublic,
    OutboxErrorPublic,
    OutboxPublic,
    OutboxRetryIn,
    OutboxRetryPublic,
)
from newsletter.web.deps import SessionDep

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
def retry_failed(session: SessionDep, body: OutboxRetryIn) -> OutboxRetryPublic:
    # a plain def runs in the thread pool: the UPDATE never blocks the event loop
    since = outbox.parse_since(body.since) if body.since is not None else None
    endpoint_id = get_endpoint(session=session, name=body.endpoint).id if body.endpoint else None
    got = outbox.retry(
        session,
        ids=body.ids,
        endpoint_id=endpoint_id,
        since=since,
        kinds=body.kinds,
        everything=body.all,
    )
    return OutboxRetryPublic(requeued=got.total, held=got.held)


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
