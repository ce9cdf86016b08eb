"""Admin API tokens (shown once, stored as a hash, revocable) and the admin UI sessions
opened with them (stored server-side, so logout and revocation take effect at once).

Each token has a role. A viewer reads; an editor runs the newsletter (topics, events,
readers, sends); an owner also manages tokens and erases personal data. The API and the
admin UI check the role of the token behind each request."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import unicodedata

from sqlalchemy import delete, select, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from newsletter.core.models import AdminToken, AdminWebSession, utcnow

PREFIX = "nla_"
ROLES = ("viewer", "editor", "owner")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
ROLE_WORDS = {
    "viewer": "reads everything, changes nothing",
    "editor": "runs the newsletter: topics, events, readers, sends",
    "owner": "an editor who also manages tokens and erases personal data",
}


class TokenAdminError(ValueError):
    """A token request that cannot be carried out."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def allows(role: str, needed: str) -> bool:
    """Whether a token of `role` may do what needs `needed` (unknown roles may nothing)."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


def check_role(role: str) -> str:
    role = role.strip().lower()
    if role not in ROLE_RANK:
        raise TokenAdminError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def has_live_owner(*, session: Session) -> bool:
    return (
        session.execute(
            select(AdminToken.id).where(
                AdminToken.role == "owner",
                AdminToken.revoked_at.is_(None),
            )
        ).first()
        is not None
    )


# Characters that break the token's address, /api/v1/tokens/{name}: a path separator
# (a backslash is one to browsers), the start of a query or fragment, a percent-escape.
NAME_URL_CHARACTERS = "/\\?#%"
# Invisible characters that make two different names look the same (zero-width spaces,
# direction marks and overrides, control characters), and lone surrogates.
NAME_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs")


def check_token_name(name: str) -> None:
    """Refuse a new token name that cannot be used in its API address or hides characters.

    Only new names are checked: existing tokens keep theirs."""
    bad = sorted({c for c in name if c in NAME_URL_CHARACTERS})
    if bad:
        shown = " ".join(f"'{c}'" for c in bad)
        raise TokenAdminError(
            f"a token name cannot contain {shown}: the name is part of the token's "
            "address /api/v1/tokens/{name} (use letters, digits, '-', '_', '.' or spaces)"
        )
    hidden = sorted({c for c in name if unicodedata.category(c) in NAME_HIDDEN_CATEGORIES})
    if hidden:
        shown = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'control')}" for c in hidden)
        raise TokenAdminError(
            f"a token name cannot contain invisible or control characters ({shown}): "
            "two names would look the same"
        )


def create_token(*, session: Session, name: str, role: str = "owner") -> tuple[AdminToken, str]:
    name = name.strip()
    role = check_role(role)
    if not name or len(name) > 100 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise TokenAdminError("a token needs a name of 1-100 printable characters")
    check_token_name(name)
    if session.execute(select(AdminToken).where(AdminToken.name == name)).scalar():
        raise TokenAdminError(f"a token named {name!r} exists already")
    token = PREFIX + secrets.token_urlsafe(32)
    row = AdminToken(name=name, token_hash=token_hash(token), role=role)
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


def set_role(*, session: Session, name: str, role: str) -> AdminToken:
    """Change a live token's role; the last live owner cannot stop being one (nobody could
    manage tokens or erase personal data any more)."""
    role = check_role(role)
    row = session.execute(select(AdminToken).where(AdminToken.name == name)).scalar()
    if row is None or row.revoked_at is not None:
        raise TokenAdminError(f"no live token named {name!r}")
    if row.role == "owner" and role != "owner":
        _keep_an_owner(session=session, leaving=row)
    row.role = role
    session.add(row)
    session.flush()
    return row


def _keep_an_owner(*, session: Session, leaving: AdminToken) -> None:
    # every live owner's row is locked, in id order, until this change commits (on
    # PostgreSQL; SQLite has one writer at a time): two owners stepping down at once
    # would otherwise each see the other still an owner, and leave none
    owners = session.execute(
        select(AdminToken.id)
        .where(AdminToken.role == "owner", AdminToken.revoked_at.is_(None))
        .order_by(AdminToken.id)
        .with_for_update()
    ).scalars()
    if not any(owner != leaving.id for owner in owners):
        raise TokenAdminError(f"{leaving.name!r} is the last owner token: make another owner first")


def revoke_token(*, session: Session, name: str, keep_an_owner: bool = False) -> AdminToken:
    """Revoke a token now. With keep_an_owner (the API and UI), the last live owner token
    cannot be revoked; the CLI, run by whoever holds the database, may."""
    row = session.execute(select(AdminToken).where(AdminToken.name == name)).scalar()
    if row is None:
        raise TokenAdminError(f"no token named {name!r}")
    if keep_an_owner and row.role == "owner" and row.revoked_at is None:
        _keep_an_owner(session=session, leaving=row)
    row.revoked_at = row.revoked_at or utcnow()
    session.add(row)
    session.execute(delete(AdminWebSession).where(AdminWebSession.token_id == row.id))
    return row


def list_tokens(*, session: Session) -> list[AdminToken]:
    return list(session.execute(select(AdminToken).order_by(AdminToken.id)).scalars())


# --- admin UI sessions ---------------------------------------------------------------------


def start_session(*, session: Session, token: AdminToken, lifetime: dt.timedelta) -> str:
    """A new session for a live token; returns its id (only its hash is stored)."""
    now = utcnow()
    # expired sessions are of no use to anyone: drop them while we are here
    session.execute(delete(AdminWebSession).where(AdminWebSession.expires_at < now))
    session_id = secrets.token_urlsafe(32)
    session.add(
        AdminWebSession(
            session_hash=token_hash(session_id), token_id=token.id, expires_at=now + lifetime
        )
    )
    session.flush()
    return session_id


def session_token(*, session: Session, session_id: str) -> AdminToken | None:
    """The live token behind a live session, or None (ended, expired or token revoked)."""
    row = session.execute(
        select(AdminWebSession).where(AdminWebSession.session_hash == token_hash(session_id))
    ).scalar()
    if row is None or row.expires_at <= utcnow():
        return None
    token = session.get(AdminToken, row.token_id)
    if token is None or token.revoked_at is not None:
        return None
    return token


def end_session(*, session: Session, session_id: str) -> None:
    session.execute(
        delete(AdminWebSession).where(AdminWebSession.session_hash == token_hash(session_id))
    )
