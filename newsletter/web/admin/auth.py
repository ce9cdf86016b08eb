"""Admin UI sessions: a signed cookie naming a server-side session, CSRF tokens, rendering.

The session cookie holds a random session id, signed with the admin-session key derived
from the master secret (itsdangerous) and valid for 12 hours. The session itself is a
row tied to the admin token used to log in (`admin_tokens.start_session`): logging out
deletes it and revoking the token ends it, so a replayed cookie is refused. Each POST
form carries a CSRF token, an HMAC of the session id under the CSRF key, so it changes
with every login. The login form is protected the same way by a short-lived pre-login
cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.exc import DataError
from sqlmodel import Session

from newsletter.core import audit
from newsletter.core.admin_tokens import allows, session_token, start_session
from newsletter.core.keys import ADMIN_SESSION, CSRF, derive_key
from newsletter.core.models import AdminToken
from newsletter.core.settings import Settings
from newsletter.web.deps import SessionDep, refuse_role

SESSION_COOKIE = "newsletter_admin"
LOGIN_COOKIE = "newsletter_admin_login"
SALT = "newsletter.admin-session"
SESSION_SECONDS = 12 * 3600
LOGIN_FORM_SECONDS = 3600
COOKIE_PATH = "/admin"

LABELS = {"brand": "AI Industry Brief", "tagline": "Admin console · AI Industry Brief"}


class LoginRequired(Exception):
    """No valid admin session: the route answers with a redirect to the login page."""


class AdminRoute(APIRoute):
    """A route that turns LoginRequired (raised by the session dependency) into a redirect."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return login_redirect(request)
            except DataError as exc:
                # what the database cannot store or compare, e.g. a NUL byte in text on
                # PostgreSQL: the request's fault (the session was rolled back already)
                raise HTTPException(
                    400,
                    "the request holds a character that cannot be used here, such as "
                    "a NUL byte; remove it and try again",
                ) from exc

        return route_handler


def login_redirect(request: Request) -> RedirectResponse:
    target = "/admin/login"
    path = request.url.path
    if request.method == "GET" and path not in ("/admin", "/admin/", "/admin/login"):
        query = f"?{request.url.query}" if request.url.query else ""
        target += "?next=" + quote(path + query, safe="")
    response = RedirectResponse(target, status_code=303)
    # a cookie that no longer works is dropped
    if SESSION_COOKIE in request.cookies:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    return response


def safe_next(value: str | None) -> str:
    """Only an admin page of this site may be the target after login."""
    if value and value.startswith("/admin/") and "//" not in value and "\\" not in value:
        return value
    return "/admin/"


def serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(derive_key(settings.secret_key, ADMIN_SESSION), salt=SALT)


def _hmac(settings: Settings, purpose: str, value: str) -> str:
    key = derive_key(settings.secret_key, CSRF)
    return hmac.new(key, f"admin-{purpose}|{value}".encode(), hashlib.sha256).hexdigest()


def csrf_for(settings: Settings, session_id: str) -> str:
    return _hmac(settings, "csrf", session_id)


def login_csrf_for(settings: Settings, nonce: str) -> str:
    return _hmac(settings, "login", nonce)


def _secure(settings: Settings) -> bool:
    return settings.base_url.startswith("https://")


def open_session(
    response: Response, session: Session, settings: Settings, token: AdminToken
) -> None:
    """Start a server-side session for `token` and hand its signed id to the browser."""
    session_id = start_session(
        session=session, token=token, lifetime=dt.timedelta(seconds=SESSION_SECONDS)
    )
    value = serializer(settings).dumps({"sid": session_id})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )


def set_login_cookie(response: Response, settings: Settings, nonce: str) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_FORM_SECONDS,
        path=COOKIE_PATH + "/login",
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )


@dataclass
class AdminSession:
    token: AdminToken
    csrf: str
    session_id: str

    @property
    def can(self) -> dict[str, bool]:
        """What the pages may offer this token: `can.edit` (editor), `can.own` (owner)."""
        return {"edit": allows(self.token.role, "editor"), "own": allows(self.token.role, "owner")}


def note(
    session: Session, admin_session: AdminSession, action: str, target: str, detail: str = ""
) -> None:
    """Record a change in the audit log under the session's token (same transaction).

    Pass secrets and URLs already masked: what is given here is stored as is.
    """
    audit.record(
        session=session, who=admin_session.token.name, action=action, target=target, detail=detail
    )


def load_session(request: Request, session: Session) -> AdminSession | None:
    """The live session the cookie names, or None (forged, expired, logged out, revoked)."""
    settings: Settings = request.app.state.settings
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 500:
        return None
    try:
        data = serializer(settings).loads(raw, max_age=SESSION_SECONDS)
    except BadSignature:  # also SignatureExpired
        return None
    sid = data.get("sid") if isinstance(data, dict) else None
    if not isinstance(sid, str) or not sid:
        return None
    token = session_token(session=session, session_id=sid)
    if token is None:
        return None
    return AdminSession(token=token, csrf=csrf_for(settings, sid), session_id=sid)


def require_session(request: Request, session: SessionDep) -> AdminSession:
    admin = load_session(request, session)
    if admin is None:
        raise LoginRequired
    return admin


AdminDep = Annotated[AdminSession, Depends(require_session)]


def require_form(admin: AdminDep, csrf_token: Annotated[str, Form()] = "") -> AdminSession:
    """A logged-in admin (any role) posting a form that carries this session's CSRF token:
    for forms that change nothing (log out, a preview, a live check)."""
    if not csrf_token or not hmac.compare_digest(csrf_token, admin.csrf):
        raise HTTPException(403, "the form's security token is missing or wrong; reload the page")
    return admin


ReadFormDep = Annotated[AdminSession, Depends(require_form)]


def require_csrf(admin: ReadFormDep) -> AdminSession:
    """A form that changes something: an editor or owner token, as in the API."""
    refused = refuse_role(admin.token, "editor")
    if refused is not None:
        raise refused
    return admin


# every form that changes something takes CsrfDep (editor), OwnerCsrfDep (owner) or,
# when it only reads, ReadFormDep
CsrfDep = Annotated[AdminSession, Depends(require_csrf)]


def require_owner_csrf(admin: ReadFormDep) -> AdminSession:
    refused = refuse_role(admin.token, "owner")
    if refused is not None:
        raise refused
    return admin


OwnerCsrfDep = Annotated[AdminSession, Depends(require_owner_csrf)]


def render(
    request: Request,
    template: str,
    *,
    admin: AdminSession | None,
    status: int = 200,
    section: str = "",
    **context: Any,
) -> HTMLResponse:
    """Render `templates/web/admin/<template>` with what every admin page needs."""
    env = request.app.state.env
    nonce = secrets.token_urlsafe(12)
    html = env.get_template(f"web/admin/{template}").render(
        lang="en",
        t=LABELS,
        admin=admin,
        can=admin.can if admin else {"edit": False, "own": False},
        csrf=admin.csrf if admin else "",
        section=section,
        nonce=nonce,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers.update(security_headers(nonce))
    return response


def security_headers(nonce: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": (
            "default-src 'none'; "
            f"script-src 'nonce-{nonce}'; "
            "style-src 'unsafe-inline'; "
            "img-src 'self' data: https: http:; "
            "connect-src 'self'; "
            "form-action 'self'; "
            "frame-ancestors 'none'; "
            "base-uri 'none'"
        ),
    }


def fragment(request: Request, template: str, **context: Any) -> HTMLResponse:
    """An HTML fragment for fetch() to put into a page (no layout)."""
    env = request.app.state.env
    html = env.get_template(f"web/admin/{template}").render(**context)
    response = HTMLResponse(html)
    response.headers.update({"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    return response
