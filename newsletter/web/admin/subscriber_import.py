"""Admin page to import subscribers from an uploaded CSV (editors), with a report per row.

The same import as the API's POST /subscribers/import (`audience.imports`): new addresses
added active at once, as `newsletter subscribers import` adds them; rows for active
readers update the cells they fill; each row reported added, updated, unchanged or
refused with the reason. Registered before the reader pages (`/subscribers/{id}`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, UploadFile

from newsletter.audience.imports import MAX_BYTES, ImportFileError, import_csv
from newsletter.topics.catalogue import list_topics
from newsletter.web.admin.auth import AdminDep, AdminRoute, CsrfDep, note, render
from newsletter.web.api.common import limit_body
from newsletter.web.deps import SessionDep

# the form around the file: its other fields and the multipart boundaries
FORM_ALLOWANCE = 64 * 1024
#: how many rows that were not refused the page lists, and how many refused ones (a
#: file that is all wrong must not make a page of millions of rows)
LISTED = 1000
REFUSED_LISTED = 5000


def _too_large() -> HTTPException:
    return HTTPException(
        413,
        f"The file is larger than {MAX_BYTES // 2**20} MB. Split it into smaller files, "
        "or import it with `newsletter subscribers import` on the server.",
    )


class UploadRoute(AdminRoute):
    """Refuses a body larger than the cap before it is read (or as it is read)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        limit = MAX_BYTES + FORM_ALLOWANCE

        async def limited(request: Request) -> Response:
            return await handler(limit_body(request, limit, _too_large))

        return limited


router = APIRouter(route_class=UploadRoute)


def _page(request: Request, admin, session, *, status: int = 200, **context):
    return render(
        request,
        "subscribers_import.html.j2",
        admin=admin,
        section="subscribers",
        status=status,
        topics=list_topics(session=session),
        max_mb=MAX_BYTES // 2**20,
        **{
            "result": None,
            "error": "",
            "chosen": [],
            "listed": [],
            "hidden": 0,
            "hidden_refused": 0,
            **context,
        },  # fmt: skip
    )


@router.get("/subscribers/import")
def import_page(request: Request, admin: AdminDep, session: SessionDep):
    return _page(request, admin, session)


@router.post("/subscribers/import")
def import_upload(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    file: Annotated[UploadFile | None, Form()] = None,
    topics: Annotated[list[str] | None, Form()] = None,
):
    chosen = topics or []
    name = (file.filename or "") if file is not None else ""
    data = file.file.read(MAX_BYTES + 1) if file is not None and name else b""
    if not data:
        return _page(request, admin, session, status=422, chosen=chosen,
                     error="Choose a CSV file to import (it is empty or missing).")  # fmt: skip
    try:
        result = import_csv(session=session, data=data, default_topics=chosen or None)
    except ImportFileError as exc:
        session.rollback()
        return _page(request, admin, session, status=422, chosen=chosen, error=f"{exc}.")
    note(session, admin, "subscribers.import", name[:200], result.summary())
    session.commit()  # the report shows what is stored
    refused = [r for r in result.rows if r.action == "refused"]
    others = [r for r in result.rows if r.action != "refused"]
    listed = sorted(refused[:REFUSED_LISTED] + others[:LISTED], key=lambda r: r.line)
    return _page(request, admin, session, result=result, chosen=chosen, listed=listed,
                 hidden=max(0, len(others) - LISTED), filename=name,
                 hidden_refused=max(0, len(refused) - REFUSED_LISTED))  # fmt: skip
