"""Admin pages for the editor's sharp take (and its approval), digest previews and proofs,
and sending a digest now."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from markupsafe import Markup
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.core.models import Delivery, Subscriber
from newsletter.core.periods import DIGEST_FREQUENCIES, PeriodError, parse_period
from newsletter.ingest.events import latest_event_day
from newsletter.ingest.takes import (
    MAX_CHARS,
    TakeError,
    approve_take,
    get_take,
    markdown_to_html,
    set_take,
)
from newsletter.pipeline import plan_period
from newsletter.planning.digests import Preview, SendSummary, digest_kind, preview_digest
from newsletter.planning.proofs import send_proof
from newsletter.planning.send_times import Waiting, waiting_sends
from newsletter.topics.catalogue import list_topics
from newsletter.web.admin.auth import (
    AdminDep,
    AdminRoute,
    CsrfDep,
    ReadFormDep,
    fragment,
    note,
    render,
)
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep

router = APIRouter(route_class=AdminRoute)

LANGUAGES = [("en", "English"), ("zh", "中文")]
PERIOD_HINTS = {"monthly": "2025-07", "weekly": "2025-W31", "daily": "2025-07-31"}


def latest_month(session: Session) -> str:
    """The month of the newest stored event (or this month): a sensible default period."""
    return f"{latest_event_day(session=session) or dt.date.today():%Y-%m}"


def take_html(body: str) -> Markup:
    # markdown_to_html leaves raw HTML as text, so its output is safe to embed
    return Markup(markdown_to_html(body)) if body.strip() else Markup("")


# --- the sharp take ----------------------------------------------------------------------


def _take_page(
    request,
    admin,
    *,
    period,
    language,
    body,
    errors=None,
    status=200,
    saved=False,
    approved=False,
    take=None,
):
    return render(
        request,
        "take.html.j2",
        admin=admin,
        section="take",
        status=status,
        period=period,
        language=language,
        languages=LANGUAGES,
        body=body,
        preview=take_html(body),
        errors=errors or [],
        saved=saved,
        approved=approved,
        take=take,
        max_chars=MAX_CHARS,
    )


@router.get("/take")
def take_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    period: str = "",
    language: str = "en",
    saved: int = 0,
    approved: int = 0,
):
    period = period.strip() or latest_month(session)
    language = language if language in dict(LANGUAGES) else "en"
    errors, body, take = [], "", None
    try:
        parse_period("monthly", period)
        take = get_take(session=session, period=period, language=language, fallback=False)
        body = take.body_markdown if take else ""
    except PeriodError as exc:
        errors.append(str(exc))
    return _take_page(
        request,
        admin,
        period=period,
        language=language,
        body=body,
        errors=errors,
        saved=bool(saved),
        approved=bool(approved),
        take=take,
    )


@router.post("/take")
def take_save(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    period: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "en",
    body: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "save",
):
    period = period.strip()
    if action == "preview":
        return _take_page(request, admin, period=period, language=language, body=body)
    try:
        before = get_take(session=session, period=period, language=language, fallback=False)
        was = (before.body_markdown, before.state) if before else None
        take = set_take(session=session, period=period, language=language, body=body)
    except ValueError as exc:  # PeriodError, bad language, empty or too long
        return _take_page(
            request,
            admin,
            period=period,
            language=language,
            body=body,
            errors=[str(exc)],
            status=422,
        )
    if was != (take.body_markdown, take.state):
        note(session, admin, "take.edit", f"{period} {language}", "saved as a draft")
    query = urlencode({"period": period, "language": language, "saved": 1})
    return RedirectResponse(f"/admin/take?{query}", status_code=303)


@router.post("/take/approve")
def take_approve(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    period: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "en",
):
    period = period.strip()
    try:
        take = get_take(session=session, period=period, language=language, fallback=False)
        before = take.state if take else None
        take = approve_take(session=session, period=period, language=language, by=admin.token.name)
    except ValueError as exc:  # TakeError, PeriodError: nothing to approve
        return _take_page(
            request,
            admin,
            period=period,
            language=language if language in dict(LANGUAGES) else "en",
            body="",
            errors=[str(exc)],
            status=422 if not isinstance(exc, TakeError) else 404,
        )
    if before != "approved":
        note(session, admin, "take.approve", f"{period} {language}", "approved")
    query = urlencode({"period": take.period, "language": take.language, "approved": 1})
    return RedirectResponse(f"/admin/take?{query}", status_code=303)


@router.post("/take/preview")
def take_preview(request: Request, admin: ReadFormDep, body: Annotated[str, Form()] = ""):
    return fragment(request, "take_preview.html.j2", preview=take_html(body))


# --- digest preview -------------------------------------------------------------------------


def _preview_page(
    request: Request,
    admin,
    session: Session,
    settings,
    env,
    *,
    frequency: str,
    period: str,
    email: str,
    language: str,
    topics: list[str],
    show: bool,
    proof_to: str | None = None,
    proof_error: str = "",
    proof_sent: str = "",
    status: int = 200,
):
    period, email = period.strip(), email.strip()
    language = language if language in dict(LANGUAGES) else "en"
    readers = session.exec(
        select(Subscriber)
        .where(Subscriber.status == "active")
        .order_by(Subscriber.email)
        .limit(200)
    ).all()
    preview: Preview | None = None
    error = ""
    if show:
        try:
            preview = preview_digest(
                session=session,
                env=env,
                settings=settings,
                frequency=frequency,
                period_key=period,
                email=email or None,
                topics=topics,
                language=language,
            )
        except ValueError as exc:  # DigestError, SubscriberError: nothing to show
            error = str(exc)
    reader_of = f"a {dict(LANGUAGES)[language]} reader of {', '.join(topics) or 'every topic'}"
    who = email or reader_of
    return render(
        request,
        "preview.html.j2",
        admin=admin,
        section="preview",
        status=status,
        frequencies=DIGEST_FREQUENCIES,
        frequency=frequency,
        period=period or latest_month(session),
        email=email if show else (readers[0].email if readers else ""),
        readers=readers,
        languages=LANGUAGES,
        language=language,
        topics=list_topics(session=session),
        chosen=topics,
        who=who,
        preview=preview,
        error=error,
        hints=PERIOD_HINTS,
        proof_to=", ".join(settings.proof_to) if proof_to is None else proof_to,
        proof_error=proof_error,
        proof_sent=proof_sent,
    )


@router.get("/preview")
def digest_preview(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    frequency: str = "monthly",
    period: str = "",
    email: str = "",
    language: str = "en",
    topics: Annotated[list[str] | None, Query()] = None,
    view: str = "",
):
    return _preview_page(
        request,
        admin,
        session,
        settings,
        env,
        frequency=frequency,
        period=period,
        email=email,
        language=language,
        topics=[t for t in topics or [] if t],
        show=bool(email.strip()) or view == "topics",
    )


@router.post("/preview/proof")
def digest_proof(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    frequency: Annotated[str, Form()] = "monthly",
    period: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "en",
    topics: Annotated[list[str], Form()] = [],  # noqa: B006
    to: Annotated[str, Form()] = "",
):
    """Send what the page previews to the editors' addresses, as a proof."""
    topics = [t for t in topics if t]
    page: dict[str, Any] = {
        "frequency": frequency,
        "period": period,
        "email": email,
        "language": language,
        "topics": topics,
        "show": True,
        "proof_to": to,
    }
    try:
        sent = send_proof(
            session=session,
            env=env,
            settings=settings,
            frequency=frequency,
            period_key=period.strip(),
            to=to,
            email=email.strip() or None,
            topics=topics,
            language=language if language in dict(LANGUAGES) else "en",
        )
    except ValueError as exc:  # ProofError (address, relay), DigestError, SubscriberError
        return _preview_page(
            request, admin, session, settings, env, proof_error=str(exc), status=422, **page
        )
    note(session, admin, "digest.proof", period.strip(), f"{sent.view} to {', '.join(sent.to)}")
    return _preview_page(
        request,
        admin,
        session,
        settings,
        env,
        proof_sent=f"Proof sent to {', '.join(sent.to)}. Subject: {sent.subject}",
        **page,
    )


# --- send now -------------------------------------------------------------------------------


def segments_of(summary: SendSummary) -> list[dict[str, Any]]:
    rows = []
    for key, events in sorted(summary.segments.items()):
        parts = key.split("|")
        rows.append(
            {
                "language": parts[3] if len(parts) > 3 else "",
                "topics": parts[4].split(",") if len(parts) > 4 and parts[4] else [],
                "events": events,
                "recipients": summary.segment_recipients.get(key, 0),
            }
        )
    return rows


def already_planned(session: Session, frequency: str, period: str) -> int:
    """Readers who have this digest queued or sent already (they will not get it twice)."""
    return session.exec(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.kind == digest_kind(frequency),
            Delivery.period == period,
            Delivery.subscriber_id.is_not(None),
        )
    ).one()


def waiting_notes(request: Request) -> list[Waiting]:
    """The monthly sends held for a sharp take's approval (dashboard and Send page)."""
    with Session(request.app.state.engine) as session:
        return waiting_sends(session=session, settings=request.app.state.settings)


def _send_page(request, admin, *, frequency, period, **context):
    context.setdefault("waiting", waiting_notes(request))
    context.setdefault("summary", None)
    context.setdefault("result", None)
    context.setdefault("error", "")
    return render(
        request,
        "send.html.j2",
        admin=admin,
        section="send",
        frequencies=DIGEST_FREQUENCIES,
        frequency=frequency,
        period=period,
        hints=PERIOD_HINTS,
        **context,
    )


@router.get("/send")
def send_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    frequency: str = "monthly",
    period: str = "",
):
    period = period.strip()
    if not period:
        return _send_page(request, admin, frequency=frequency, period=latest_month(session))
    try:
        summary = plan_period(
            session=session,
            env=env,
            settings=settings,
            frequency=frequency,
            period_key=period,
            dry_run=True,
        )
    except ValueError as exc:  # DigestError: bad frequency or period
        return _send_page(request, admin, frequency=frequency, period=period, error=str(exc))
    return _send_page(
        request,
        admin,
        frequency=frequency,
        period=summary.period,
        summary=summary,
        segments=segments_of(summary),
        already=already_planned(session, frequency, summary.period),
    )


@router.post("/send")
def send_now(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    frequency: Annotated[str, Form()] = "",
    period: Annotated[str, Form()] = "",
):
    try:
        result = plan_period(
            session=session,
            env=env,
            settings=settings,
            frequency=frequency,
            period_key=period.strip(),
        )
    except ValueError as exc:
        return _send_page(
            request, admin, frequency=frequency, period=period, error=str(exc), status=422
        )
    note(
        session,
        admin,
        "digest.send",
        f"{result.frequency} {result.period}",
        f"{result.enqueued} queued for {result.recipients} readers",
    )
    return _send_page(request, admin, frequency=frequency, period=result.period, result=result)
