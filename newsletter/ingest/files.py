"""Event import from files: JSON (array), JSON Lines, YAML and CSV.

Each record is validated and stored on its own (a savepoint each), so one bad record
never stops the good ones, and a re-import finds every record a duplicate.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable
from sqlmodel import Session

from newsletter.core.db import bulk_insert, reserve_ids, values_in
from newsletter.core.errors import reason
from newsletter.core.models import Event, EventTopic, utcnow
from newsletter.core.text import title_key
from newsletter.ingest.events import EventIn, add_event, primary_title, search_text
from newsletter.topics.catalogue import TopicError, compiled_rules, list_topics
from newsletter.topics.matching import match_topics

FORMATS = ("json", "jsonl", "yaml", "csv")
SUFFIXES = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
}
MAX_BYTES = 50 * 1024 * 1024


class ImportFileError(ValueError):
    """The file as a whole cannot be read (unknown format, not UTF-8, not parseable)."""


@dataclass
class Problem:
    where: str  # "line 3" or "record 2"
    reason: str


@dataclass
class ImportReport:
    new: int = 0
    duplicate: int = 0
    invalid: list[Problem] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid


# A record source yields (where, record-or-error) pairs.
Records = Iterator[tuple[str, Any]]


def detect_format(path: Path, explicit: str | None = None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise ImportFileError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return explicit
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ImportFileError(
            f"cannot tell the format of {path.name!r} from its extension; "
            f"use .json, .jsonl, .yaml or .csv, or pass --format"
        )
    return fmt


def decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise ImportFileError(f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"file is not UTF-8 text (byte {exc.start}): {exc.reason}") from exc


def _records_from_list(items: Any, what: str) -> Records:
    if isinstance(items, dict) and isinstance(items.get("events"), list):
        items = items["events"]
    if not isinstance(items, list):
        raise ImportFileError(f"{what} must hold a list of events (or {{events: [...]}})")
    for n, item in enumerate(items, start=1):
        yield f"record {n}", item


# The JSON and YAML parsers recurse once per level of nesting; no event needs more
# than a few, and thousands exhaust the stack (RecursionError).
TOO_DEEP = "nested too deeply (no event needs more than a few levels)"
# libyaml's safe loader, where PyYAML has it: it refuses nesting over 1000 levels with
# a YAMLError at once, where the pure-Python one takes seconds to reach RecursionError.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_json(text: str) -> Records:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFileError(f"invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise ImportFileError(f"invalid JSON: {TOO_DEEP}") from exc
    yield from _records_from_list(items, "a JSON file")


def read_jsonl(text: str | Iterable[str]) -> Records:
    """JSON Lines, given as text or as its lines (split as str.splitlines splits)."""
    lines = text.splitlines() if isinstance(text, str) else text
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            record = Problem(f"line {n}", f"invalid JSON: {exc.msg}")
        except RecursionError:
            record = Problem(f"line {n}", f"invalid JSON: {TOO_DEEP}")
        yield f"line {n}", record


def read_yaml(text: str) -> Records:
    try:
        items = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ImportFileError(f"invalid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError as exc:
        raise ImportFileError(f"invalid YAML: {TOO_DEEP}") from exc
    if items is None:
        return
    yield from _records_from_list(items, "a YAML file")


CSV_LOCALISED = ("title", "summary", "source")


def read_csv(text: str | Iterable[str]) -> Records:
    """CSV, given as text or as its lines (split as io.StringIO(text, newline="") splits)."""
    try:
        yield from _read_csv(text)
    except csv.Error as exc:
        raise ImportFileError(f"unreadable CSV: {exc}") from exc


def _read_csv(text: str | Iterable[str]) -> Records:
    reader = csv.DictReader(io.StringIO(text, newline="") if isinstance(text, str) else text)
    if not reader.fieldnames:
        return
    names = [(n or "").strip().lower() for n in reader.fieldnames]
    reader.fieldnames = names
    if not any(n.startswith("title") for n in names):
        raise ImportFileError("CSV header needs a title column (title, title_zh or title_en)")
    line = 1
    for row in reader:
        where = f"line {line + 1}"
        line = reader.line_num
        if None in row:
            yield where, Problem(where, "more fields than the header has")
            continue
        record: dict[str, Any] = {}
        for key, value in row.items():
            value = (value or "").strip()
            base, _, lang = key.partition("_")
            if base in CSV_LOCALISED and lang:
                if value:
                    record.setdefault(base, {})
                    if isinstance(record[base], dict):
                        record[base][lang] = value
            elif key in CSV_LOCALISED:
                if value:
                    record.setdefault(key, value)
            elif value:
                record[key] = value
        yield where, record


READERS: dict[str, Callable[[str], Records]] = {
    "json": read_json,
    "jsonl": read_jsonl,
    "yaml": read_yaml,
    "csv": read_csv,
}


# Records validated in Python, then checked for duplicates and written together: two
# queries for duplicates and two multi-row inserts per chunk of this many records.
IMPORT_CHUNK = 1000


def import_records(
    *, session: Session, records: Records, progress: Callable[[], None] | None = None
) -> ImportReport:
    """Validate every record, and store the valid, new ones with their topics.

    Records are judged in order, as `add_event` judges one (a duplicate is one whose URL,
    or title and day, an earlier record or a stored event has), and written a chunk at a
    time. Nothing is committed here: the caller commits once.
    """
    report = ImportReport()
    batch = _EventBatch(session, report)
    for where, record in records:
        if progress:
            progress()
        if isinstance(record, Problem):
            batch.items.append(record)
            continue
        try:
            event_in = EventIn.model_validate(record)
        except ValidationError as exc:
            batch.items.append(Problem(where, reason(exc)))
        except ValueError as exc:
            batch.items.append(Problem(where, str(exc)))
        except RecursionError:
            batch.items.append(Problem(where, TOO_DEEP))
        else:
            batch.items.append((where, event_in))
            if len(batch.items) >= IMPORT_CHUNK:
                batch.flush()
    batch.flush()
    return report


class _EventBatch:
    """Judged records (a Problem, or a valid event) waiting to be written, in file order."""

    def __init__(self, session: Session, report: ImportReport):
        self.session, self.report = session, report
        self.items: list[Problem | tuple[str, EventIn]] = []
        self.rules = compiled_rules(session=session)
        topics = list_topics(session=session)
        self.topic_ids = {t.slug: t.id for t in topics}
        self.known = ", ".join(t.slug for t in topics)

    def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        try:
            with self.session.begin_nested():
                outcome = self._write(items)
        except IntegrityError:
            # another writer stored one of these events meanwhile: record by record
            outcome = self._write_one_by_one(items)
        self.report.new += outcome.new
        self.report.duplicate += outcome.duplicate
        self.report.invalid += outcome.invalid
        self.report.new_ids += outcome.new_ids

    def _write(self, items: list[Problem | tuple[str, EventIn]]) -> ImportReport:
        out = ImportReport()
        valid = [item for item in items if not isinstance(item, Problem)]
        keys = [title_key(primary_title(e.title, e.language)) for _, e in valid]
        urls, pairs = self._stored([e.url for _, e in valid], keys)
        now = utcnow()
        events, topics = [], []
        keys_of = iter(keys)
        for item in items:
            if isinstance(item, Problem):
                out.invalid.append(item)
                continue
            where, event_in = item
            key = next(keys_of)
            if event_in.url in urls or (key, event_in.occurred_on) in pairs:
                out.duplicate += 1
                continue
            if event_in.topics:
                wanted = list(dict.fromkeys(t.strip() for t in event_in.topics if t.strip()))
                missing = [slug for slug in wanted if slug not in self.topic_ids]
                if missing:
                    out.invalid.append(
                        Problem(
                            where,
                            f"unknown topic(s): {', '.join(missing)} (known: {self.known})",
                        )
                    )
                    continue
            else:
                wanted = []
            urls.add(event_in.url)
            pairs.add((key, event_in.occurred_on))
            events.append(
                {
                    **event_in.model_dump(exclude={"topics"}),
                    "title_key": key,
                    "manual_topics": bool(wanted),
                    "feed_id": None,
                    "created_at": now,
                    "search_text": search_text(event_in.title, event_in.summary),
                }
            )
            if wanted:
                topics.append({self.topic_ids[slug]: ("manual", "manual") for slug in wanted})
            else:
                found = match_topics(self.rules, event_in.title, event_in.summary)
                topics.append({self.topic_ids[slug]: ("rule", why) for slug, why in found.items()})
        if events:
            ids = reserve_ids(self.session, Event.__table__, len(events))
            columns = ["id", *events[0]]
            rows = [(i, *e.values()) for i, e in zip(ids, events, strict=True)]
            bulk_insert(self.session, Event.__table__, columns, rows)
            links = [
                (event_id, topic_id, source, why, now)
                for event_id, chosen in zip(ids, topics, strict=True)
                for topic_id, (source, why) in chosen.items()
            ]
            bulk_insert(
                self.session,
                EventTopic.__table__,
                ["event_id", "topic_id", "source", "reason", "matched_at"],
                links,
            )
            out.new, out.new_ids = len(ids), ids
        return out

    def _stored(self, urls: list[str], keys: list[str]) -> tuple[set, set]:
        """(URLs, (title key, day) pairs) of stored events that these could duplicate."""
        found_urls = values_in(self.session, Event.url, urls)
        distinct = list(set(keys))
        queries: list[Executable]
        if self.session.get_bind().dialect.name == "postgresql":
            queries = [
                sql_text("SELECT title_key, occurred_on FROM event WHERE title_key = ANY(:keys)")
                .bindparams(keys=distinct)
                .columns(Event.title_key, Event.occurred_on)
            ]
        else:
            queries = [
                select(Event.title_key, Event.occurred_on).where(
                    Event.title_key.in_(distinct[i : i + 500])
                )
                for i in range(0, len(distinct), 500)
            ]
        found_pairs = {tuple(r) for q in queries for r in self.session.execute(q)}
        return found_urls, found_pairs

    def _write_one_by_one(self, items: list[Problem | tuple[str, EventIn]]) -> ImportReport:
        out = ImportReport()
        for item in items:
            if isinstance(item, Problem):
                out.invalid.append(item)
                continue
            where, event_in = item
            try:
                with self.session.begin_nested():
                    result = add_event(session=self.session, event_in=event_in, rules=self.rules)
            except TopicError as exc:
                out.invalid.append(Problem(where, str(exc)))
                continue
            if result.event is not None:
                out.new += 1
                out.new_ids.append(result.event.id)
                self.session.expunge(result.event)
            else:
                out.duplicate += 1
        return out


# Formats read a line at a time from a file, so that memory stays flat however many
# records it holds; JSON and YAML documents are parsed whole.
STREAMED = {"jsonl": read_jsonl, "csv": read_csv}
_LINE_ENDS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() splits at these


def _text_blocks(f: BinaryIO, path: Path, block: int = 1 << 20) -> Iterator[str]:
    """A UTF-8 file's text (a BOM dropped) a block at a time; closes the file at the end.

    Bytes that are not UTF-8 raise the ImportFileError `decode` gives for the whole file."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        while True:
            data = f.read(block)
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError:
                decode(path.read_bytes())  # the message, with the position in the whole file
                raise
            if text:
                yield text
            if not data:
                return
    finally:
        f.close()


def _split_lines(blocks: Iterable[str]) -> Iterator[str]:
    """The lines of the text, without their ends, exactly as text.splitlines() gives them."""
    carry = ""
    for text in blocks:
        pieces = (carry + text).splitlines(keepends=True)
        carry = ""
        # a last piece without its end, or ending in a carriage return (which a line feed
        # in the next block would join into one line end), goes on with the next block
        if pieces and (pieces[-1][-1] not in _LINE_ENDS or pieces[-1][-1] == "\r"):
            carry = pieces.pop()
        for piece in pieces:
            yield piece[:-2] if piece.endswith("\r\n") else piece[:-1]
    if carry:
        yield from carry.splitlines()


def _csv_lines(blocks: Iterable[str]) -> Iterator[str]:
    """The lines of the text with their ends, as io.StringIO(text, newline="") gives them."""
    carry = ""
    for text in blocks:
        pieces = io.StringIO(carry + text, newline="").readlines()
        carry = pieces.pop() if pieces and not pieces[-1].endswith("\n") else ""
        yield from pieces
    if carry:
        yield carry


def import_file(
    *,
    session: Session,
    path: Path,
    fmt: str | None = None,
    progress: Callable[[], None] | None = None,
) -> ImportReport:
    """Import one file; raises ImportFileError if the file as a whole is unreadable."""
    fmt = detect_format(path, fmt)
    try:
        f = path.open("rb")
        size = os.fstat(f.fileno())
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from exc
    if fmt in STREAMED and stat.S_ISREG(size.st_mode):
        if size.st_size > MAX_BYTES:
            f.close()
            raise ImportFileError(f"file is larger than {MAX_BYTES // (1024 * 1024)} MB")
        blocks = _text_blocks(f, path)
        lines = _split_lines(blocks) if fmt == "jsonl" else _csv_lines(blocks)
        return import_records(session=session, records=STREAMED[fmt](lines), progress=progress)
    try:
        with f:
            data = f.read()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from exc
    text = decode(data)
    return import_records(session=session, records=READERS[fmt](text), progress=progress)
