"""The editor's sharp take: one Markdown text per month and language."""

from __future__ import annotations

import functools

from sqlmodel import Session, select

from newsletter.core.models import SharpTake, utcnow
from newsletter.core.periods import parse_period
from newsletter.core.text import clean_block

MAX_CHARS = 10_000


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
        take = SharpTake(period=period, language=language, body_markdown=body)
    else:
        take.body_markdown, take.updated_at = body, utcnow()
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
