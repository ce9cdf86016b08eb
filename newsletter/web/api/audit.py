"""/api/v1/audit: the audit log of admin changes, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from newsletter.core import audit
from newsletter.delivery.outbox import MAX_ID
from newsletter.web.api.common import admin_router, errors
from newsletter.web.api.models import AuditEntryPublic, AuditPublic
from newsletter.web.deps import SessionDep

router = admin_router("/audit", "audit")


@router.get(
    "",
    response_model=AuditPublic,
    summary="Which admin token changed what, and when (newest first)",
    description="Changes made through the admin UI and the API to readers and the outbox. "
    "Page with `before` (the `next_before` of the page before).",
    responses=errors(422),
)
def read_audit(
    session: SessionDep,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    token: Annotated[str | None, Query(max_length=100, description="Only this token's.")] = None,
) -> AuditPublic:
    page = audit.recent(session=session, before=before, limit=limit, who=token)
    return AuditPublic(
        data=[AuditEntryPublic.model_validate(r, from_attributes=True) for r in page.rows],
        next_before=page.next_before,
    )
