"""/api/v1/webhooks: team chat endpoints. Secrets and URLs are only ever shown masked."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Body, HTTPException, Path, Response
from sqlmodel import Session, select

from newsletter.audience.endpoints import (
    EndpointIn,
    WebhookError,
    add_endpoint,
    describe_change,
    endpoint_state,
    endpoint_topics,
    get_endpoint,
    list_endpoints,
    mask,
    mask_url,
    update_endpoint,
)
from newsletter.core import platforms
from newsletter.core.models import WebhookEndpoint
from newsletter.delivery import history
from newsletter.delivery.channels.base import DeliveryError
from newsletter.delivery.chat_check import send_test
from newsletter.delivery.history import EndpointHealth
from newsletter.pipeline import disable_endpoint, enable_endpoint, remove_endpoint
from newsletter.rendering.cards import PayloadError
from newsletter.web.api.common import admin_router, errors, note, status_on
from newsletter.web.api.models import (
    WEBHOOK_NAME_PATTERN,
    WebhookChange,
    WebhookCreate,
    WebhookDisableIn,
    WebhookEnabledPublic,
    WebhookPublic,
    WebhooksPublic,
    WebhookTestPublic,
)
from newsletter.web.deps import AdminDep, EnvDep, SessionDep, SettingsDep

router = admin_router("/webhooks", "webhooks")

NamePath = Annotated[str, Path(pattern=WEBHOOK_NAME_PATTERN)]


def webhook_public(
    session: Session, ep: WebhookEndpoint, health: EndpointHealth | None = None
) -> WebhookPublic:
    if health is None:
        health = history.endpoint_health(session, [ep.id]).get(ep.id, history.NO_HEALTH)
    return WebhookPublic(
        **ep.model_dump(exclude={"url", "secret", "secret_env"}),
        url=mask_url(ep.url),
        secret=f"${ep.secret_env}" if ep.secret_env else mask(ep.secret),
        topics=[t.slug for t in endpoint_topics(session=session, endpoint=ep)],
        last_success_at=health.last_success_at,
        queued=health.queued,
        held=health.held,
    )


def endpoint_or_404(session: Session, name: str) -> WebhookEndpoint:
    with status_on(404, WebhookError):
        return get_endpoint(session=session, name=name)


@router.get("", response_model=WebhooksPublic, summary="List webhook endpoints")
def read_webhooks(session: SessionDep) -> WebhooksPublic:
    eps = list_endpoints(session=session)
    health = history.endpoint_health(session, [ep.id for ep in eps])
    data = [webhook_public(session, ep, health.get(ep.id, history.NO_HEALTH)) for ep in eps]
    return WebhooksPublic(data=data, count=len(data))


@router.post(
    "",
    response_model=WebhookPublic,
    status_code=201,
    summary="Add a webhook endpoint",
    description="The URL must be https and resolve to public addresses only (unless allowed "
    "by the service's settings). A generic endpoint without a secret gets a generated "
    "`whsec_` secret, returned once as `generated_secret` and masked ever after.",
    responses=errors(400, 409, 422),
)
def create_webhook(
    session: SessionDep, settings: SettingsDep, admin: AdminDep, body: WebhookCreate
) -> WebhookPublic:
    if session.exec(select(WebhookEndpoint).where(WebhookEndpoint.name == body.name)).first():
        raise HTTPException(409, f"a webhook named {body.name!r} exists already")
    ep = add_endpoint(
        session=session, settings=settings, ep_in=EndpointIn.model_validate(body.model_dump())
    )
    note(session, admin, "webhook.add", ep.name,
         describe_change(None, endpoint_state(session=session, endpoint=ep)))  # fmt: skip
    public = webhook_public(session, ep)
    if platforms.get(ep.platform).new_secret and not body.secret and ep.secret:
        public.generated_secret = ep.secret
    return public


@router.get(
    "/{name}",
    response_model=WebhookPublic,
    summary="Read a webhook endpoint",
    responses=errors(404, 422),
)
def read_webhook(session: SessionDep, name: NamePath) -> WebhookPublic:
    return webhook_public(session, endpoint_or_404(session, name))


@router.patch(
    "/{name}",
    response_model=WebhookPublic,
    summary="Change a webhook endpoint's platform, URL, secret, topics, mode, language or "
    "time zone",
    responses=errors(400, 404, 422),
)
def change_webhook(
    session: SessionDep,
    settings: SettingsDep,
    admin: AdminDep,
    name: NamePath,
    change: WebhookChange,
) -> WebhookPublic:
    ep = endpoint_or_404(session, name)
    before, old_secret = endpoint_state(session=session, endpoint=ep), ep.secret
    update_endpoint(
        session=session,
        settings=settings,
        endpoint=ep,
        changes=change.model_dump(exclude_none=True),
    )
    after = endpoint_state(session=session, endpoint=ep)
    if after != before or ep.secret != old_secret:
        detail = describe_change(before, after, secret_changed=ep.secret != old_secret)
        note(session, admin, "webhook.edit", ep.name, detail)
    return webhook_public(session, ep)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Remove a webhook endpoint (its queued messages are cancelled)",
    responses=errors(404, 422),
)
def delete_webhook(session: SessionDep, admin: AdminDep, name: NamePath) -> Response:
    cancelled = remove_endpoint(session=session, endpoint=endpoint_or_404(session, name))
    note(session, admin, "webhook.remove", name, f"{cancelled} waiting message(s) cancelled")
    return Response(status_code=204)


@router.post(
    "/{name}/enable",
    response_model=WebhookEnabledPublic,
    summary="Resume sending; held messages are queued again",
    responses=errors(404, 422),
)
def enable_webhook(session: SessionDep, admin: AdminDep, name: NamePath) -> WebhookEnabledPublic:
    ep = endpoint_or_404(session, name)
    requeued = enable_endpoint(session=session, endpoint=ep)
    note(session, admin, "webhook.enable", name, f"{requeued} held message(s) queued again")
    return WebhookEnabledPublic(webhook=webhook_public(session, ep), requeued=requeued)


@router.post(
    "/{name}/disable",
    response_model=WebhookPublic,
    summary="Stop sending; queued messages are held until it is enabled",
    responses=errors(404, 422),
)
def disable_webhook(
    session: SessionDep,
    admin: AdminDep,
    name: NamePath,
    body: Annotated[WebhookDisableIn | None, Body()] = None,
) -> WebhookPublic:
    ep = endpoint_or_404(session, name)
    reason = (body or WebhookDisableIn()).reason
    disable_endpoint(session=session, endpoint=ep, reason=reason)
    note(session, admin, "webhook.disable", name, reason)
    return webhook_public(session, ep)


@router.post(
    "/{name}/test",
    response_model=WebhookTestPublic,
    summary="Send a sample card now and return the platform's answer",
    description="409 when there is no event to show; 502 with the reason when the template "
    "or the platform refuses the message.",
    responses=errors(404, 409, 422, 502),
)
def test_webhook(
    session: SessionDep, settings: SettingsDep, env: EnvDep, name: NamePath
) -> WebhookTestPublic:
    # a plain def runs in the thread pool: its database queries never block the event loop
    endpoint_or_404(session, name)
    try:
        answer = asyncio.run(send_test(session=session, settings=settings, env=env, name=name))
    except (DeliveryError, PayloadError) as exc:
        raise HTTPException(502, f"the test message to {name} failed: {exc}") from exc
    except ValueError as exc:  # no event to show yet
        raise HTTPException(409, str(exc)) from exc
    return WebhookTestPublic(answer=answer)
