"""Run a worker until the outbox is empty, in its own thread and event loop.

Playwright's sync API keeps an event loop in the test's thread, so asyncio.run() there
would fail; a thread of its own works in every test.
"""

import asyncio
import threading

from newsletter.delivery.worker import Worker


def drain(engine, settings, **kw):
    result = {}

    def run():
        result["stats"] = asyncio.run(
            Worker(engine=engine, settings=settings, **kw).run(until_empty=True, poll_seconds=0.05)
        )

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    return result.get("stats")
