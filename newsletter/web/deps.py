"""Request-scoped dependencies: settings, a database session, the admin behind a token.

Roles are checked here, once for every admin API operation: reading (GET, HEAD) needs
any live token, any other method an editor, unless the route names its role with
`openapi_extra={"x-role": ...}` (`role("viewer")` for a POST that only reads, such as a
match check; `role("owner")` for tokens and erasure). The role shows in the OpenAPI
document as `x-role` on each operation."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jinja2 import Environment
from sqlmodel import Session

from newsletter.core.admin_tokens import ROLE_WORDS, allows, note_use, verify_token
from newsletter.core.models import AdminToken
from newsletter.core.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_env(request: Request) -> Environment:
    return request.app.state.env


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SettingsDep = Annotated[Settings, Depends(get_settings)]
# commit before the response goes out, so a 2xx means the change is stored: scope
# "function" ends the dependency when the endpoint returns (FastAPI's default, "request",
# would commit after the response is sent, and a failed commit would follow a 2xx).
# Streamed responses open their own sessions.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
EnvDep = Annotated[Environment, Depends(get_env)]

bearer = HTTPBearer(
    auto_error=False, description="An admin token from `newsletter admin token create`."
)


READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def role(needed: str) -> dict:
    """`openapi_extra` for a route whose role differs from its method's default."""
    assert needed in ROLE_WORDS
    return {"x-role": needed}


def role_needed(route: object, method: str) -> str:
    extra = getattr(route, "openapi_extra", None) or {}
    named = extra.get("x-role")
    if named:
        return str(named)
    return "viewer" if method.upper() in READING_METHODS else "editor"


def refuse_role(token: AdminToken, needed: str) -> HTTPException | None:
    """The 403 for a token whose role is below `needed`, or None when it may."""
    if allows(token.role, needed):
        return None
    return HTTPException(
        403,
        f"this needs an {needed} token; {token.name!r} is a {token.role} token "
        f"({ROLE_WORDS.get(token.role, 'no known role')})",
    )


def require_admin(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AdminToken:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401, "an admin bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    row = verify_token(session=session, token=credentials.credentials)
    if row is None:
        raise HTTPException(403, "this token is unknown or revoked")
    refused = refuse_role(row, role_needed(request.scope.get("route"), request.method))
    if refused is not None:
        raise refused
    note_use(session=session, row=row)
    return row


AdminDep = Annotated[AdminToken, Depends(require_admin)]


def require_metrics_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """/metrics is open unless NEWSLETTER_METRICS_TOKEN is set; then it needs that bearer."""
    if settings.metrics_token is None:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            401, "a metrics bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    expected = settings.metrics_token.get_secret_value().encode()
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(403, "this metrics token is wrong")
