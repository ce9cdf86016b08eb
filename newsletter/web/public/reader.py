"""The reader's own pages, opened from links in their emails: the preference centre,
unsubscribing (one topic, another frequency, or everything: RFC 8058 one-click), and
coming back after unsubscribing through double opt-in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import (
    SubscriberError,
    SubscriberIn,
    address_hash,
    may_opt_in,
    set_topics,
    subscriber_topics,
    unsubscribe,
)
from newsletter.core.models import Subscriber
from newsletter.rendering.labels import page_labels
from newsletter.topics.catalogue import TopicError, list_topics, topics_by_slug
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep
from newsletter.web.public.errors import PageError, form_errors
from newsletter.web.public.pages import (
    FREQUENCIES,
    TIMEZONES,
    page_language,
    render,
    request_confirmation,
    signup_limiters,
    subscriber_from,
    topic_error,
)
from newsletter.web.public.security import check_csrf

router = APIRouter(include_in_schema=False)


@router.get("/p/{token}", response_class=HTMLResponse)
def preferences(
    token: str, request: Request, session: SessionDep, settings: SettingsDep, env: EnvDep
):
    sub = subscriber_from(session, settings, "preferences", token)
    return _preferences_page(request, session, env, sub, token)


def _preferences_page(request, session, env, sub, token, *, saved=False, errors=(), status=200):
    unsub = make_token(request.app.state.settings.secret_key, "unsubscribe", sub.id, sub.email)
    return render(
        request,
        env,
        "web/public/preferences.html.j2",
        status=status,
        lang=page_language(request) if request.query_params.get("lang") else sub.language,
        sub=sub,
        token=token,
        unsubscribe_token=unsub,
        chosen=[t.slug for t in subscriber_topics(session=session, subscriber=sub)],
        topics=list_topics(session=session),
        timezones=sorted(set(TIMEZONES) | {sub.timezone}),
        frequencies=FREQUENCIES,
        saved=saved,
        errors=list(errors),
        may_return=sub.status == "unsubscribed" and may_opt_in(session=session, email=sub.email),
    )


@router.post("/p/{token}", response_class=HTMLResponse)
def save_preferences(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    topics: Annotated[list[str], Form()] = [],  # noqa: B006
    frequency: Annotated[str, Form(max_length=16)] = "monthly",
    language: Annotated[str, Form(max_length=8)] = "en",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    check_csrf(request, settings.secret_key, csrf_token_)
    sub = subscriber_from(session, settings, "preferences", token)
    if sub.status != "active":
        raise PageError(410, "err.not_active", lang=sub.language)
    page_lang = page_language(request) if request.query_params.get("lang") else sub.language
    try:
        sub_in = SubscriberIn(
            email=sub.email,
            name=sub.name,
            topics=topics,
            frequency=frequency,
            language=language,
            timezone=timezone,
        )
        if not sub_in.topics:
            raise SubscriberError(page_labels(sub.language)["choose_topic"])
        chosen = topics_by_slug(session=session, slugs=sub_in.topics)
    except ValidationError as exc:
        errors = form_errors(exc, page_lang)
        return _preferences_page(request, session, env, sub, token, errors=errors, status=422)
    except SubscriberError as exc:
        return _preferences_page(request, session, env, sub, token, errors=[str(exc)], status=422)
    except TopicError as exc:
        errors = [topic_error(session, exc, topics, page_lang)]
        return _preferences_page(request, session, env, sub, token, errors=errors, status=422)
    sub.frequency, sub.language, sub.timezone = sub_in.frequency, sub_in.language, sub_in.timezone
    session.add(sub)
    set_topics(session=session, subscriber=sub, topics=chosen)
    return _preferences_page(request, session, env, sub, token, saved=True)


@router.get("/u/{token}", response_class=HTMLResponse)
def unsubscribe_page(
    token: str, request: Request, session: SessionDep, settings: SettingsDep, env: EnvDep
):
    """A confirmation page only: scanners fetch links, so GET never unsubscribes."""
    sub = subscriber_from(session, settings, "unsubscribe", token)
    if sub.status == "unsubscribed":
        return _unsubscribed_page(request, env, sub)
    return _unsubscribe_page(request, session, env, sub, token)


def _unsubscribe_page(request, session, env, sub, token, *, status=200):
    secret = request.app.state.settings.secret_key
    return render(
        request,
        env,
        "web/public/unsubscribe.html.j2",
        status=status,
        lang=page_language(request) if request.query_params.get("lang") else sub.language,
        sub=sub,
        token=token,
        followed=subscriber_topics(session=session, subscriber=sub),
        frequencies=FREQUENCIES,
        preferences_token=make_token(secret, "preferences", sub.id, sub.email),
    )


@router.post("/u/{token}", response_class=HTMLResponse)
def unsubscribe_now(
    token: str, request: Request, session: SessionDep, settings: SettingsDep, env: EnvDep
):
    """RFC 8058 one-click (body List-Unsubscribe=One-Click, no cookie), or the page's button.

    The unguessable signed token is the credential, so no CSRF token is needed: the only
    thing a forged request could do is unsubscribe the token's own owner.
    """
    sub = subscriber_from(session, settings, "unsubscribe", token)
    if sub.status != "unsubscribed":
        unsubscribe(session=session, subscriber=sub)
    return _unsubscribed_page(request, env, sub)


def _unsubscribed_page(request: Request, env, sub: Subscriber) -> HTMLResponse:
    prefs = make_token(request.app.state.settings.secret_key, "preferences", sub.id, sub.email)
    return render(
        request,
        env,
        "web/public/message.html.j2",
        lang=sub.language,
        heading="unsubscribed",
        text="unsubscribed_text",
        link=(f"/p/{prefs}", "come_back"),
    )


@router.post("/u/{token}/topic", response_class=HTMLResponse)
def unsubscribe_topic(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    topic: Annotated[str, Form(max_length=64)] = "",
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    """Stop one topic and keep the others."""
    check_csrf(request, settings.secret_key, csrf_token_)
    sub = subscriber_from(session, settings, "unsubscribe", token)
    if sub.status != "active":
        raise PageError(410, "err.not_active", lang=sub.language)
    followed = subscriber_topics(session=session, subscriber=sub)
    kept = [t for t in followed if t.slug != topic]
    if len(kept) == len(followed) or not kept:  # not followed, or the last one: ask again
        return _unsubscribe_page(request, session, env, sub, token, status=422)
    set_topics(session=session, subscriber=sub, topics=kept)
    zh = sub.language == "zh"
    name = next(t.name_zh if zh else t.name_en for t in followed if t.slug == topic)
    t = page_labels(sub.language)
    return _changed_page(
        request,
        env,
        sub,
        t["topic_stopped"].format(
            topic=name,
            topics=("、" if zh else ", ").join(k.name_zh if zh else k.name_en for k in kept),
        ),
    )


@router.post("/u/{token}/frequency", response_class=HTMLResponse)
def unsubscribe_frequency(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    frequency: Annotated[str, Form(max_length=16)] = "",
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    """Fewer emails instead of none."""
    check_csrf(request, settings.secret_key, csrf_token_)
    sub = subscriber_from(session, settings, "unsubscribe", token)
    if sub.status != "active":
        raise PageError(410, "err.not_active", lang=sub.language)
    if frequency not in FREQUENCIES:
        return _unsubscribe_page(request, session, env, sub, token, status=422)
    sub.frequency = frequency
    session.add(sub)
    t = page_labels(sub.language)
    return _changed_page(
        request, env, sub, t["frequency_changed"].format(frequency=t[f"freq.{frequency}"])
    )


def _changed_page(request: Request, env, sub: Subscriber, detail: str) -> HTMLResponse:
    prefs = make_token(request.app.state.settings.secret_key, "preferences", sub.id, sub.email)
    return render(
        request,
        env,
        "web/public/message.html.j2",
        lang=sub.language,
        heading="saved_heading",
        text="saved",
        detail=detail,
        link=(f"/p/{prefs}", "all_preferences"),
    )


@router.post("/p/{token}/resubscribe", response_class=HTMLResponse)
def resubscribe(
    token: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    csrf_token_: Annotated[str, Form(alias="csrf_token", max_length=200)] = "",
):
    """Come back after unsubscribing: through double opt-in, a new confirmation email."""
    check_csrf(request, settings.secret_key, csrf_token_)
    sub = subscriber_from(session, settings, "preferences", token)
    if sub.status == "unsubscribed":
        by_address = signup_limiters(request)[1]
        if not by_address.allow(address_hash(sub.email)):
            raise PageError(429, "too_many", lang=sub.language)
        request_confirmation(
            session,
            SubscriberIn(
                email=sub.email,
                name=sub.name,
                language=sub.language,
                timezone=sub.timezone,
                frequency=sub.frequency,
                topics=[t.slug for t in subscriber_topics(session=session, subscriber=sub)],
            ),
        )
    return render(
        request,
        env,
        "web/public/message.html.j2",
        lang=sub.language,
        heading="check_inbox",
        text="resubscribe_text",
    )
