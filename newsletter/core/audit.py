"""The audit log: which admin token changed what, and when (admin UI and API alike)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import AdminAudit

PAGE_SIZE = 50


def record(*, session: Session, who: str, action: str, target: str = "", detail: str = "") -> None:
    """Note a change in the same transaction as the change: both are kept, or neither."""
    session.add(
        AdminAudit(token_name=who[:100], action=action[:64], target=target[:500], detail=detail)
    )


@dataclass
class AuditPage:
    rows: list[AdminAudit]
    next_before: int | None


def recent(
    *, session: Session, before: int | None = None, limit: int = PAGE_SIZE, who: str | None = None
) -> AuditPage:
    """Newest first, a page at a time (`before` the smallest id of the page before)."""
    query = select(AdminAudit)
    if before is not None:
        query = query.where(AdminAudit.id < before)
    if who:
        query = query.where(AdminAudit.token_name == who)
    rows = list(session.execute(query.order_by(AdminAudit.id.desc()).limit(limit + 1)).scalars())
    page = rows[:limit]
    return AuditPage(page, page[-1].id if len(rows) > limit and page else None)
