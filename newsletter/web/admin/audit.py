"""The admin page of the audit log: which token changed what, and when."""

from __future__ import annotations

from fastapi import APIRouter, Request

from newsletter.core import audit
from newsletter.delivery.outbox import MAX_ID
from newsletter.web.admin.auth import AdminDep, AdminRoute, render
from newsletter.web.deps import SessionDep

router = APIRouter(route_class=AdminRoute)


@router.get("/audit")
def audit_page(request: Request, admin: AdminDep, session: SessionDep, before: str = ""):
    older = int(before) if before.isdigit() and 0 < int(before) <= MAX_ID else None
    return render(
        request,
        "audit.html.j2",
        admin=admin,
        section="audit",
        page=audit.recent(session=session, before=older),
        older=older,
    )
