"""Admin pages for readers: search and filter (keyset pages), CSV export, and one reader's
page: edit their topics and rhythm, resend the confirmation, unsubscribe, suppress or
lift the suppression, re-enable a reader that bounces disabled, their bounce history and
what they were sent."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import ValidationError
from sqlmodel import Session

from newsletter.audience import directory
from newsletter.audience.directory import STATUSES, DirectoryError, SubscriberFilter
from newsletter.audience.subscribers import (
    LANGUAGES,
    SubscriberError,
    SubscriberIn,
    address_key,
    subscriber_topics,
    suppression_reason,
    update_subscriber,
)
from newsletter.core.errors import reason
from newsletter.core.models import Subscriber
from newsletter.core.periods import FREQUENCIES
from newsletter.delivery import history
from newsletter.delivery.outbox import MAX_ID, DeliveryFilter
from newsletter.feedback import clicks, sources
from newsletter.feedback.reenable import ReenableError, enable_reader
from newsletter.pipeline import readers, remove_subscriber
from newsletter.topics.catalogue import list_topics
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, OwnerCsrfDep, note, render
from newsletter.web.deps import SessionDep

router = APIRouter(route_class=AdminRoute)

TIMEZONES = ["UTC", "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Singapore", "Asia/Tokyo",
             "Asia/Kolkata", "Europe/London", "Europe/Berlin", "Europe/Paris",
             "America/New_York", "America/Chicago", "America/Los_Angeles",
             "America/Sao_Paulo", "Australia/Sydney"]  # fmt: skip

# what the page says after an action (the ?done= of the redirect)
DONE = {
    "saved": "Saved.",
    "confirmation": "A confirmation email is queued.",
    "confirmation-again": "A confirmation email was queued less than a minute ago; "
    "nothing more was queued.",
    "unsubscribed": "Unsubscribed: nothing more is mailed to this reader.",
    "suppressed": "Suppressed: nothing more is mailed to this address.",
    "lifted": "The suppression is lifted.",
    "enabled": "Re-enabled: their bounce score is reset and they are mailed again from the "
    "next send.",
}

# what the list says after an action on a reader who is no longer there
LIST_DONE = {
    "erased": "The reader's personal data is deleted; their address is kept only as a hash "
    "on the suppression list, so it is never mailed again.",
}

#: how much of a reader's bounce history their page shows (the API and CLI show more)
HISTORY_SIZE = 50


def _filter(
    q: str = "", status: str = "", topic: str = "", frequency: str = "", language: str = ""
) -> SubscriberFilter:
    """The list's filter from the query string (the list page and its CSV export)."""
    return SubscriberFilter(
        q=q.strip(),
        status=status or None,
        topic=topic or None,
        frequency=frequency or None,
        language=language or None,
    )


FilterQuery = Annotated[SubscriberFilter, Depends(_filter)]


@router.get("/subscribers")
def subscribers_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    match: FilterQuery,
    after: str = "",
    done: str = "",
):
    error, page, code = "", None, 200
    try:
        start = int(after) if after else None
        if start is not None and not 0 <= start <= MAX_ID:
            raise ValueError
    except ValueError:
        start, error, code = None, "That page link is broken; showing the first page.", 400
    try:
        page = directory.find(session, match, after=start)
    except DirectoryError as exc:
        error, code = str(exc), 400
    params = match.as_params()
    return render(
        request,
        "subscribers.html.j2",
        admin=admin,
        section="subscribers",
        status=code,
        match=match,
        page=page,
        error=error,
        after=start,
        topics=list_topics(session=session),
        statuses=STATUSES,
        frequencies=FREQUENCIES,
        languages=LANGUAGES,
        filtered=bool(params),
        done=LIST_DONE.get(done, ""),
        next_url=(
            "/admin/subscribers?" + urlencode({**params, "after": page.next_after})
            if page and page.next_after
            else ""
        ),
        first_url="/admin/subscribers" + ("?" + urlencode(params) if params else ""),
        export_url="/admin/subscribers/export.csv" + ("?" + urlencode(params) if params else ""),
    )


@router.get("/subscribers/export.csv")
def subscribers_export(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    match: FilterQuery,
):
    try:
        directory.conditions(session, match)
    except DirectoryError as exc:
        raise HTTPException(400, str(exc)) from exc
    engine = request.app.state.engine
    return StreamingResponse(
        directory.export_csv(lambda: Session(engine), match),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="subscribers.csv"',
            "Cache-Control": "no-store",
        },
    )


def _subscriber_or_404(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id) if 0 < subscriber_id <= MAX_ID else None
    if sub is None:
        raise HTTPException(404, "no such subscriber (removed, or never added)")
    return sub


def _detail(
    request: Request,
    admin,
    session: Session,
    sub: Subscriber,
    *,
    form: dict | None = None,
    error: str = "",
    erase_error: str = "",
    done: str = "",
    before: int | None = None,
    status: int = 200,
):
    current = {
        "name": sub.name,
        "language": sub.language,
        "timezone": sub.timezone,
        "frequency": sub.frequency,
        "topics": [t.slug for t in subscriber_topics(session=session, subscriber=sub)],
    }
    sent = history.find(session, DeliveryFilter(subscriber_id=sub.id), before=before, limit=25)
    bounces = sources.recent(
        session, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), limit=HISTORY_SIZE, subscriber_id=sub.id
    )
    # per-reader click counts: only while an owner has them on, and not for viewers
    clicked = (
        clicks.reader_event_clicks(session, sub.id)
        if admin.can["edit"] and clicks.per_reader(session)
        else None
    )
    return render(
        request,
        "subscriber.html.j2",
        admin=admin,
        section="subscribers",
        status=status,
        sub=sub,
        form=form or current,
        current=current,
        error=error,
        erase_error=erase_error,
        done=DONE.get(done, ""),
        suppressed=suppression_reason(session=session, email=sub.email),
        deliveries=sent,
        bounced=sources.on_deliveries(session, [d.id for d in sent.rows]),
        bounces=bounces,
        history_size=HISTORY_SIZE,
        clicked=clicked,
        clicked_limit=clicks.READER_EVENTS,
        topics=list_topics(session=session),
        frequencies=FREQUENCIES,
        languages=LANGUAGES,
        timezones=TIMEZONES,
    )


@router.get("/subscribers/{subscriber_id}")
def subscriber_page(
    request: Request,
    subscriber_id: int,
    admin: AdminDep,
    session: SessionDep,
    done: str = "",
    before: str = "",
):
    sub = _subscriber_or_404(session, subscriber_id)
    older = int(before) if before.isdigit() and 0 < int(before) <= MAX_ID else None
    return _detail(request, admin, session, sub, done=done, before=older)


def _back(sub: Subscriber, done: str) -> RedirectResponse:
    return RedirectResponse(f"/admin/subscribers/{sub.id}?done={done}", status_code=303)


@router.post("/subscribers/{subscriber_id}")
def subscriber_save(
    request: Request,
    subscriber_id: int,
    admin: CsrfDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
    frequency: Annotated[str, Form()] = "",
    topics: Annotated[list[str] | None, Form()] = None,
):
    sub = _subscriber_or_404(session, subscriber_id)
    form = {
        "name": name,
        "language": language,
        "timezone": timezone.strip(),
        "frequency": frequency,
        "topics": topics or [],
    }
    error = "" if topics else "Choose at least one topic."
    if not error:
        try:
            wanted = SubscriberIn.model_validate({"email": sub.email, **form})
            if update_subscriber(session=session, subscriber=sub, sub_in=wanted):
                note(session, admin, "subscriber.edit", sub.email, _prefs(wanted))
        except (ValidationError, ValueError) as exc:
            error = reason(exc)
    if error:
        session.rollback()
        return _detail(request, admin, session, sub, form=form, error=error, status=422)
    return _back(sub, "saved")


def _prefs(sub: SubscriberIn) -> str:
    return f"topics {','.join(sub.topics)}; {sub.frequency}; {sub.language}; {sub.timezone}"


def _act(request: Request, admin, session: Session, subscriber_id: int, action) -> object:
    sub = _subscriber_or_404(session, subscriber_id)
    try:
        done = action(sub)
    except SubscriberError as exc:
        session.rollback()
        return _detail(request, admin, session, sub, error=str(exc), status=409)
    if done != "confirmation-again":
        note(session, admin, f"subscriber.{done}", sub.email)
    return _back(sub, done)


@router.post("/subscribers/{subscriber_id}/confirmation")
def subscriber_resend(request: Request, subscriber_id: int, admin: CsrfDep, session: SessionDep):
    def act(sub: Subscriber) -> str:
        queued = readers.resend_confirmation(session=session, subscriber=sub)
        return "confirmation" if queued else "confirmation-again"

    return _act(request, admin, session, subscriber_id, act)


@router.post("/subscribers/{subscriber_id}/unsubscribe")
def subscriber_unsubscribe(
    request: Request, subscriber_id: int, admin: CsrfDep, session: SessionDep
):
    def act(sub: Subscriber) -> str:
        readers.unsubscribe(session=session, subscriber=sub)
        return "unsubscribed"

    return _act(request, admin, session, subscriber_id, act)


@router.post("/subscribers/{subscriber_id}/suppress")
def subscriber_suppress(request: Request, subscriber_id: int, admin: CsrfDep, session: SessionDep):
    def act(sub: Subscriber) -> str:
        readers.suppress(session=session, subscriber=sub)
        return "suppressed"

    return _act(request, admin, session, subscriber_id, act)


@router.post("/subscribers/{subscriber_id}/lift")
def subscriber_lift(
    request: Request,
    subscriber_id: int,
    admin: CsrfDep,
    session: SessionDep,
    force: Annotated[bool, Form()] = False,
):
    def act(sub: Subscriber) -> str:
        readers.lift_suppression(session=session, subscriber=sub, force=force)
        return "lifted"

    return _act(request, admin, session, subscriber_id, act)


@router.post("/subscribers/{subscriber_id}/enable")
def subscriber_enable(
    request: Request,
    subscriber_id: int,
    admin: CsrfDep,
    session: SessionDep,
    force: Annotated[str, Form()] = "",
):
    """The same decision as `subscribers enable` and the API's enable: kept in the reader's
    bounce history and in the audit log."""
    sub = _subscriber_or_404(session, subscriber_id)
    who = admin.token.name
    try:
        done = enable_reader(session=session, subscriber=sub, by=f"admin token {who!r}",
                             via="admin", force=bool(force))  # fmt: skip
    except ReenableError as exc:
        session.rollback()
        return _detail(request, admin, session, sub, error=str(exc), status=409)
    note(session, admin, "subscriber.enabled", sub.email, done)
    return _back(sub, "enabled")


@router.post("/subscribers/{subscriber_id}/erase")
def subscriber_erase(
    request: Request,
    subscriber_id: int,
    admin: OwnerCsrfDep,
    session: SessionDep,
    confirm_email: Annotated[str, Form()] = "",
):
    """GDPR erasure, as the API's DELETE /subscribers/{email} (owners only): the same
    `pipeline.remove_subscriber`, the same audit entry (which names no address)."""
    sub = _subscriber_or_404(session, subscriber_id)
    if not confirm_email.strip() or address_key(confirm_email) != address_key(sub.email):
        return _detail(request, admin, session, sub, status=422,
                       erase_error="Type the reader's address exactly to confirm.")  # fmt: skip
    remove_subscriber(session=session, subscriber=sub)
    note(session, admin, "subscriber.remove", f"subscriber {sub.id}", "personal data deleted")
    session.commit()  # before the redirect: the list the browser asks for next is without them
    return RedirectResponse("/admin/subscribers?done=erased", status_code=303)
