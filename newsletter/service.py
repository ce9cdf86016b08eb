"""`newsletter serve`: the whole service in one process (scheduler, worker, web app).

`newsletter worker` and `newsletter scheduler` run the parts on their own for larger
deployments. SIGTERM/SIGINT stop claiming, finish what is in flight, and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from sqlalchemy import Engine

from . import scheduler as sched
from .settings import Settings
from .worker import Worker

log = logging.getLogger("newsletter.service")


async def run(
    engine: Engine,
    settings: Settings,
    *,
    worker: bool = True,
    scheduler: bool = True,
    web: bool = True,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    tasks: list[asyncio.Task] = []
    the_worker = Worker(engine=engine, settings=settings) if worker else None
    the_scheduler = sched.build_scheduler(engine, settings) if scheduler else None
    server = None
    if the_scheduler:
        sched.start(the_scheduler)
    if the_worker:
        tasks.append(asyncio.create_task(the_worker.run(until_empty=False), name="worker"))
        log.info("worker %s started", the_worker.name)
    if web:
        server = _web_server(engine, settings, host, port)
        if server is not None:
            tasks.append(asyncio.create_task(server.serve(), name="web"))
            log.info("web app on http://%s:%d", host, port)

    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not waiter and task.exception():
            log.error("%s stopped: %r", task.get_name(), task.exception())
    log.info("shutting down")
    if the_scheduler:
        the_scheduler.shutdown(wait=False)
    if the_worker:
        the_worker.stop()  # finishes and records the batch in flight
    if server is not None:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    waiter.cancel()
    log.info("stopped")


def _web_server(engine: Engine, settings: Settings, host: str, port: int):
    try:
        from .web.app import create_app
    except ImportError:  # the web app is optional in this build
        return None
    import uvicorn

    config = uvicorn.Config(
        create_app(settings=settings, engine=engine),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        # X-Forwarded-For/-Proto only from configured proxies (uvicorn trusts 127.0.0.1 by
        # default, which would let anyone on this host pick their own client address)
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies),
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # we handle signals ourselves
    return server
