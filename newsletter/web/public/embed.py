"""The embeddable sign-up form: another site's page posts to `/subscribe/embed`.

No session CSRF token can travel with such a form, so it has its own protection: an
allow-list of origins whose pages may post (`NEWSLETTER_EMBED_ORIGINS`), a honeypot
field that people leave empty, rate limits per IP and per address, and always double
opt-in. The answer is the same for a new address, a known one, and a trapped bot, so
the form cannot be used to find out who subscribes.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError

from newsletter.audience.subscribers import SubscriberIn, address_hash
from newsletter.core.settings import Settings, web_origin
from newsletter.rendering.labels import LANGUAGES, page_labels
from newsletter.topics.catalogue import TopicError, list_topics, topics_by_slug
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep
from newsletter.web.public.errors import form_errors
from newsletter.web.public.pages import page_language, render, request_confirmation, signup_limiters

router = APIRouter(include_in_schema=False)

HONEYPOT = "website"  # hidden from people by the snippet's CSS; bots fill every field


def origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return web_origin(parts.scheme, parts.netloc) if parts.netloc else None


def request_origin(request: Request) -> str | None:
    """The origin of the page that posted: Origin, else Referer; None from non-browsers."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower().rstrip("/")
    return origin_of(request.headers.get("referer"))


def allowed(settings: Settings, origin: str | None) -> bool:
    """Browsers always say where a cross-site post comes from; a client that says nothing
    is no visitor's browser, and meets the rate limits and double opt-in like anyone."""
    if origin is None:
        return True
    return origin in {origin_of(settings.base_url), *settings.embed_origins}


def _cors(response: Response, origin: str | None) -> Response:
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


def _answer(
    request: Request, env, lang: str, status: int, *, errors: list[str] | None = None
) -> Response:
    """JSON for a script (`Accept: application/json`), a page of the site for a form."""
    t = page_labels(lang)
    wants_json = "application/json" in request.headers.get("accept", "")
    if errors is None:
        if wants_json:
            return JSONResponse({"status": "ok", "message": t["check_inbox_text"]}, status)
        return render(
            request,
            env,
            "web/public/message.html.j2",
            lang=lang,
            heading="check_inbox",
            text="check_inbox_text",
        )
    if wants_json:
        return JSONResponse({"status": "error", "errors": errors}, status)
    html = env.get_template("web/error.html.j2").render(
        status=status, message="; ".join(errors), lang=lang, t=t
    )
    return HTMLResponse(html, status_code=status)


@router.options("/subscribe/embed")
def embed_preflight(request: Request, settings: SettingsDep):
    origin = request_origin(request)
    if origin is None or not allowed(settings, origin):
        return Response(status_code=403)
    response = Response(status_code=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "Content-Type, Accept"
    response.headers["Access-Control-Max-Age"] = "600"
    return _cors(response, origin)


@router.post("/subscribe/embed")
def embed_subscribe(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    topics: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI form default
    frequency: Annotated[str, Form(max_length=16)] = "monthly",
    language: Annotated[str, Form(max_length=8)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    website: Annotated[str, Form(alias=HONEYPOT, max_length=500)] = "",
):
    """Sign up from a form on another site (documented in docs/embed.md)."""
    lang = language if language in LANGUAGES else page_language(request)
    t = page_labels(lang)
    origin = request_origin(request)
    if not allowed(settings, origin):
        return _answer(request, env, lang, 403, errors=[t["err.embed_origin"]])
    by_ip, by_address = signup_limiters(request)
    client = request.client.host if request.client else "unknown"
    if not by_ip.allow(client):
        return _cors(_answer(request, env, lang, 429, errors=[t["too_many"]]), origin)
    if website:  # the honeypot: answer as if all went well, do nothing
        return _cors(_answer(request, env, lang, 200), origin)
    try:
        sub_in = SubscriberIn(
            email=email,
            name=name,
            topics=topics or [tp.slug for tp in list_topics(session=session)],
            frequency=frequency,
            language=lang,
            timezone=timezone,
        )
        topics_by_slug(session=session, slugs=sub_in.topics)
    except ValidationError as exc:
        return _cors(_answer(request, env, lang, 422, errors=form_errors(exc, lang)), origin)
    except TopicError as exc:
        return _cors(_answer(request, env, lang, 422, errors=[str(exc)]), origin)
    if not by_address.allow(address_hash(sub_in.email)):
        return _cors(_answer(request, env, lang, 429, errors=[t["too_many"]]), origin)
    request_confirmation(session, sub_in)
    # the same answer whether or not the address was known: nothing is revealed
    return _cors(_answer(request, env, lang, 200), origin)
