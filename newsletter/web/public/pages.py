"""Public pages: subscribe with double opt-in and confirm; what every public page
shares (its language, rendering, signed links, sign-up limits). The preference centre
and unsubscribing are in `reader.py`, the archive's pages in `issues.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from sqlmodel import Session

from newsletter.audience.reader_links import TokenError, read_token_signed_at
from newsletter.audience.subscribers import (
    SubscriberIn,
    address_hash,
    confirm_subscriber,
    get_subscriber,
    may_opt_in,
    set_topics,
)
from newsletter.core.models import Subscriber, utcnow
from newsletter.delivery.outbox import enqueue, idempotency_key
from newsletter.rendering.labels import LANGUAGES, page_labels
from newsletter.topics.catalogue import TopicError, list_topics, topics_by_slug
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep
from newsletter.web.public.errors import PageError, form_errors
from newsletter.web.public.security import (
    RateLimiter,
    check_csrf,
    csrf_cookie,
    csrf_token,
    set_csrf_cookie,
)

router = APIRouter(include_in_schema=False)

TIMEZONES = [
    "UTC",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/London",
    "Europe/Berlin",
    "Europe/Paris",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Australia/Sydney",
]
FREQUENCIES = ["monthly", "weekly", "daily", "instant"]


def page_language(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in LANGUAGES:
        return lang
    return "zh" if request.headers.get("accept-language", "").lower().startswith("zh") else "en"


def render(
    request: Request, env, template: str, *, status: int = 200, lang: str | None = None, **context
) -> HTMLResponse:
    lang = lang or page_language(request)
    settings = request.app.state.settings
    cookie, new = csrf_cookie(request)
    html = env.get_template(template).render(
        lang=lang, t=page_labels(lang), csrf=csrf_token(settings.secret_key, cookie), **context
    )
    response = HTMLResponse(html, status_code=status)
    if new:
        set_csrf_cookie(response, cookie)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"  # tokens live in our URLs
    return response


def signup_limiters(request: Request) -> tuple[RateLimiter, RateLimiter]:
    state = request.app.state
    if not hasattr(state, "signup_limits"):
        s = state.settings
        state.signup_limits = (
            RateLimiter(s.signup_per_ip_per_hour, 3600),
            RateLimiter(s.signup_per_address_per_hour, 3600),
        )
    return state.signup_limits


def subscriber_from(session: Session, settings, purpose: str, token: str) -> Subscriber:
    """The subscriber a signed link names, or a 4xx that reveals nothing about anyone."""
    try:
        sub_id, hash_prefix, signed_at = read_token_signed_at(settings.secret_key, purpose, token)
    except TokenError as exc:
        if "expired" in str(exc):
            raise PageError(410, "err.link_expired") from exc
        raise PageError(400, "err.link_invalid") from exc
    sub = session.get(Subscriber, sub_id)
    if sub is None or address_hash(sub.email)[:16] != hash_prefix:
        raise PageError(404, "err.link_gone")
    if purpose == "confirm" and _predates(signed_at, sub.unsubscribed_at):
        # a confirmation link from before an unsubscribe confirms no later signup
        raise PageError(410, "err.link_older", lang=sub.language)
    return sub


def _predates(signed_at: dt.datetime | None, event: dt.datetime | None) -> bool:
    if signed_at is None or event is None:
        return False
    if event.tzinfo is None:
        event = event.replace(tzinfo=dt.UTC)
    # link times are whole seconds: a link signed in the same second counts as after
    return signed_at + dt.timedelta(seconds=1) < event


@router.get("/", response_class=HTMLResponse)
def subscribe_page(request: Request, session: SessionDep, env: EnvDep):
    return render(
        request,
        env,
        "web/public/subscribe.html.j2",
        topics=list_topics(session=session),
        timezones=TIMEZONES,
        frequencies=FREQUENCIES,
        form={},
        errors=[],
    )


@router.post("/subscribe", response_class=HTMLResponse)
def subscribe(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    topics: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
    frequency: Annotated[str, Form(max_length=16)] = "monthly",
    language: Annotated[str, Form(max_length=8)] = "en",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    check_csrf(request, settings.secret_key, csrf_token_)
    lang = page_language(request)
    form = {
        "email": email,
        "name": name,
        "topics": topics,
        "frequency": frequency,
        "language": language,
        "timezone": timezone,
    }
    errors: list[str] = []
    try:
        sub_in = SubscriberIn(
            email=email,
            name=name,
            topics=topics,
            frequency=frequency,
            language=language,
            timezone=timezone,
        )
        if not sub_in.topics:
            errors.append(page_labels(lang)["choose_topic"])
        else:
            topics_by_slug(session=session, slugs=sub_in.topics)
    except ValidationError as exc:
        errors += form_errors(exc, lang)
    except TopicError as exc:
        errors.append(topic_error(session, exc, topics, lang))
    if errors:
        return render(
            request,
            env,
            "web/public/subscribe.html.j2",
            status=422,
            topics=list_topics(session=session),
            timezones=TIMEZONES,
            frequencies=FREQUENCIES,
            form=form,
            errors=errors,
        )
    by_ip, by_address = signup_limiters(request)
    client = request.client.host if request.client else "unknown"
    if not by_ip.allow(client) or not by_address.allow(address_hash(sub_in.email)):
        return render(
            request,
            env,
            "web/public/subscribe.html.j2",
            status=429,
            topics=list_topics(session=session),
            timezones=TIMEZONES,
            frequencies=FREQUENCIES,
            form=form,
            errors=[page_labels(lang)["too_many"]],
        )
    request_confirmation(session, sub_in)
    # the same answer whether or not the address was known: nothing is revealed
    return render(
        request, env, "web/public/message.html.j2", heading="check_inbox", text="check_inbox_text"
    )


def topic_error(session: Session, exc: TopicError, chosen: list[str], lang: str) -> str:
    """A form's unknown topics, named in the page's language."""
    if lang != "zh":
        return str(exc)
    known = {t.slug for t in list_topics(session=session)}
    missing = [s for s in dict.fromkeys(chosen) if s.strip() and s.strip() not in known]
    return page_labels(lang)["err.unknown_topics"].format(topics="、".join(missing))


def request_confirmation(session: Session, sub_in: SubscriberIn) -> None:
    """Pending subscriber plus a confirmation email through the outbox; silent for known addresses.

    A reader who unsubscribed themselves becomes pending again and gets a confirmation
    email; their suppression is lifted only when they confirm.
    """
    if not may_opt_in(session=session, email=sub_in.email):
        return  # bounced, complained or removed by an admin: never mailed again
    sub = get_subscriber(session=session, email=sub_in.email)
    if sub is not None and sub.status == "active":
        return  # already active: do not reveal it, do not change it
    if sub is None:
        sub = Subscriber(**sub_in.model_dump(exclude={"topics"}), status="pending", source="web")
        session.add(sub)
        session.flush()
    else:
        for key in ("name", "language", "timezone", "frequency"):
            setattr(sub, key, getattr(sub_in, key))
        sub.status = "pending"
        session.add(sub)
    set_topics(
        session=session, subscriber=sub, topics=topics_by_slug(session=session, slugs=sub_in.topics)
    )
    hour = utcnow().strftime("%Y%m%d%H")  # at most one confirmation mail an hour per address
    # ...per signup: one who unsubscribed and comes back within the hour gets a new one
    again = [f"after:{sub.unsubscribed_at:%Y%m%d%H%M%S}"] if sub.unsubscribed_at else []
    enqueue(
        session,
        [
            {
                "idempotency_key": idempotency_key(
                    "confirm", hour, subscriber_id=sub.id, extra=again
                ),
                "channel": "email",
                "kind": "confirm",
                "period": hour,
                "subscriber_id": sub.id,
            }
        ],
    )


def _confirmed_page(request: Request, env, sub: Subscriber) -> HTMLResponse:
    return render(
        request,
        env,
        "web/public/message.html.j2",
        lang=sub.language,
        heading="confirmed",
        text="confirmed_text",
    )


def _pending_or_410(session: Session, sub: Subscriber) -> None:
    if sub.status != "pending" or not may_opt_in(session=session, email=sub.email):
        raise PageError(410, "err.cancelled", lang=sub.language)


@router.get("/confirm/{token}", response_class=HTMLResponse)
def confirm_page(
    token: str, request: Request, session: SessionDep, settings: SettingsDep, env: EnvDep
):
    """A page with a button only: link scanners fetch links, so GET never confirms."""
    sub = subscriber_from(session, settings, "confirm", token)
    if sub.status == "active":
        return _confirmed_page(request, env, sub)
    _pending_or_410(session, sub)
    return render(
        request, env, "web/public/confirm.html.j2", lang=sub.language, sub=sub, token=token
    )


@router.post("/confirm/{token}", response_class=HTMLResponse)
def confirm(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    check_csrf(request, settings.secret_key, csrf_token_)
    sub = subscriber_from(session, settings, "confirm", token)
    if sub.status != "active":
        _pending_or_410(session, sub)
        confirm_subscriber(session=session, subscriber=sub)
        enqueue_welcome(session, sub)
    return _confirmed_page(request, env, sub)


def enqueue_welcome(session: Session, sub: Subscriber) -> None:
    """The welcome email, once per confirmation (a double click sends one)."""
    confirmed = f"{sub.confirmed_at or utcnow():%Y%m%d%H%M%S}"
    enqueue(
        session,
        [
            {
                "idempotency_key": idempotency_key("welcome", confirmed, subscriber_id=sub.id),
                "channel": "email",
                "kind": "welcome",
                "period": confirmed,
                "subscriber_id": sub.id,
            }
        ],
    )
