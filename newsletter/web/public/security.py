"""CSRF tokens for forms (signed double submit) and in-memory rate limits."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from fastapi import Request, Response

from newsletter.core.keys import CSRF, derive_key
from newsletter.web.public.errors import PageError

CSRF_COOKIE = "nl_csrf"


def csrf_cookie(request: Request) -> tuple[str, bool]:
    """The browser's CSRF secret, and whether it is new (to be set as a cookie)."""
    value = request.cookies.get(CSRF_COOKIE)
    if not value or len(value) > 100:
        return secrets.token_urlsafe(24), True
    return value, False


def set_csrf_cookie(response: Response, value: str) -> None:
    response.set_cookie(CSRF_COOKIE, value, httponly=True, samesite="strict", max_age=86400)


def csrf_token(secret_key: str, cookie_value: str) -> str:
    """HMAC of the browser's cookie under the CSRF key derived from the master `secret_key`."""
    return hmac.new(
        derive_key(secret_key, CSRF), f"public|{cookie_value}".encode(), hashlib.sha256
    ).hexdigest()


def check_csrf(request: Request, secret_key: str, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if (
        not cookie
        or not submitted
        or not hmac.compare_digest(csrf_token(secret_key, cookie), submitted)
    ):
        raise PageError(403, "err.csrf")


class RateLimiter:
    """At most `limit` events per key in a sliding `window` of seconds (per process)."""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self.hits: dict[str, deque[float]] = {}
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            q = self.hits.setdefault(key, deque())
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self.hits) > 100_000:  # forget the oldest keys rather than grow forever
                for k in list(self.hits)[:50_000]:
                    del self.hits[k]
            return True
