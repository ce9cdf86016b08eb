"""Admin pages for teams (chat webhook endpoints): the list with each one's health, add,
edit, send a test card, disable and enable (held messages released), see and cancel
held messages, remove. URLs and secrets are only ever shown masked; both are write-only
in the forms."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session

from newsletter.audience.endpoints import (
    EndpointIn,
    WebhookError,
    add_endpoint,
    describe_change,
    endpoint_state,
    endpoint_topic_slugs,
    endpoint_topics,
    get_endpoint,
    list_endpoints,
    mask,
    mask_url,
    update_endpoint,
)
from newsletter.core import platforms
from newsletter.core.models import WebhookEndpoint
from newsletter.core.periods import FREQUENCIES
from newsletter.delivery import history, outbox
from newsletter.delivery.channels.base import DeliveryError
from newsletter.delivery.chat_check import send_test
from newsletter.delivery.outbox import DeliveryFilter
from newsletter.pipeline import disable_endpoint, enable_endpoint, remove_endpoint
from newsletter.rendering.cards import PayloadError
from newsletter.topics.catalogue import list_topics
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, note, render
from newsletter.web.admin.subscribers import TIMEZONES
from newsletter.web.api.models import WEBHOOK_NAME_PATTERN
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep

router = APIRouter(route_class=AdminRoute)

NamePath = Annotated[str, Path(pattern=WEBHOOK_NAME_PATTERN)]
LANGUAGES = {"en": "English (en)", "zh": "中文 (zh)"}
HELD_SHOWN = 50  # held messages listed on a team's page (the outbox page pages through all)
FIELDS = ("name", "platform", "url", "secret", "topics", "mode", "language", "timezone")


def _messages(n: int) -> str:
    return f"{n} message{'' if n == 1 else 's'}"


# what the page says after an action (the ?done= of the redirect; n: how many)
DONE = {
    "added": lambda n: "Team added.",
    "saved": lambda n: "Saved.",
    "disabled": lambda n: (
        f"Disabled: nothing is sent to this team; {_messages(n)} held until it is enabled."
    ),
    "enabled": lambda n: f"Enabled: {_messages(n)} released and queued to send now.",
    "cancelled": lambda n: f"{_messages(n)} held for this team cancelled: they will never be sent.",
    "removed": lambda n: f"Team removed; {_messages(n)} waiting for it cancelled.",
}


def _done(done: str, n: str) -> str:
    say = DONE.get(done)
    return say(int(n) if n.isdigit() and len(n) < 10 else 0) if say else ""


def _endpoint_or_404(session: Session, name: str) -> WebhookEndpoint:
    try:
        return get_endpoint(session=session, name=name)
    except WebhookError as exc:
        raise HTTPException(404, str(exc)) from exc


def _row(ep: WebhookEndpoint, topics: list[str], health: history.EndpointHealth) -> dict:
    known = platforms.PLATFORMS.get(ep.platform)
    return {
        "ep": ep,
        "label": known.label if known else ep.platform,
        "url": mask_url(ep.url),
        "secret": f"${ep.secret_env}" if ep.secret_env else mask(ep.secret),
        "topics": topics,
        "health": health,
    }


def _choices(session: Session) -> dict[str, Any]:
    return {
        "platforms": [(p.name, p.label) for p in platforms.PLATFORMS.values()],
        "signed": [p.label for p in platforms.PLATFORMS.values() if p.signed],
        "topics": list_topics(session=session),
        "modes": FREQUENCIES,
        "languages": LANGUAGES,
        "timezones": TIMEZONES,
    }


def _errors(exc: Exception) -> dict[str, str]:
    """Each problem next to its field; one with no field goes on top ("form")."""
    if isinstance(exc, ValidationError):
        out: dict[str, str] = {}
        for e in exc.errors():
            key = str(e["loc"][0]) if e["loc"] else "form"
            out.setdefault(key if key in FIELDS else "form", e["msg"].removeprefix("Value error, "))
        return out
    field = getattr(exc, "field", None)
    return {field if field in FIELDS else "form": str(exc)}


def _list_page(
    request: Request,
    admin,
    session: Session,
    *,
    form: dict | None = None,
    errors: dict[str, str] | None = None,
    done: str = "",
    status: int = 200,
):
    eps = list_endpoints(session=session)
    health = history.endpoint_health(session, [ep.id for ep in eps])
    slugs = endpoint_topic_slugs(session)
    rows = [_row(ep, list(slugs.get(ep.id, ())), health.get(ep.id, history.NO_HEALTH))
            for ep in eps]  # fmt: skip
    return render(
        request,
        "webhooks.html.j2",
        admin=admin,
        section="webhooks",
        status=status,
        rows=rows,
        form=form
        or {
            "platform": "slack",
            "mode": "instant",
            "language": "en",
            "timezone": "UTC",
            "topics": [],
        },  # fmt: skip
        errors=errors or {},
        done=done,
        **_choices(session),
    )


@router.get("/webhooks")
def webhooks_page(
    request: Request, admin: AdminDep, session: SessionDep, done: str = "", n: str = ""
):
    return _list_page(request, admin, session, done=_done(done, n))


@router.post("/webhooks")
def webhook_add(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    name: Annotated[str, Form()] = "",
    platform: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    topics: Annotated[list[str] | None, Form()] = None,
    mode: Annotated[str, Form()] = "instant",
    language: Annotated[str, Form()] = "en",
    timezone: Annotated[str, Form()] = "UTC",
):
    form = {"name": name, "platform": platform, "url": url, "topics": topics or [],
            "mode": mode, "language": language, "timezone": timezone.strip()}  # fmt: skip
    try:
        ep_in = EndpointIn.model_validate({**form, "secret": secret.strip() or None})
        ep = add_endpoint(session=session, settings=settings, ep_in=ep_in)
    except (ValidationError, ValueError) as exc:
        session.rollback()  # nothing of it is stored
        return _list_page(request, admin, session, form=form, errors=_errors(exc), status=422)
    note(session, admin, "webhook.add", ep.name,
         describe_change(None, endpoint_state(session=session, endpoint=ep)))  # fmt: skip
    if platforms.get(ep.platform).new_secret and not ep_in.secret and ep.secret:
        # a generated signing secret: shown this once, for the receiver to verify with
        session.commit()
        return _detail(request, admin, session, ep, done="Team added.", generated=ep.secret)
    return RedirectResponse(f"/admin/webhooks/{ep.name}?done=added", status_code=303)


def _detail(
    request: Request,
    admin,
    session: Session,
    ep: WebhookEndpoint,
    *,
    form: dict | None = None,
    errors: dict[str, str] | None = None,
    done: str = "",
    error: str = "",
    test: dict | None = None,
    generated: str = "",
    status: int = 200,
):
    health = history.endpoint_health(session, [ep.id]).get(ep.id, history.NO_HEALTH)
    row = _row(ep, [t.slug for t in endpoint_topics(session=session, endpoint=ep)], health)
    held = history.find(
        session, DeliveryFilter(statuses=("held",), endpoint_id=ep.id), limit=HELD_SHOWN
    )
    current = {"platform": ep.platform, "topics": row["topics"], "mode": ep.mode,
               "language": ep.language, "timezone": ep.timezone}  # fmt: skip
    return render(
        request,
        "webhook.html.j2",
        admin=admin,
        section="webhooks",
        status=status,
        row=row,
        ep=ep,
        health=health,
        held=held.rows,
        held_more=held.next_before is not None,
        form=form or current,
        errors=errors or {},
        done=done,
        error=error,
        test=test,
        generated=generated,
        **_choices(session),
    )


@router.get("/webhooks/{name}")
def webhook_page(
    request: Request,
    name: NamePath,
    admin: AdminDep,
    session: SessionDep,
    done: str = "",
    n: str = "",
):
    ep = _endpoint_or_404(session, name)
    return _detail(request, admin, session, ep, done=_done(done, n))


def _back(ep_name: str, done: str, n: int = 0) -> RedirectResponse:
    return RedirectResponse(f"/admin/webhooks/{ep_name}?done={done}&n={n}", status_code=303)


@router.post("/webhooks/{name}")
def webhook_save(
    request: Request,
    name: NamePath,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    platform: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    topics: Annotated[list[str] | None, Form()] = None,
    mode: Annotated[str, Form()] = "",
    language: Annotated[str, Form()] = "",
    timezone: Annotated[str, Form()] = "",
):
    ep = _endpoint_or_404(session, name)
    form = {"platform": platform, "topics": topics or [], "mode": mode, "language": language,
            "timezone": timezone.strip()}  # fmt: skip
    # the URL and the secret are write-only: left blank, they stay as they are
    changes = {**form, "url": url.strip() or None, "secret": secret.strip() or None}
    before, old_secret = endpoint_state(session=session, endpoint=ep), ep.secret
    try:
        update_endpoint(session=session, settings=settings, endpoint=ep, changes=changes)
    except (ValidationError, ValueError) as exc:
        session.rollback()
        session.refresh(ep)
        return _detail(request, admin, session, ep, form=form, errors=_errors(exc), status=422)
    after = endpoint_state(session=session, endpoint=ep)
    if after != before or ep.secret != old_secret:
        detail = describe_change(before, after, secret_changed=ep.secret != old_secret)
        note(session, admin, "webhook.edit", ep.name, detail)
    return _back(ep.name, "saved")


@router.post("/webhooks/{name}/test")
def webhook_test(
    request: Request,
    name: NamePath,
    admin: CsrfDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
):
    """Sends a sample card now (as `webhooks test` and the API do) and shows the answer."""
    ep = _endpoint_or_404(session, name)
    try:
        answer = asyncio.run(send_test(session=session, settings=settings, env=env, name=name))
        test = {"ok": True, "answer": answer, "code": None}  # "HTTP 200: <body>"
    except (DeliveryError, PayloadError, ValueError) as exc:
        # "HTTP 400: <body>", a platform's code inside an HTTP 200, a refused card or URL
        test = {"ok": False, "answer": str(exc), "code": getattr(exc, "code", None)}
    return _detail(request, admin, session, ep, test=test)


@router.post("/webhooks/{name}/disable")
def webhook_disable(
    name: NamePath,
    admin: CsrfDep,
    session: SessionDep,
    reason: Annotated[str, Form()] = "",
):
    ep = _endpoint_or_404(session, name)
    why = " ".join(reason.split())[:500] or "disabled by an admin"
    disable_endpoint(session=session, endpoint=ep, reason=why)
    held = history.endpoint_health(session, [ep.id]).get(ep.id, history.NO_HEALTH).held
    note(session, admin, "webhook.disable", ep.name, why)
    return _back(ep.name, "disabled", held)


@router.post("/webhooks/{name}/enable")
def webhook_enable(name: NamePath, admin: CsrfDep, session: SessionDep):
    ep = _endpoint_or_404(session, name)
    released = enable_endpoint(session=session, endpoint=ep)
    note(session, admin, "webhook.enable", ep.name, f"{_messages(released)} released")
    return _back(ep.name, "enabled", released)


@router.post("/webhooks/{name}/held/cancel")
def webhook_cancel_held(name: NamePath, admin: CsrfDep, session: SessionDep):
    ep = _endpoint_or_404(session, name)
    n = outbox.cancel(session, match=DeliveryFilter(statuses=("held",), endpoint_id=ep.id))
    note(session, admin, "outbox.cancel", f"held messages for team {ep.name}",
         f"{_messages(n)} cancelled")  # fmt: skip
    return _back(ep.name, "cancelled", n)


@router.post("/webhooks/{name}/remove")
def webhook_remove(name: NamePath, admin: CsrfDep, session: SessionDep):
    ep = _endpoint_or_404(session, name)
    cancelled = remove_endpoint(session=session, endpoint=ep)
    note(session, admin, "webhook.remove", name, f"{_messages(cancelled)} waiting cancelled")
    return RedirectResponse(f"/admin/webhooks?done=removed&n={cancelled}", status_code=303)
