"""A subscribers CSV uploaded through the admin UI or the API, with a report per row.

The columns are those of `newsletter subscribers import` and of the export (email, name,
language, timezone, frequency, topics; others, such as the export's status, are
ignored). New addresses are added as that command adds them: active at once, the admin
vouching for consent (no confirmation email), with the same checks and the same bulk
writes. A row for an address that is already an active reader updates that reader: the
cells it fills replace what is stored, empty cells keep it. Each row ends `added`,
`updated`, `unchanged` or `refused` with the reason; one bad row never stops the others.

The upload is read whole (at most MAX_BYTES): UTF-8 with or without a byte-order mark,
UTF-16 with one, or else Windows-1252 (what spreadsheets on Windows save). Cells the
export quoted against formulas (`'=...`) are read back as they were.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session, col

from newsletter.audience.directory import topics_of
from newsletter.audience.subscribers import (
    IMPORT_CHUNK,
    RowOutcome,
    SubscriberError,
    SubscriberImportReport,
    SubscriberIn,
    _chunks,
    _ImportBatch,
    csv_rows,
    normalise_email,
    update_subscriber,
    validate_rows,
    why_not_addable,
)
from newsletter.core.errors import reason
from newsletter.core.models import Subscriber
from newsletter.topics.catalogue import TopicError

MAX_BYTES = 5 * 2**20
# rows one upload may hold: the report has one entry per row, and 5 MB of two-byte
# lines would be 2.6 million of them (gigabytes in the web process)
MAX_ROWS = 200_000
ACTIONS = ("added", "updated", "unchanged", "refused")
FIELDS = ("name", "language", "timezone", "frequency", "topics")


class ImportFileError(ValueError):
    """An upload that cannot be read as a subscribers CSV at all (nothing is imported)."""


@dataclass
class ImportResult:
    rows: list[RowOutcome] = field(default_factory=list)
    encoding: str = "UTF-8"

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @property
    def counts(self) -> dict[str, int]:
        return {action: self.count(action) for action in ACTIONS}

    def summary(self) -> str:
        return ", ".join(f"{n} {action}" for action, n in self.counts.items())


def decode(data: bytes) -> tuple[str, str]:
    """The text of an upload and the encoding it was read in."""
    if len(data) > MAX_BYTES:
        raise ImportFileError(
            f"the file is larger than {MAX_BYTES // 2**20} MB; split it, or use "
            "`newsletter subscribers import` on the server"
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), "UTF-16"
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"the file is not valid UTF-16 text: {exc}") from exc
    try:
        return data.decode("utf-8-sig"), "UTF-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            "the file is neither UTF-8 nor Windows-1252 text; save it as “CSV UTF-8”"
        ) from exc


def _check_rows(text: str) -> None:
    """Refuse a file of more than MAX_ROWS rows (lines inside quoted cells aside)."""
    rows = csv.reader(io.StringIO(text, newline=""))
    try:
        n = sum(1 for _ in itertools.islice((r for r in rows if r), MAX_ROWS + 2))
    except csv.Error as exc:
        raise ImportFileError(f"the file is not valid CSV: {exc}") from exc
    if n > MAX_ROWS + 1:
        raise ImportFileError(
            f"the file has more than {MAX_ROWS:,} rows; split it, or use "
            "`newsletter subscribers import` on the server"
        )


def _key(raw: str) -> str | None:
    try:
        return normalise_email(raw) if raw else None
    except SubscriberError:
        return None


def import_csv(
    *, session: Session, data: bytes, default_topics: list[str] | None = None
) -> ImportResult:
    """Import an uploaded CSV; nothing is committed here (the caller commits once).

    Raises ImportFileError for a file that cannot be read at all (too large, not text,
    no email column): then nothing is imported."""
    text, encoding = decode(data)
    if text.count("\n") > MAX_ROWS + 1:  # lines: never fewer than the header and rows
        _check_rows(text)
    result = ImportResult(encoding=encoding)
    report = SubscriberImportReport(rows=result.rows)
    batch = _ImportBatch(session, report)
    seen: dict[str, str] = {}
    emails: dict[str, str] = {}  # where -> the address as given, for refused rows
    try:
        rows = csv_rows(text)
        for chunk in _chunks(rows, IMPORT_CHUNK):
            keys = {where: _key(row.get("email", "")) for where, row in chunk}
            wanted = [k for k in keys.values() if k]
            existing = {
                s.email: s
                for s in session.execute(
                    select(Subscriber).where(col(Subscriber.email).in_(wanted))
                ).scalars()
            }
            slugs = topics_of(session, [s.id for s in existing.values()])
            new = []
            for where, row in chunk:
                key = keys[where]
                emails[where] = row.get("email", "")
                if key and key in seen:
                    result.rows.append(
                        RowOutcome(where, key, "refused", f"the address is also on {seen[key]}")
                    )
                    continue
                if key:
                    seen[key] = where
                if key and key in existing:
                    sub = existing[key]
                    result.rows.append(_update(session, where, sub, slugs.get(sub.id, []), row))
                else:
                    new.append((where, row))
            batch.flush(validate_rows(new, default_topics), None)
    except SubscriberError as exc:  # the header: the file as a whole
        raise ImportFileError(str(exc)) from exc
    except csv.Error as exc:
        raise ImportFileError(f"the file is not valid CSV: {exc}") from exc
    for row in result.rows:
        if not row.email:
            row.email = emails.get(row.where, "")
    result.rows.sort(key=lambda r: r.line)
    return result


def _update(
    session: Session, where: str, sub: Subscriber, topics: list[str], row: dict[str, str]
) -> RowOutcome:
    """A row for a stored reader: the cells it fills replace theirs (active readers only).
    `topics` are the reader's topic slugs as stored."""
    if sub.status != "active":
        why = why_not_addable(session=session, email=sub.email) or f"{sub.email} is {sub.status}"
        return RowOutcome(where, sub.email, "refused", why + "; not changed")
    current = {
        "email": sub.email,
        "name": sub.name,
        "language": sub.language,
        "timezone": sub.timezone,
        "frequency": sub.frequency,
        "topics": topics,
    }
    given = {k: v for k, v in row.items() if k in FIELDS and v}
    try:
        wanted = SubscriberIn.model_validate({**current, **given})
        same = {**wanted.model_dump(), "topics": set(wanted.topics)}
        if same == {**current, "topics": set(topics)}:  # usual when a file comes back
            return RowOutcome(where, sub.email, "unchanged")
        with session.begin_nested():
            changed = update_subscriber(session=session, subscriber=sub, sub_in=wanted)
    except (ValidationError, SubscriberError, TopicError) as exc:
        return RowOutcome(where, sub.email, "refused", reason(exc))
    return RowOutcome(where, sub.email, "updated" if changed else "unchanged")
