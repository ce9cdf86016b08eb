"""/api/v1/bounces: bounces, complaints and unsubscribe mails received, and what each did."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import HTTPException, Query

from newsletter.delivery.outbox import parse_since
from newsletter.feedback.sources import recent
from newsletter.web.api.common import admin_router, errors
from newsletter.web.api.models import BouncePublic, BouncesPublic
from newsletter.web.deps import SessionDep

router = admin_router("/bounces", "bounces")

Kind = Literal["hard", "soft", "complaint", "unsubscribe", "delayed", "unknown"]


@router.get(
    "",
    response_model=BouncesPublic,
    summary="Recent bounces and complaints, newest first",
    description="`since` is an ISO date or time (UTC unless an offset is given) or a "
    "duration back from now such as `12h` or `7d`; one that is neither is a 400.",
    responses=errors(400, 422),
)
def read_bounces(
    session: SessionDep,
    since: Annotated[str, Query(max_length=64)] = "7d",
    kind: Annotated[list[Kind] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> BouncesPublic:
    try:
        when = parse_since(since)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    rows = recent(session, when, limit=limit, kinds=tuple(kind or ()))
    return BouncesPublic(data=[BouncePublic(**r.__dict__) for r in rows])
