"""Plan a period's digests the way the scheduler does: in a given session, or in one of its own."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment


def plan_in(session, settings, frequency="monthly", period="2025-07"):
    """Plan one period in `session` (the caller commits); returns the planning summary."""
    return plan_period(
        session=session,
        env=make_environment(settings.templates_dir),
        settings=settings,
        frequency=frequency,
        period_key=period,
    )


def plan(engine, settings, frequency="monthly", period="2025-07"):
    """Plan and commit one period in a session of its own; returns the planning summary."""
    with Session(engine, expire_on_commit=False) as s:
        summary = plan_in(s, settings, frequency, period)
        s.commit()
    return summary
