"""/webhooks/bounces/<provider>: where Amazon SES (through SNS), Postmark, SendGrid and
Mailgun post bounces and complaints. Left out of the OpenAPI document on purpose: the
providers define these requests, not us (the README says how to point each one here).

The body is read up to NEWSLETTER_BOUNCE_WEBHOOK_MAX_BYTES (413 past it); the checks
and the database work run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from newsletter.core.metrics import BOUNCE_WEBHOOKS
from newsletter.core.text import one_line
from newsletter.feedback.webhooks import PROVIDERS, Refused, receive, refuse_unknown

log = logging.getLogger("newsletter.feedback")

router = APIRouter(include_in_schema=False)


class TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise TooLarge
    return bytes(data)


def answer(provider: str, content: dict, status: int = 200, headers=None) -> JSONResponse:
    # an unknown provider is counted as "unknown": the label takes no caller's text
    BOUNCE_WEBHOOKS.labels(provider if provider in PROVIDERS else "unknown", str(status)).inc()
    return JSONResponse(content, status_code=status, headers=headers)


@router.post("/webhooks/bounces/{provider}")
async def bounce_webhook(provider: str, request: Request) -> JSONResponse:
    settings = request.app.state.settings
    try:
        refuse_unknown(settings, provider)
    except Refused as exc:
        log.warning(
            "bounce webhook %s refused (%s): %s", one_line(provider)[:40], exc.status, exc.reason
        )
        return answer(provider, {"detail": exc.reason}, exc.status)
    limit = settings.bounce_webhook_max_bytes
    try:
        body = await read_body(request, limit)
    except TooLarge:
        reason = f"the body is larger than {limit} bytes"
        log.warning("bounce webhook %s refused (413): %s", provider, reason)
        return answer(provider, {"detail": reason}, 413)
    try:
        result = await asyncio.to_thread(
            receive, request.app.state.engine, settings, provider, request.headers, body
        )
    except Refused as exc:
        return answer(provider, {"detail": exc.reason}, exc.status, exc.headers)
    return answer(provider, result)
