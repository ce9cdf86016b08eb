"""What `/readyz` and `/metrics` report about the parts running in this process: the
worker loop (up, or restarting after a crash) and the scheduler (its jobs on time, or
overdue because its wake-ups stopped)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine


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
            from newsletter.service.scheduler import overdue_seconds

            late = overdue_seconds(engine)
            details["scheduler"] = {"overdue_seconds": round(late, 1)}
            if late > self.scheduler_grace:
                problems.append(f"scheduler jobs are overdue by {late:.0f}s")
        return problems, details
