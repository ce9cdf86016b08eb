"""Plan a period's digests the way the scheduler does, in a session of its own."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.pipeline import plan_period
from newsletter.rendering.editions import make_environment


def plan(engine, settings, frequency="monthly", period="2025-07"):
    """Plan and commit one period; returns the planning summary."""
    with Session(engine, expire_on_commit=False) as s:
        summary = plan_period(
            session=s,
            env=make_environment(settings.templates_dir),
            settings=settings,
            frequency=frequency,
            period_key=period,
        )
        s.commit()
    return summary
