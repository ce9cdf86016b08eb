"""The FastAPI application: public pages, `/api/v1` for admins, and the admin UI."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from newsletter.core.db import SchemaOutOfDate, check_schema, make_engine
from newsletter.core.keys import check_secret_key
from newsletter.core.metrics import render_metrics
from newsletter.core.settings import Settings
from newsletter.rendering.editions import make_environment
from newsletter.rendering.labels import page_labels
from newsletter.web.docs import add_docs
from newsletter.web.public.errors import PageError
from newsletter.web.public.pages import page_language

# No request body may be larger, whatever the route (uploads have their own, lower caps:
# 5 MB files, 6 MB API bodies). Forms are parsed before the login and CSRF checks run, so
# without this anyone could make a form route spool an unbounded upload to disk first.
MAX_BODY_BYTES = 8 * 2**20


def create_app(*, settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app; raises keys.SecretKeyError when the secret key is missing or weak."""
    check_secret_key(settings)
    app = FastAPI(
        title="AI Industry Brief",
        version="1.0",
        description="Admin API of the AI-industry newsletter and alert service. "
        "Authenticate with `Authorization: Bearer <token>` (tokens: `newsletter admin token create`).",
        docs_url=None,  # served by web/docs.py, with local assets
        redoc_url=None,
        openapi_url="/openapi.json",
        max_body_size=MAX_BODY_BYTES,
    )
    app.state.settings = settings
    # the service never creates its database: only `newsletter db upgrade` does
    app.state.engine = engine or make_engine(settings.database_url, create=False)
    app.state.health = None  # `serve` sets its worker's and scheduler's state here
    app.state.env = make_environment(settings.templates_dir)

    from newsletter.web import admin, api, hooks
    from newsletter.web.public import clicks, embed, issues, reader
    from newsletter.web.public import pages as public

    app.include_router(public.router)
    app.include_router(reader.router)
    app.include_router(issues.router)
    app.include_router(embed.router)
    app.include_router(clicks.router)
    app.include_router(hooks.router)
    app.include_router(api.router, prefix="/api/v1")
    app.include_router(admin.router, prefix="/admin")
    add_docs(app)

    # Starlette's own HTTPException too (FastAPI's derives from it): the router raises
    # that one for an unknown path or method, which readers should see as the site's page
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith(JSON_PATHS):
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        message, lang = str(exc.detail), page_language(request)
        routing = ROUTING_ERRORS.get(exc.status_code)
        if isinstance(exc, PageError):  # a public page's own, in the reader's words
            lang = exc.lang if exc.lang and not request.query_params.get("lang") else lang
            message = exc.message(lang)
        elif routing and message == HTTPStatus(exc.status_code).phrase:  # not one of ours
            message = page_labels(lang)[routing]
        response = error_page(request, exc.status_code, message, lang=lang)
        response.headers.update(exc.headers or {})  # e.g. WWW-Authenticate on a 401
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "invalid input", "errors": errors}, status_code=422)
        lang = page_language(request)
        if lang == "zh":  # the field's label and a sentence of the catalogue
            t = page_labels(lang)
            lines = [
                f"{t.get(e['field'], e['field'])}："
                f"{t.get('invalid.' + e['field'], t['invalid.other'])}"
                for e in errors
            ]
            return error_page(request, 422, "；".join(dict.fromkeys(lines)), lang=lang)
        return error_page(request, 422, "; ".join(f"{e['field']}: {e['message']}" for e in errors))

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError):
        """Locked, gone or read-only: the change was not stored, and the answer says so."""
        reason = f"the database is not available ({database_reason(exc)}); try again"
        if request.url.path.startswith(JSON_PATHS):
            return JSONResponse({"detail": reason}, status_code=503)
        return error_page(request, 503, reason)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        """Liveness: the event loop answers (on the loop itself, no thread hop, no database)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz():
        """Readiness: the database file is there and answers with the schema this code
        needs, and the parts `serve` runs in this process (worker loop, scheduler) work."""
        engine, health = app.state.engine, app.state.health
        try:
            check_schema(engine)
            problems, details = health.report(engine) if health else ([], {})
        except SchemaOutOfDate as exc:
            return JSONResponse({"status": "not ready", "reason": str(exc)}, status_code=503)
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return JSONResponse(
                {"status": "not ready", "reason": f"database: {database_reason(exc)}"},
                status_code=503,
            )
        if problems:
            return JSONResponse(
                {"status": "not ready", "reason": "; ".join(problems), **details}, status_code=503
            )
        return {"status": "ready", **details}

    from newsletter.web.deps import require_metrics_token

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_metrics_token)])
    def metrics():
        return Response(
            render_metrics(app.state.engine, app.state.health), media_type=CONTENT_TYPE_LATEST
        )

    return app


def database_reason(exc: Exception) -> str:
    """The driver's first line ("unable to open database file", "database is locked")."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).splitlines() or [type(orig).__name__])[0][:200]


#: paths answered in JSON (programs call them), not with the site's HTML error page
JSON_PATHS = ("/api/", "/webhooks/")

#: what the router itself answers (no such path, no such method), in the page's words
ROUTING_ERRORS = {404: "not_found", 405: "not_allowed"}


def error_page(
    request: Request, status: int, message: str, *, lang: str | None = None
) -> HTMLResponse:
    env = request.app.state.env
    lang = lang or page_language(request)
    html = env.get_template("web/error.html.j2").render(
        status=status, message=message, lang=lang, t=page_labels(lang)
    )
    return HTMLResponse(html, status_code=status)
