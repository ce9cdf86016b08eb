"""/api/v1/subscribers/import: a subscribers CSV, with what became of each row."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from newsletter.audience.imports import MAX_BYTES, ImportFileError, import_csv
from newsletter.web.api.common import admin_router, errors, note
from newsletter.web.deps import AdminDep, SessionDep

router = admin_router("/subscribers", "subscribers")


class ImportRowPublic(BaseModel):
    line: int = Field(description="The row's line in the file (the header is line 1).")
    email: str
    action: Literal["added", "updated", "unchanged", "refused"]
    reason: str = ""


class ImportReportPublic(BaseModel):
    added: int
    updated: int
    unchanged: int
    refused: int
    encoding: str = Field(description="How the file was read: UTF-8, UTF-16 or Windows-1252.")
    rows: list[ImportRowPublic]


CSV_BODY = {
    "requestBody": {
        "required": True,
        "description": "The CSV as the body (text/csv), or as the field `file` of a form.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


async def _upload(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except (ValueError, KeyError, AssertionError) as exc:
            raise HTTPException(400, f"the form could not be read: {exc}") from exc
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(400, "the form needs the CSV as a file in the field `file`")
        return await file.read(MAX_BYTES + 1)
    if kind in ("text/csv", "text/plain", "application/csv", "application/octet-stream", ""):
        return await request.body()
    raise HTTPException(
        415, "send the CSV as text/csv, or as the field `file` of a multipart/form-data form"
    )


@router.post(
    "/import",
    response_model=ImportReportPublic,
    summary="Import subscribers from CSV, with a report per row",
    description="Columns email, name, language, timezone, frequency, topics (as "
    "`newsletter subscribers import` and the export). New addresses are added active at "
    "once (the admin vouches for consent; no confirmation email), as that command and "
    "`POST /subscribers` add them. A row for an active reader updates the cells it fills. "
    "Each row is `added`, `updated`, `unchanged` or `refused` (with the reason); a bad "
    "row never stops the others. UTF-8 (with or without BOM), UTF-16 with a BOM, or "
    "Windows-1252; at most 5 MB. A file that cannot be read at all (no email column, not "
    "text, too large) is a 400 and imports nothing.",
    openapi_extra=CSV_BODY,
    responses=errors(400, 413, 415),
)
async def import_subscribers_csv(
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    topics: Annotated[
        str | None,
        Query(max_length=500, description="Topics (comma-separated) for rows naming none."),
    ] = None,
) -> ImportReportPublic:
    data = await _upload(request)
    defaults = [t for t in (topics or "").split(",") if t.strip()] or None

    def run() -> ImportReportPublic:
        try:
            result = import_csv(session=session, data=data, default_topics=defaults)
        except ImportFileError as exc:
            raise HTTPException(400, str(exc)) from exc
        note(session, admin, "subscribers.import", "csv", result.summary())
        return ImportReportPublic(
            **result.counts,
            encoding=result.encoding,
            rows=[
                ImportRowPublic.model_validate(
                    {"line": r.line, "email": r.email, "action": r.action, "reason": r.reason}
                )
                for r in result.rows
            ],
        )

    return await run_in_threadpool(run)
