"""Admin page for tokens (owners only): the list with roles and last use, create a token
(shown once, on the page that answers the form), change a token's role, revoke one.

The same rules as the API's /tokens: the last live owner token can be neither revoked
nor demoted, and every change is in the audit log."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.admin_tokens import (
    ROLE_WORDS,
    ROLES,
    TokenAdminError,
    create_token,
    list_tokens,
    revoke_token,
    set_role,
)
from newsletter.core.models import AdminToken
from newsletter.web.admin.auth import AdminDep, AdminRoute, OwnerCsrfDep, note, render
from newsletter.web.deps import SessionDep, refuse_role

router = APIRouter(route_class=AdminRoute)

DONE = {
    "role": "Role changed for {name}: it takes effect at its next request.",
    "revoked": "{name} is revoked: its requests are refused and its sessions have ended.",
}


def _page(
    request: Request,
    admin,
    session: Session,
    *,
    done: str = "",
    name: str = "",
    error: str = "",
    create_error: str = "",
    form: dict | None = None,
    status: int = 200,
):
    tokens = list_tokens(session=session)
    owners = [t.name for t in tokens if t.role == "owner" and t.revoked_at is None]
    return render(
        request,
        "tokens.html.j2",
        admin=admin,
        section="tokens",
        status=status,
        tokens=tokens,
        last_owner=owners[0] if len(owners) == 1 else None,
        roles=ROLES,
        role_words=ROLE_WORDS,
        done=DONE[done].format(name=repr(name)) if done in DONE and name else "",
        error=error,
        create_error=create_error,
        form=form or {"name": "", "role": "viewer"},
    )


def _owner(admin) -> None:
    refused = refuse_role(admin.token, "owner")
    if refused is not None:
        raise refused


@router.get("/tokens")
def tokens_page(
    request: Request, admin: AdminDep, session: SessionDep, done: str = "", name: str = ""
):
    _owner(admin)
    return _page(request, admin, session, done=done, name=name[:100])


@router.post("/tokens")
def token_create(
    request: Request,
    admin: OwnerCsrfDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
):
    form = {"name": name, "role": role}
    error = ""
    if not name.strip():
        error = "Give the token a name, e.g. who or what uses it."
    elif session.execute(select(AdminToken.id).where(AdminToken.name == name.strip())).first():
        error = f"A token named {name.strip()!r} exists already (revoked ones keep their name)."
    if not error:
        try:
            row, token = create_token(session=session, name=name, role=role)
        except TokenAdminError as exc:
            error = str(exc)
    if error:
        return _page(request, admin, session, create_error=error, form=form, status=422)
    note(session, admin, "token.create", row.name, f"role {row.role}")
    session.commit()  # stored before the token is shown (see `_done`)
    return render(
        request,
        "token_created.html.j2",
        admin=admin,
        section="tokens",
        status=201,
        row=row,
        token=token,
        role_words=ROLE_WORDS,
    )


def _live(session: Session, name: str) -> AdminToken:
    row = session.execute(select(AdminToken).where(AdminToken.name == name)).scalar()
    if row is None or row.revoked_at is not None:
        raise HTTPException(404, f"no live token named {name!r}")
    return row


def _done(session: Session, done: str, name: str) -> RedirectResponse:
    # committed here, not after the response: the page the browser asks for next must
    # see the change (SessionDep commits once the response has gone out)
    session.commit()
    return RedirectResponse(
        "/admin/tokens?" + urlencode({"done": done, "name": name}), status_code=303
    )


@router.post("/tokens/role")
def token_role(
    request: Request,
    admin: OwnerCsrfDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "",
):
    row = _live(session, name)
    before = row.role
    if role not in ROLES:
        return _page(request, admin, session, error=f"Choose a role: {', '.join(ROLES)}.",
                     status=422)  # fmt: skip
    try:
        set_role(session=session, name=row.name, role=role)
    except TokenAdminError as exc:
        session.rollback()
        return _page(request, admin, session, error=str(exc), status=409)
    if row.role != before:
        note(session, admin, "token.role", row.name, f"{before} -> {row.role}")
    if row.id == admin.token.id and row.role != "owner":
        session.commit()  # an owner who stepped down cannot see the tokens page any more
        return RedirectResponse("/admin/", status_code=303)
    return _done(session, "role", row.name)


@router.post("/tokens/revoke")
def token_revoke(
    request: Request,
    admin: OwnerCsrfDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
):
    row = _live(session, name)
    try:
        revoke_token(session=session, name=row.name, keep_an_owner=True)
    except TokenAdminError as exc:
        session.rollback()
        return _page(request, admin, session, error=str(exc), status=409)
    note(session, admin, "token.revoke", row.name, f"role {row.role}")
    if row.id == admin.token.id:  # this session ended with it
        session.commit()
        return RedirectResponse("/admin/login", status_code=303)
    return _done(session, "revoked", row.name)
