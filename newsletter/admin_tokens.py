"""Admin API tokens: shown once, stored as a hash, revocable."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from .models import AdminToken, utcnow

PREFIX = "nla_"


class TokenAdminError(ValueError):
    """A token request that cannot be carried out."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(*, session: Session, name: str) -> tuple[AdminToken, str]:
    name = name.strip()
    if not name or len(name) > 100:
        raise TokenAdminError("a token needs a name of 1-100 characters")
    if session.execute(select(AdminToken).where(AdminToken.name == name)).scalar():
        raise TokenAdminError(f"a token named {name!r} exists already")
    token = PREFIX + secrets.token_urlsafe(32)
    row = AdminToken(name=name, token_hash=token_hash(token))
    session.add(row)
    session.flush()
    return row, token


def verify_token(*, session: Session, token: str) -> AdminToken | None:
    """The live token row for a presented token, or None (unknown, revoked, malformed)."""
    if not token or not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = session.execute(
        select(AdminToken).where(AdminToken.token_hash == token_hash(token))
    ).scalar()
    if row is None or row.revoked_at is not None:
        return None
    return row


def note_use(*, session: Session, row: AdminToken, every_seconds: float = 60.0) -> None:
    """Record when a token was last used: at most once a minute, in a transaction of its
    own, so a read-only API request never holds the database's write lock (on SQLite one
    writer at a time) while it runs."""
    now, last = utcnow(), row.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=dt.UTC)
    if last is not None and (now - last).total_seconds() < every_seconds:
        return
    with Session(session.get_bind()) as own:
        own.execute(update(AdminToken).where(AdminToken.id == row.id).values(last_used_at=now))
        own.commit()
    set_committed_value(row, "last_used_at", now)  # known, and not written a second time


def revoke_token(*, session: Session, name: str) -> AdminToken:
    row = session.execute(select(AdminToken).where(AdminToken.name == name)).scalar()
    if row is None:
        raise TokenAdminError(f"no token named {name!r}")
    row.revoked_at = row.revoked_at or utcnow()
    session.add(row)
    return row


def list_tokens(*, session: Session) -> list[AdminToken]:
    return list(session.execute(select(AdminToken).order_by(AdminToken.id)).scalars())
