"""`newsletter serve`: the whole service in one process (scheduler, worker, web app, and
the inbound SMTP endpoint for bounces when NEWSLETTER_BOUNCE_SMTP_PORT is set).

`newsletter worker` and `newsletter scheduler` run the parts on their own for larger
deployments. SIGTERM/SIGINT stop claiming, finish what is in flight, and exit. A worker
loop that dies is restarted with a growing pause while the web app and the scheduler
go on; `/readyz` and `/metrics` show it. A part that stops by itself makes `serve` exit
non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Engine

from newsletter.core.health import Health, WorkerState
from newsletter.core.metrics import WORKER_RESTARTS, WORKER_UP
from newsletter.core.settings import Settings
from newsletter.delivery.worker import Worker
from newsletter.service import scheduler as sched

log = logging.getLogger("newsletter.service.runner")

RESTART_BASE_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0


class WorkerSupervisor:
    """Runs a worker loop, and a new one after 1, 2, 4 ... 60 s each time it dies."""

    def __init__(self, make_worker: Callable[[], Worker], state: WorkerState):
        self.make_worker, self.state = make_worker, state
        self.worker: Worker | None = None
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()
        if self.worker is not None:
            self.worker.stop()  # finishes and records the batch in flight

    async def run(self) -> None:
        failures = 0
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.worker = self.make_worker()
                    self._up(True)
                    log.info("worker %s started", self.worker.name)
                    await self.worker.run(until_empty=False)
                    if self.stopping.is_set():
                        return
                    error = "the worker loop ended by itself"
                except Exception as exc:  # noqa: BLE001 - restarted below
                    error = f"{type(exc).__name__}: {exc}"[:300]
                    log.exception("worker loop crashed")
                self._up(False, error)
                failures = 1 if time.monotonic() - started > RESTART_MAX_SECONDS else failures + 1
                delay = min(RESTART_BASE_SECONDS * 2 ** (failures - 1), RESTART_MAX_SECONDS)
                log.error("worker stopped (%s); restarting in %.1fs", error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
                if not self.stopping.is_set():
                    self.state.restarts += 1
                    WORKER_RESTARTS.inc()
        finally:
            self._up(False, self.state.last_error)

    def _up(self, up: bool, error: str | None = None) -> None:
        self.state.up = up
        self.state.last_error = error
        WORKER_UP.set(1 if up else 0)


async def run(
    engine: Engine,
    settings: Settings,
    *,
    worker: bool = True,
    scheduler: bool = True,
    web: bool = True,
    host: str = "127.0.0.1",
    port: int = 8000,
    stop: asyncio.Event | None = None,
) -> bool:
    """Run the parts until SIGTERM/SIGINT (or `stop`); False if a part stopped by itself."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    inbound = None
    if settings.bounce_smtp_port:
        inbound = await _bounce_endpoint(engine, settings)
        if inbound is None:
            return False
    health = Health()
    tasks: list[asyncio.Task] = []
    supervisor = None
    the_scheduler = sched.build_scheduler(engine, settings) if scheduler else None
    server = None
    if the_scheduler:
        await asyncio.to_thread(sched.start, the_scheduler)
        health.scheduler_grace = sched.overdue_grace(settings)
    if worker:
        health.worker = WorkerState()
        supervisor = WorkerSupervisor(
            lambda: Worker(engine=engine, settings=settings), health.worker
        )
        tasks.append(asyncio.create_task(supervisor.run(), name="worker"))
    if web:
        server = _web_server(engine, settings, host, port, health)
        if server is not None:
            tasks.append(asyncio.create_task(server.serve(), name="web"))
            log.info("web app on http://%s:%d", host, port)

    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    ok = True
    for task in done:
        if task is not waiter:
            ok = False
            error = None if task.cancelled() else task.exception()
            log.error("%s stopped by itself: %r", task.get_name(), error)
    log.info("shutting down")
    if the_scheduler:
        await asyncio.to_thread(the_scheduler.shutdown, wait=False)
    if supervisor:
        supervisor.stop()
    if server is not None:
        server.should_exit = True
    if inbound is not None:
        await asyncio.to_thread(inbound.stop)
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    log.info("stopped")
    return ok


async def _bounce_endpoint(engine: Engine, settings: Settings):
    """The inbound SMTP endpoint for bounces (its own thread and loop), or None (logged)
    when it cannot listen."""
    from newsletter.feedback import inbound

    host, port = settings.bounce_smtp_host, settings.bounce_smtp_port or 0
    try:
        controller = await asyncio.to_thread(inbound.start, engine, settings, host, port)
    except (OSError, RuntimeError) as exc:
        log.error("cannot receive bounces on %s:%d: %s", host, port, exc)
        return None
    log.info("receiving bounces by SMTP on %s:%d", host, port)
    return controller


def _web_server(engine: Engine, settings: Settings, host: str, port: int, health: Health):
    try:
        from newsletter.web.app import create_app
    except ImportError:  # the web app is optional in this build
        return None
    import uvicorn

    app = create_app(settings=settings, engine=engine)
    app.state.health = health
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        # X-Forwarded-For/-Proto only from configured proxies (uvicorn trusts 127.0.0.1 by
        # default, which would let anyone on this host pick their own client address)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # uvicorn leaves SIGTERM/SIGINT alone: the service stops every part itself

    return Server(config)
