"""The admin REST API under /api/v1 (bearer-token auth).

Every operation needs `Authorization: Bearer <token>` (`newsletter admin token create`):
401 without one, 403 with an unknown or revoked one. The endpoints call the domain
modules; how their errors become status codes is described in `api_common`.
"""

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute

from . import (
    api_digests,
    api_events,
    api_feeds,
    api_outbox,
    api_subscribers,
    api_topics,
    api_webhooks,
)
from .api_common import errors
from .deps import require_admin


def operation_id(route: APIRoute) -> str:
    """Short, stable operation ids for generated clients: `topics-read_topics`."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


router = APIRouter(
    dependencies=[Depends(require_admin)],
    responses=errors(401, 403),
    generate_unique_id_function=operation_id,
)

router.include_router(api_topics.router)
router.include_router(api_events.router)
router.include_router(api_subscribers.router)
router.include_router(api_webhooks.router)
router.include_router(api_digests.takes)
router.include_router(api_digests.digests)
router.include_router(api_feeds.router)
router.include_router(api_outbox.router)
