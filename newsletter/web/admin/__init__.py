"""The admin web UI under /admin (server-rendered).

Pages: login/logout and the deliveries dashboard here; topics in `admin_topics`,
events (search, add, edit, import, pin, delete) in `admin_events`, the sharp take,
digest preview and send-now in `admin_digests`, readers in `admin_subscribers` (their
CSV import in `admin_subscriber_import`), teams (chat webhooks) in `admin_webhooks`,
feeds in `admin_feeds`, admin tokens in `admin_tokens` (owners), the outbox in
`admin_outbox`, the audit log in `admin_audit`.
Sessions and CSRF are in `admin_auth`.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from newsletter.core.admin_tokens import end_session, verify_token
from newsletter.core.models import utcnow
from newsletter.feedback.clicks import click_stats, per_reader, set_per_reader
from newsletter.web.admin import audit as admin_audit
from newsletter.web.admin import digests as admin_digests
from newsletter.web.admin import events as admin_events
from newsletter.web.admin import feeds as admin_feeds
from newsletter.web.admin import outbox as admin_outbox
from newsletter.web.admin import subscriber_import as admin_subscriber_import
from newsletter.web.admin import subscribers as admin_subscribers
from newsletter.web.admin import tokens as admin_tokens
from newsletter.web.admin import topics as admin_topics
from newsletter.web.admin import webhooks as admin_webhooks
from newsletter.web.admin.auth import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    AdminDep,
    AdminRoute,
    OwnerCsrfDep,
    ReadFormDep,
    load_session,
    login_csrf_for,
    note,
    open_session,
    render,
    safe_next,
    set_login_cookie,
)
from newsletter.web.admin.dashboard import dashboard_data
from newsletter.web.deps import SessionDep, SettingsDep

router = APIRouter(include_in_schema=False, route_class=AdminRoute)


def _login_page(request: Request, settings, *, next_url: str, error: str = "", status: int = 200):
    nonce = secrets.token_urlsafe(16)
    response = render(
        request,
        "login.html.j2",
        admin=None,
        status=status,
        error=error,
        next_url=next_url,
        login_csrf=login_csrf_for(settings, nonce),
    )
    set_login_cookie(response, settings, nonce)
    return response


@router.get("/login")
def login_form(request: Request, session: SessionDep, settings: SettingsDep, next: str = ""):
    if load_session(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, settings, next_url=safe_next(next))


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
):
    next_url = safe_next(next)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(csrf_token, login_csrf_for(settings, nonce)):
        return _login_page(
            request,
            settings,
            next_url=next_url,
            status=403,
            error="The login form expired or was not sent from this site. Please try again.",
        )
    row = verify_token(session=session, token=token.strip())
    if row is None:
        return _login_page(
            request,
            settings,
            next_url=next_url,
            status=401,
            error="That token is unknown or revoked.",
        )
    row.last_used_at = utcnow()
    session.add(row)
    response = RedirectResponse(next_url, status_code=303)
    open_session(response, session, settings, row)
    response.delete_cookie(LOGIN_COOKIE, path="/admin/login")
    return response


@router.post("/logout")
def logout(admin: ReadFormDep, session: SessionDep):
    """Ends the session server-side: the same cookie, replayed, is refused."""
    end_session(session=session, session_id=admin.session_id)
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/admin")
    return response


@router.get("/")
def dashboard(request: Request, admin: AdminDep, session: SessionDep, clicks_saved: str = ""):
    return _dashboard(request, admin, session, saved=clicks_saved)


def _dashboard(request: Request, admin, session, *, saved: str = ""):
    return render(
        request,
        "dashboard.html.j2",
        admin=admin,
        section="dashboard",
        waiting=admin_digests.waiting_notes(request),
        clicks=click_stats(session, days=CLICK_DAYS),
        click_tracking=request.app.state.settings.click_tracking,
        per_reader=per_reader(session),
        clicks_saved=CLICK_MESSAGES.get(saved, ""),
        **dashboard_data(engine=request.app.state.engine),
    )


CLICK_DAYS = 30
CLICK_MESSAGES = {
    "on": "Per-reader click counts are on.",
    "off": "Per-reader click counts are off, and the ones kept were deleted.",
}


@router.post("/clicks/per-reader")
def clicks_per_reader(admin: OwnerCsrfDep, session: SessionDep, on: Annotated[str, Form()] = ""):
    """The owner's switch for per-reader click counts (off deletes them)."""
    if on not in ("0", "1"):
        raise HTTPException(400, "on must be 0 or 1")
    deleted = set_per_reader(session, on == "1")
    note(
        session,
        admin,
        "clicks.per_reader",
        "per-reader click counts",
        "on" if on == "1" else f"off; {deleted} per-reader counts deleted",
    )
    state = "on" if on == "1" else "off"
    return RedirectResponse(f"/admin/?clicks_saved={state}#clicks", status_code=303)


router.include_router(admin_topics.router)
router.include_router(admin_events.router)
router.include_router(admin_digests.router)
router.include_router(admin_subscriber_import.router)  # before /subscribers/{id}
router.include_router(admin_subscribers.router)
router.include_router(admin_webhooks.router)
router.include_router(admin_outbox.router)
router.include_router(admin_audit.router)
router.include_router(admin_feeds.router)
router.include_router(admin_tokens.router)
