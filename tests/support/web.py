"""What tests of the web app share: the admin pages, and the CSRF token a form carries."""

from __future__ import annotations

import re

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# every page of the admin UI a signed-in editor can open
ADMIN_PAGES = ["/admin/", "/admin/topics", "/admin/topics/hardware", "/admin/events", "/admin/take",
               "/admin/preview", "/admin/send"]  # fmt: skip


def csrf_of(html: str) -> str:
    """The CSRF token of the first form in a page."""
    return CSRF_FIELD.search(html).group(1)
