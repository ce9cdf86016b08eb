"""The editor's sharp take: one Markdown text per month and language.

A take is a draft until an editor approves it; saving a changed text makes it a draft
again. The scheduled monthly send waits for the approval (planning/take_gate.py).
"""

from __future__ import annotations

import functools

from sqlmodel import Session, select

from newsletter.core.models import SharpTake, utcnow
from newsletter.core.periods import parse_period
from newsletter.core.text import clean_block

MAX_CHARS = 10_000
STATES = ("draft", "approved")


class TakeError(ValueError):
    """A take that cannot be stored or approved, with the reason."""


# raw HTML in the Markdown is shown as text, never interpreted
@functools.cache
def _markdown():
    """Made on first use: importing the parser costs every command (and worker) about
    0.1 s of start-up, and only renderings of a take need it."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def markdown_to_html(text: str) -> str:
    return _markdown().render(text)


def set_take(*, session: Session, period: str, language: str, body: str) -> SharpTake:
    parse_period("monthly", period)
    if language not in ("zh", "en"):
        raise ValueError("language must be zh or en")
    body = clean_block(body)
    if not body:
        raise ValueError("the sharp take is empty")
    if len(body) > MAX_CHARS:
        raise ValueError(f"the sharp take is longer than {MAX_CHARS} characters")
    take = get_take(session=session, period=period, language=language, fallback=False)
    if take is None:
        take = SharpTake(period=period, language=language, body_markdown=body, state="draft")
    elif take.body_markdown != body:  # an edit needs approving again; the same text does not
        take.body_markdown, take.updated_at = body, utcnow()
        take.state, take.approved_at, take.approved_by = "draft", None, None
    session.add(take)
    session.flush()
    return take


def get_take(
    *, session: Session, period: str, language: str, fallback: bool = True
) -> SharpTake | None:
    """The take in the reader's language, else (with fallback) the other one."""
    takes = {
        t.language: t for t in session.exec(select(SharpTake).where(SharpTake.period == period))
    }
    if language in takes or not fallback:
        return takes.get(language)
    return next(iter(sorted(takes.values(), key=lambda t: t.language)), None)


def approve_take(*, session: Session, period: str, language: str, by: str) -> SharpTake:
    """Mark the take of a month and language approved by `by` (a token's name)."""
    parse_period("monthly", period)
    if language not in ("zh", "en"):
        raise TakeError("language must be zh or en")
    take = get_take(session=session, period=period, language=language, fallback=False)
    if take is None:
        raise TakeError(f"no {language} sharp take for {period} to approve")
    if take.state != "approved":
        take.state, take.approved_at, take.approved_by = "approved", utcnow(), by[:100]
        session.add(take)
        session.flush()
    return take


def draft_languages(*, session: Session, period: str) -> list[str]:
    """The languages whose take of this month is written and not approved."""
    rows = session.exec(
        select(SharpTake.language).where(SharpTake.period == period, SharpTake.state != "approved")
    )
    return sorted(rows)
