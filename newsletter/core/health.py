"""What `/readyz` and `/metrics` report about the parts running in this process: the
worker loop (up, or restarting after a crash) and the scheduler (its jobs on time, or
overdue because its wake-ups stopped)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text


@dataclass
class WorkerState:
    up: bool = False
    restarts: int = 0
    last_error: str | None = None


@dataclass
class Health:
    """Shared by `serve` and its web app; a web app on its own has neither part."""

    worker: WorkerState | None = None
    scheduler_grace: float | None = None  # seconds a job may be late; None: no scheduler

    def report(self, engine: Engine) -> tuple[list[str], dict]:
        """(reasons this process is not ready, details for the JSON answer)."""
        problems: list[str] = []
        details: dict = {}
        if self.worker is not None:
            details["worker"] = {"up": self.worker.up, "restarts": self.worker.restarts}
            if not self.worker.up:
                problems.append(f"worker restarting after: {self.worker.last_error}")
        if self.scheduler_grace is not None:
            late = overdue_seconds(engine)
            details["scheduler"] = {"overdue_seconds": round(late, 1)}
            if late > self.scheduler_grace:
                problems.append(f"scheduler jobs are overdue by {late:.0f}s")
        return problems, details


def overdue_seconds(engine: Engine) -> float:
    """How far in the past the scheduler's earliest stored next run time is (0 when none
    is late): read from its job store, so any process can tell."""
    with engine.connect() as conn:
        first = conn.execute(
            text("SELECT min(next_run_time) FROM apscheduler_jobs WHERE next_run_time IS NOT NULL")
        ).scalar()
    return 0.0 if first is None else max(0.0, time.time() - float(first))
