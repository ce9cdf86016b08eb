"""Admin pages for the outbox: deliveries found by status, channel, recipient and period,
named for people; each one's attempts; retry failed rows and cancel waiting ones (through
`outbox.retry` and `outbox.cancel`, the only writers of a delivery's status)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.core import platforms
from newsletter.core.models import Delivery
from newsletter.delivery import history, outbox
from newsletter.delivery.outbox import MAX_ID, STATUSES, DeliveryFilter
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, note, render
from newsletter.web.deps import SessionDep

router = APIRouter(route_class=AdminRoute)

CHANNELS = ("email", *platforms.NAMES)
# what a redirect after retry or cancel may ask the page to say (nothing else is shown)
_DONE = re.compile(r"[0-9]+ (failed|queued) deliver(y|ies) (queued again|cancelled)"
                   r"( \([0-9]+ held for a disabled endpoint\))?\.")  # fmt: skip


def _day(value: str, what: str) -> dt.date | None:
    if not value.strip():
        return None
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{what} must be a date like 2025-07-31, not {value.strip()!r}") from None


def _match(session: Session, form: dict[str, str]) -> DeliveryFilter:
    """The filter an admin chose (ValueError with the reason for a bad one)."""
    status, channel = form.get("status", ""), form.get("channel", "")
    if status and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if channel and channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
    return history.build_filter(
        session,
        statuses=(status,) if status else (),
        channel=channel or None,
        recipient=form.get("recipient") or None,
        created_from=_day(form.get("from", ""), "the first day"),
        created_to=_day(form.get("to", ""), "the last day"),
    )


def _waiting_and_failed(session: Session, match: DeliveryFilter) -> dict[str, int]:
    """How many failed, queued and held rows the filter holds: one pass, for the bulk
    actions' confirmations."""
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(*match.conditions(), Delivery.status.in_(["failed", "queued", "held"]))
        .group_by(Delivery.status)
    ).all()
    return {status: n for status, n in rows}


def _list_url(form: dict[str, str], **extra) -> str:
    params = {k: v for k, v in form.items() if v} | {k: v for k, v in extra.items() if v}
    return "/admin/outbox" + ("?" + urlencode(params) if params else "")


@router.get("/outbox")
def outbox_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    status: str = "",
    channel: str = "",
    recipient: str = "",
    to: str = "",
    before: str = "",
    done: str = "",
):
    form = {
        "status": status,
        "channel": channel,
        "recipient": recipient.strip()[:320],
        "from": request.query_params.get("from", ""),  # a Python keyword: read as is
        "to": to,
    }
    error, page, code, failed, waiting = "", None, 200, 0, 0
    older = int(before) if before.isdigit() and 0 < int(before) <= MAX_ID else None
    try:
        match = _match(session, form)
        page = history.find(session, match, before=older)
        counts = _waiting_and_failed(session, match)
        failed = counts.get("failed", 0)
        waiting = counts.get("queued", 0) + counts.get("held", 0)
    except ValueError as exc:
        error, code = str(exc), 400
    filtered = any(form.values())
    return render(
        request,
        "outbox.html.j2",
        admin=admin,
        section="outbox",
        status=code,
        form=form,
        page=page,
        error=error,
        done=done if _DONE.fullmatch(done) else "",
        failed=failed,
        waiting=waiting,
        filtered=filtered,
        older=older,
        statuses=STATUSES,
        channels=CHANNELS,
        next_url=_list_url(form, before=page.next_before) if page and page.next_before else "",
        first_url=_list_url(form),
        here=_list_url(form, before=older),
    )


def _back(back: str, message: str) -> RedirectResponse:
    target = back if back.startswith("/admin/outbox") and "//" not in back else "/admin/outbox"
    sep = "&" if "?" in target else "?"
    return RedirectResponse(target + sep + urlencode({"done": message}), status_code=303)


def _filter_form(
    status: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    recipient: Annotated[str, Form()] = "",
    from_: Annotated[str, Form(alias="from")] = "",
    to: Annotated[str, Form()] = "",
) -> dict[str, str]:
    """The outbox filter posted with a retry-all or cancel-all form, as `_match` reads it."""
    return {"status": status, "channel": channel, "recipient": recipient, "from": from_, "to": to}


FilterForm = Annotated[dict[str, str], Depends(_filter_form)]


@router.post("/outbox/retry")
def outbox_retry_filtered(
    admin: CsrfDep,
    session: SessionDep,
    form: FilterForm,
    back: Annotated[str, Form()] = "",
):
    try:
        match = _match(session, form)
        got = outbox.retry(session, match=match, everything=True)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    note(session, admin, "outbox.retry", _described(form), _retried(got))
    return _back(back, _retried(got))


@router.post("/outbox/cancel")
def outbox_cancel_filtered(
    admin: CsrfDep,
    session: SessionDep,
    form: FilterForm,
    back: Annotated[str, Form()] = "",
):
    try:
        match = _match(session, form)
        if match.empty:
            raise ValueError("choose a filter first: cancelling every queued delivery at once "
                             "is not offered here")  # fmt: skip
        n = outbox.cancel(session, match=match)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc
    message = f"{n} queued deliver{'y' if n == 1 else 'ies'} cancelled."
    note(session, admin, "outbox.cancel", _described(form), message)
    return _back(back, message)


def _described(form: dict[str, str]) -> str:
    return "; ".join(f"{k} {v}" for k, v in form.items() if v) or "every delivery"


def _retried(got: outbox.Retried) -> str:
    n = got.total
    text = f"{n} failed deliver{'y' if n == 1 else 'ies'} queued again"
    return text + (f" ({got.held} held for a disabled endpoint)." if got.held else ".")


def _delivery_or_404(session: Session, delivery_id: int) -> history.DeliveryLine:
    line = history.get(session, delivery_id) if 0 < delivery_id <= MAX_ID else None
    if line is None:
        raise HTTPException(404, "no such delivery")
    return line


@router.get("/outbox/{delivery_id}")
def delivery_page(
    request: Request, delivery_id: int, admin: AdminDep, session: SessionDep, done: str = ""
):
    line = _delivery_or_404(session, delivery_id)
    return render(
        request,
        "delivery.html.j2",
        admin=admin,
        section="outbox",
        d=line,
        attempts=history.attempts(session, delivery_id),
        done=done if _DONE.fullmatch(done) else "",
    )


@router.post("/outbox/{delivery_id}/retry")
def delivery_retry(
    delivery_id: int, admin: CsrfDep, session: SessionDep, back: Annotated[str, Form()] = ""
):
    line = _delivery_or_404(session, delivery_id)
    if line.status != "failed":
        raise HTTPException(409, f"only a failed delivery is retried; this one is {line.status}")
    got = outbox.retry(session, ids=[delivery_id])
    note(session, admin, "outbox.retry", f"delivery {delivery_id}: {line.carries} to "
         f"{line.recipient}", _retried(got))  # fmt: skip
    return _back(back or f"/admin/outbox/{delivery_id}", _retried(got))


@router.post("/outbox/{delivery_id}/cancel")
def delivery_cancel(
    delivery_id: int, admin: CsrfDep, session: SessionDep, back: Annotated[str, Form()] = ""
):
    line = _delivery_or_404(session, delivery_id)
    if line.status not in ("queued", "held"):
        raise HTTPException(409, f"only a queued delivery is cancelled; this one is {line.status}")
    n = outbox.cancel(session, ids=[delivery_id])
    note(session, admin, "outbox.cancel", f"delivery {delivery_id}: {line.carries} to "
         f"{line.recipient}", f"{n} queued delivery cancelled.")  # fmt: skip
    return _back(back or f"/admin/outbox/{delivery_id}", f"{n} queued delivery cancelled.")
