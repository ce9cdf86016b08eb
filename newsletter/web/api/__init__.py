"""The admin REST API under /api/v1 (bearer-token auth).

Every operation needs `Authorization: Bearer <token>` (`newsletter admin token create`):
401 without one, 403 with an unknown or revoked one, or one whose role is too low (each
operation's `x-role` in the OpenAPI document: viewer, editor or owner). Each part lives in its own module
(`api_topics`, `api_events`, ...) built with `api_common.admin_router`, which adds the
token check and maps domain errors to status codes (see `api_common`); request and
response models are in `api_models`.
"""

from fastapi import APIRouter
from fastapi.routing import APIRoute

from newsletter.web.api import audit as api_audit
from newsletter.web.api import bounces as api_bounces
from newsletter.web.api import clicks as api_clicks
from newsletter.web.api import digests as api_digests
from newsletter.web.api import events as api_events
from newsletter.web.api import feeds as api_feeds
from newsletter.web.api import outbox as api_outbox
from newsletter.web.api import subscriber_import as api_subscriber_import
from newsletter.web.api import subscribers as api_subscribers
from newsletter.web.api import tokens as api_tokens
from newsletter.web.api import topics as api_topics
from newsletter.web.api import webhooks as api_webhooks
from newsletter.web.deps import role_needed


def operation_id(route: APIRoute) -> str:
    """Short, stable operation ids for generated clients: `topics-read_topics`."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


router = APIRouter(generate_unique_id_function=operation_id)

PARTS = (
    api_topics.router,
    api_events.router,
    api_subscriber_import.router,
    api_subscribers.router,
    api_webhooks.router,
    api_digests.takes,
    api_digests.digests,
    api_feeds.router,
    api_outbox.router,
    api_bounces.router,
    api_audit.router,
    api_clicks.router,
    api_tokens.router,
)
for part in PARTS:
    # every operation states the role it needs (checked by deps.require_admin)
    for route in part.routes:
        if isinstance(route, APIRoute):
            method = next(iter(route.methods or {"GET"}))
            route.openapi_extra = {
                **(route.openapi_extra or {}),
                "x-role": role_needed(route, method),
            }
    router.include_router(part)
