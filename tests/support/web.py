"""What tests of the web app share: the admin pages, the CSRF token a form carries, and a
client that signs its API requests with an admin token."""

from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.web.app import create_app

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# every page of the admin UI a signed-in editor can open
ADMIN_PAGES = ["/admin/", "/admin/topics", "/admin/topics/hardware", "/admin/events", "/admin/feeds",
               "/admin/take", "/admin/subscribers", "/admin/subscribers/import", "/admin/webhooks",
               "/admin/outbox", "/admin/audit",
               "/admin/preview", "/admin/send"]  # fmt: skip


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    return CSRF_FIELD.search(html).group(1)


def api_client(settings, engine, name: str = "tests", role: str = "owner") -> TestClient:
    """A client of the app that carries a fresh admin token named `name` on every request."""
    with Session(engine) as s:
        _, token = create_token(session=s, name=name, role=role)
        s.commit()
    app = create_app(settings=settings, engine=engine)
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


@contextmanager
def serving(app, port: int):
    """The app served by uvicorn on 127.0.0.1:`port` (a real HTTP server, in a thread)."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    server.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=5)
