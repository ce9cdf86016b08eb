"""/api/v1/tokens: admin tokens, managed by owners (every operation needs an owner token).

A token is shown once, when it is created; only its hash is stored, so neither the list
nor anything else returns it again. Revoking a token ends its admin UI sessions at once.
The last live owner token can be neither revoked nor demoted here (409): somebody must
still be able to manage tokens and erase personal data. Each change is in the audit log.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import HTTPException, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.admin_tokens import (
    TokenAdminError,
    create_token,
    list_tokens,
    revoke_token,
    set_role,
)
from newsletter.core.models import AdminToken
from newsletter.web.api.common import admin_router, errors, note
from newsletter.web.deps import AdminDep, SessionDep, role

router = admin_router("/tokens", "tokens")
OWNER = role("owner")

Role = Literal["viewer", "editor", "owner"]
NamePath = Annotated[str, Path(min_length=1, max_length=100, examples=["analyst"])]


class TokenPublic(BaseModel):
    """A token as the list shows it: never the token itself, nor its hash."""

    name: str
    role: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    revoked: bool


class TokensPublic(BaseModel):
    data: list[TokenPublic]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["analyst"])
    role: Role = Field(
        description="viewer: reads only; editor: runs the newsletter; owner: also manages "
        "tokens and erases personal data."
    )


class TokenCreatedPublic(TokenPublic):
    token: str = Field(description="The token: shown this once, store it now.")


class TokenRoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


def token_public(row: AdminToken) -> TokenPublic:
    return TokenPublic(
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        revoked=row.revoked_at is not None,
    )


def token_or_404(session: Session, name: str) -> AdminToken:
    row = session.execute(select(AdminToken).where(AdminToken.name == name)).scalar()
    if row is None:
        raise HTTPException(404, f"no token named {name!r}")
    return row


@router.get(
    "",
    response_model=TokensPublic,
    summary="List admin tokens (names, roles, last use; never the tokens)",
    openapi_extra=OWNER,
)
def read_tokens(session: SessionDep) -> TokensPublic:
    return TokensPublic(data=[token_public(row) for row in list_tokens(session=session)])


@router.post(
    "",
    response_model=TokenCreatedPublic,
    status_code=201,
    summary="Create a token (returned this once)",
    description="409 when a token of that name exists (also a revoked one); 400 for a name "
    "that is not 1-100 printable characters, or that holds a character which breaks its "
    "address /api/v1/tokens/{name} (/ \\ ? # %) or an invisible one (Unicode Cc, Cf).",
    openapi_extra=OWNER,
    responses=errors(400, 409, 422),
)
def create_admin_token(
    session: SessionDep, admin: AdminDep, body: TokenCreate
) -> TokenCreatedPublic:
    if session.execute(select(AdminToken.id).where(AdminToken.name == body.name.strip())).first():
        raise HTTPException(409, f"a token named {body.name.strip()!r} exists already")
    row, token = create_token(session=session, name=body.name, role=body.role)
    note(session, admin, "token.create", row.name, f"role {row.role}")
    return TokenCreatedPublic(**token_public(row).model_dump(), token=token)


@router.patch(
    "/{name}",
    response_model=TokenPublic,
    summary="Change a token's role",
    description="Takes effect at the token's next request (its UI sessions too). 409 for "
    "a revoked token, and for the last live owner token: make another owner first.",
    openapi_extra=OWNER,
    responses=errors(404, 409, 422),
)
def change_token_role(
    session: SessionDep, admin: AdminDep, name: NamePath, body: TokenRoleChange
) -> TokenPublic:
    row = token_or_404(session, name)
    before = row.role
    try:
        set_role(session=session, name=row.name, role=body.role)
    except TokenAdminError as exc:
        raise HTTPException(409, str(exc)) from exc
    if before != row.role:
        note(session, admin, "token.role", row.name, f"{before} -> {row.role}")
    return token_public(row)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Revoke a token",
    description="At once: its API requests are refused and its admin UI sessions end. "
    "Revoking a revoked token changes nothing. 409 for the last live owner token.",
    openapi_extra=OWNER,
    responses=errors(404, 409, 422),
)
def revoke_admin_token(session: SessionDep, admin: AdminDep, name: NamePath) -> Response:
    row = token_or_404(session, name)
    if row.revoked_at is None:
        try:
            revoke_token(session=session, name=row.name, keep_an_owner=True)
        except TokenAdminError as exc:
            raise HTTPException(409, str(exc)) from exc
        note(session, admin, "token.revoke", row.name, f"role {row.role}")
    return Response(status_code=204)
