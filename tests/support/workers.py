"""Run a worker until the outbox is empty, in its own thread and event loop.

Playwright's sync API keeps an event loop in the test's thread, so asyncio.run() there
would fail; a thread of its own works in every test.
"""

import asyncio
import threading

from newsletter.delivery.worker import Worker


def drain(engine, settings, **kw):
    """Send everything queued; returns the worker's stats. An error in the worker is
    raised here, and a worker still running after two minutes fails the test."""
    result = {}

    def run():
        try:
            result["stats"] = asyncio.run(
                Worker(engine=engine, settings=settings, **kw).run(
                    until_empty=True, poll_seconds=0.05
                )
            )
        except BaseException as exc:  # handed to the test's thread below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    if thread.is_alive():
        raise TimeoutError("the worker did not empty the outbox within 120 s")
    if "error" in result:
        raise result["error"]
    return result.get("stats")
