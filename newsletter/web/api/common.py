"""Shared plumbing of the admin API: how errors become JSON, and small helpers.

Status codes, everywhere under /api/v1:

- 401 / 403: no bearer token / an unknown or revoked one (`deps.require_admin`);
- 404: the thing named in the path does not exist;
- 409: the request conflicts with what is stored (exists already, still followed, ...);
- 413: the request body is too large;
- 422: the input does not fit the schema (`{"detail", "errors": [{field, message}]}`);
- 400: any other domain rule refused the request (every `ValueError` of the domain
  modules: TopicError, SubscriberError, WebhookError, FeedError, DigestError, ...);
- 502: a webhook test the chat platform refused.

Nothing an API client sends should produce a 500: `ApiRoute` maps what the endpoints
do not handle themselves, including database errors (too long for a column: 400,
a unique constraint: 409, the database unreachable: 503).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlmodel import Session
from starlette.types import Message

from newsletter.core import audit
from newsletter.core.models import AdminToken
from newsletter.web.deps import require_admin

# Upper bound for any request body under /api/v1, checked before the body is read.
MAX_REQUEST_BYTES = 6 * 1024 * 1024


class ErrorPublic(BaseModel):
    detail: str


class FieldErrorPublic(BaseModel):
    field: str
    message: str


class ValidationErrorPublic(BaseModel):
    detail: str
    errors: list[FieldErrorPublic]


_DESCRIPTIONS = {
    400: "Refused by a domain rule",
    401: "No admin bearer token",
    403: "Unknown or revoked token",
    404: "Not found",
    409: "Conflicts with what is stored",
    413: "Request body too large",
    415: "A content type the operation does not take",
    422: "Invalid input; each error names its field",
    502: "The chat platform refused the test message",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes an operation can answer with."""
    return {
        code: {
            "model": ValidationErrorPublic if code == 422 else ErrorPublic,
            "description": _DESCRIPTIONS[code],
        }
        for code in codes
    }


def note(
    session: Session, admin_token: AdminToken, action: str, target: str, detail: str = ""
) -> None:
    """Record a change in the audit log under the token that made it (same transaction).

    Pass secrets and URLs already masked: what is given here is stored as is.
    """
    audit.record(session=session, who=admin_token.name, action=action, target=target, detail=detail)


def invalid(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    """A 422 for one field, shaped like FastAPI's own (loc starts with body/query/path)."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


def _as_request_error(exc: ValidationError, where: str = "body") -> RequestValidationError:
    return RequestValidationError(
        [
            {**e, "loc": (where, *e["loc"]), "msg": e["msg"].removeprefix("Value error, ")}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    )


@contextmanager
def status_on(status: int, *kinds: type[Exception]) -> Iterator[None]:
    """Turn the given domain errors into an HTTP error with the same message."""
    try:
        yield
    except kinds as exc:
        raise HTTPException(status, str(exc)) from exc


def _too_large() -> HTTPException:
    return HTTPException(413, f"the request body is larger than {MAX_REQUEST_BYTES // 2**20} MB")


def limit_body(request: Request, limit: int, too_large: Callable[[], HTTPException]) -> Request:
    """The request, refused with `too_large()` as soon as its body exceeds `limit` bytes.

    Checked before anything is read when there is a Content-Length, and while reading
    otherwise (chunked uploads), so no body is parsed or spooled beyond the limit.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large()
    receive, seen = request.receive, 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large()
        return message

    return Request(request.scope, receive_limited)


class ApiRoute(APIRoute):
    """Maps errors the endpoints leave to the codes in this module's docstring."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(limit_body(request, MAX_REQUEST_BYTES, _too_large))
            except ValidationError as exc:  # a domain model built inside an endpoint
                raise _as_request_error(exc) from exc
            except IntegrityError as exc:
                raise HTTPException(409, "this conflicts with data stored meanwhile") from exc
            except DataError as exc:
                reason = str(exc.orig).splitlines()[0] if exc.orig else "invalid value"
                raise HTTPException(400, f"the database refused a value: {reason}") from exc
            except OperationalError as exc:
                raise HTTPException(503, "the database is not available; try again") from exc
            except (ValueError, OverflowError, RecursionError) as exc:
                # every domain error is a ValueError subclass carrying a reason
                raise HTTPException(400, str(exc) or type(exc).__name__) from exc

        return guarded


def admin_router(prefix: str, tag: str) -> APIRouter:
    """A router whose every operation needs an admin token and maps errors as above."""
    return APIRouter(
        prefix=prefix,
        tags=[tag],
        route_class=ApiRoute,
        dependencies=[Depends(require_admin)],
        responses=errors(401, 403),
    )
