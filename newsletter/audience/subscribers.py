"""Subscribers: validated addresses, their topics, and the suppression list."""

from __future__ import annotations

import codecs
import csv
import functools
import inspect
import io
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, Field, field_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from newsletter.audience.email_syntax import plain_address
from newsletter.core.addresses import address_hash
from newsletter.core.db import bulk_insert, reserve_ids, values_in
from newsletter.core.errors import reason
from newsletter.core.models import (
    Subscriber,
    SubscriberRow,
    Subscription,
    Suppression,
    Topic,
    utcnow,
)
from newsletter.core.periods import FREQUENCIES
from newsletter.core.text import csv_cell, csv_value, one_line
from newsletter.topics.catalogue import list_topics, topics_by_slug

LANGUAGES = ("zh", "en")


class SubscriberError(ValueError):
    """A subscriber request that cannot be carried out, with the reason."""


def _remember_domain_checks() -> None:
    """Check each domain once per process, not once per address.

    email_validator spends two thirds of its time on the part after the @-sign (IDNA
    mapping, label rules, special-use names), in a function whose answer depends on the
    domain and two flags only. An import of a million readers names a few thousand
    domains, so the answers are kept (the last 4096 domains; errors are not kept, they
    are raised afresh). Should a later email_validator change this function's name or
    signature, addresses are checked uncached, as before.
    """
    module = sys.modules.get("email_validator.validate_email")
    check = getattr(module, "validate_email_domain_name", None)
    if module is None or check is None or getattr(check, "remembered", False):
        return
    try:
        params = list(inspect.signature(check).parameters)
    except (TypeError, ValueError):
        return
    if params != ["domain", "test_environment", "globally_deliverable"]:
        return
    remembered = functools.lru_cache(maxsize=4096)(check)

    def validate_email_domain_name(domain, test_environment=False, globally_deliverable=True):
        # a copy: the caller may keep or change what it is given
        return dict(remembered(domain, test_environment, globally_deliverable))

    validate_email_domain_name.remembered = True  # type: ignore[attr-defined]
    module.validate_email_domain_name = validate_email_domain_name  # type: ignore[attr-defined]


_remember_domain_checks()


def normalise_email(value: str) -> str:
    """Validate syntax (no DNS lookups) and return the normalised address."""
    if not isinstance(value, str) or "\n" in value or "\r" in value or "\x00" in value:
        raise SubscriberError("email address contains line breaks or control characters")
    address = value.strip()
    plain = plain_address(address)  # the common case, without email_validator's walk
    return plain if plain is not None else validated_address(address)


def validated_address(address: str) -> str:
    """email_validator's normalised form of an address (ASCII ones lower-cased)."""
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email address {address!r}: {exc}") from exc
    return info.normalized.lower() if info.ascii_email else info.normalized


def address_key(value: str) -> str:
    """One key per mailbox: the stored form of a valid address, else its lower-cased text
    (`user@xn--mnchen-3ya.de` and `User@München.de` are the same reader)."""
    try:
        return normalise_email(value)
    except SubscriberError:
        return value.strip().lower()


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
        ) from exc
    return value


def clean_language(value: str) -> str:
    value = (value or "en").strip().lower()
    if value not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
    return value


def clean_timezone(value: str) -> str:
    return check_timezone((value or "UTC").strip())


def clean_frequency(value: str) -> str:
    value = (value or "monthly").strip().lower()
    if value not in FREQUENCIES:
        raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
    return value


def split_topics(value: Any) -> list[str]:
    """Topic slugs given as a list or as one text ("a, b" or "a;b")."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(";", ",").split(",")
    return [str(t).strip() for t in value if str(t).strip()]


NAME_MAX_LENGTH = 200


class SubscriberIn(BaseModel):
    """A subscriber as an admin, a file or a roster gives it."""

    email: str
    name: str = Field(default="", max_length=NAME_MAX_LENGTH)
    language: str = "en"
    timezone: str = "UTC"
    frequency: str = "monthly"
    topics: list[str] = Field(default_factory=list)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return normalise_email(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return one_line(v or "")

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        return clean_language(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return clean_timezone(v)

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str) -> str:
        return clean_frequency(v)

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> list[str]:
        return split_topics(v)


# A reader's own unsubscribe may be undone by the reader: a new signup confirmed through
# double opt-in lifts it. Bounces, complaints and an admin's removal are never lifted.
LIFTED_BY_OPT_IN = frozenset({"unsubscribed"})


def is_suppressed(*, session: Session, email: str) -> bool:
    return suppression_reason(session=session, email=email) is not None


def suppression_reason(*, session: Session, email: str) -> str | None:
    h = address_hash(email)
    return session.exec(select(Suppression.reason).where(Suppression.address_hash == h)).first()


def suppress(*, session: Session, email: str, reason: str) -> None:
    """Never mail this address again; a stronger reason replaces a liftable one."""
    h = address_hash(email)
    row = session.exec(select(Suppression).where(Suppression.address_hash == h)).first()
    if row is None:
        session.add(Suppression(address_hash=h, reason=reason))
    elif row.reason in LIFTED_BY_OPT_IN and reason not in LIFTED_BY_OPT_IN:
        row.reason = reason  # e.g. removed after unsubscribing: no way back by signing up
        session.add(row)
    else:
        return
    session.flush()


def may_opt_in(*, session: Session, email: str) -> bool:
    """Whether a signup for this address may be sent a confirmation email."""
    reason = suppression_reason(session=session, email=email)
    return reason is None or reason in LIFTED_BY_OPT_IN


def confirm_subscriber(*, session: Session, subscriber: Subscriber) -> None:
    """A confirmed double opt-in: the subscriber is active, a self-unsubscribe lifted."""
    subscriber.status, subscriber.confirmed_at = "active", utcnow()
    subscriber.unsubscribed_at = None
    # a reader disabled by soft bounces who confirms again has shown the mailbox works
    subscriber.bounce_score, subscriber.disabled_reason = 0.0, None
    session.add(subscriber)
    h = address_hash(subscriber.email)
    row = session.exec(select(Suppression).where(Suppression.address_hash == h)).first()
    if row is not None and row.reason in LIFTED_BY_OPT_IN:
        session.delete(row)
    session.flush()


def get_subscriber(*, session: Session, email: str) -> Subscriber | None:
    try:
        email = normalise_email(email)
    except SubscriberError:
        return None
    return session.exec(select(Subscriber).where(Subscriber.email == email)).first()


def subscriber_topics(*, session: Session, subscriber: SubscriberRow) -> list[Topic]:
    return list(
        session.exec(
            select(Topic)
            .join(Subscription, Subscription.topic_id == Topic.id)
            .where(Subscription.subscriber_id == subscriber.id)
            .order_by(Topic.position, Topic.slug)
        )
    )


def set_topics(*, session: Session, subscriber: Subscriber, topics: list[Topic]) -> None:
    current = {
        s.topic_id: s
        for s in session.exec(
            select(Subscription).where(Subscription.subscriber_id == subscriber.id)
        )
    }
    wanted = {t.id for t in topics}
    for topic_id, row in current.items():
        if topic_id not in wanted:
            session.delete(row)
    for topic_id in wanted - set(current):
        session.add(Subscription(subscriber_id=subscriber.id, topic_id=topic_id))
    session.flush()


_COME_BACK = (
    "only they can undo that: by signing up again on the site and confirming the email sent to them"
)
_SUPPRESSED_BECAUSE = {
    "unsubscribed": f"unsubscribed; {_COME_BACK}",
    "removed": "was removed (their personal data deleted) and is never mailed again",
    "bounced": "bounced (the address does not take mail) and is never mailed again",
    "complaint": "reported our mail as spam and is never mailed again",
    "admin": "was suppressed by an admin; lift the suppression to mail them again",
}


def why_not_addable(*, session: Session, email: str) -> str | None:
    """Why an admin cannot add this address, said so they know what to do; None if they
    can. An unsubscribed reader is not "already subscribed": only the reader can come
    back."""
    sub = get_subscriber(session=session, email=email)
    if sub is not None:
        if sub.status == "unsubscribed":
            return f"{email} {_SUPPRESSED_BECAUSE['unsubscribed']}"
        if sub.status == "pending":
            return f"{email} signed up and has not confirmed the email yet"
        if sub.status == "disabled":
            return f"{email} is disabled: {sub.disabled_reason or 'bounces or a complaint'}"
        return f"{email} is already subscribed"
    why = suppression_reason(session=session, email=email)
    if why is not None:
        return f"{email} " + _SUPPRESSED_BECAUSE.get(why, f"is on the suppression list ({why})")
    return None


def add_subscriber(
    *, session: Session, sub_in: SubscriberIn, source: str = "admin", status: str = "active"
) -> Subscriber:
    """Create an active subscriber (the admin vouches for consent)."""
    if not sub_in.topics:
        raise SubscriberError("choose at least one topic")
    topics = topics_by_slug(session=session, slugs=sub_in.topics)
    refused = why_not_addable(session=session, email=sub_in.email)
    if refused is not None:
        raise SubscriberError(refused)
    now = utcnow()
    sub = Subscriber(
        **sub_in.model_dump(exclude={"topics"}),
        source=source,
        status=status,
        confirmed_at=now if status == "active" else None,
    )
    session.add(sub)
    session.flush()
    set_topics(session=session, subscriber=sub, topics=topics)
    return sub


def update_subscriber(*, session: Session, subscriber: Subscriber, sub_in: SubscriberIn) -> bool:
    """Bring a stored subscriber in line with sub_in; True if anything changed."""
    topics = topics_by_slug(session=session, slugs=sub_in.topics)
    changed = False
    for key in ("name", "language", "timezone", "frequency"):
        if getattr(subscriber, key) != getattr(sub_in, key):
            setattr(subscriber, key, getattr(sub_in, key))
            changed = True
    before = {t.slug for t in subscriber_topics(session=session, subscriber=subscriber)}
    if before != {t.slug for t in topics}:
        set_topics(session=session, subscriber=subscriber, topics=topics)
        changed = True
    session.add(subscriber)
    session.flush()
    return changed


def remove_subscriber(*, session: Session, subscriber: Subscriber, reason: str = "removed") -> None:
    """Delete personal data; keep a suppression entry so the address is never mailed again.
    The reader's outbox rows must be detached first (`pipeline.remove_subscriber` does
    both)."""
    suppress(session=session, email=subscriber.email, reason=reason)
    for row in session.exec(
        select(Subscription).where(Subscription.subscriber_id == subscriber.id)
    ):
        session.delete(row)
    session.flush()  # before the reader's row: its foreign-key cascade would beat us to them
    session.delete(subscriber)
    session.flush()


def unsubscribe(*, session: Session, subscriber: Subscriber) -> None:
    """Stop all mail to a subscriber (kept, marked unsubscribed, and suppressed)."""
    subscriber.status = "unsubscribed"
    subscriber.unsubscribed_at = utcnow()
    session.add(subscriber)
    suppress(session=session, email=subscriber.email, reason="unsubscribed")


def suppress_by_admin(*, session: Session, subscriber: Subscriber) -> bool:
    """An admin stops all mail to this reader (kept, status unchanged, address on the
    suppression list: anything queued for them ends `suppressed`). False if the address
    was suppressed already."""
    if suppression_reason(session=session, email=subscriber.email) is not None:
        return False
    suppress(session=session, email=subscriber.email, reason="admin")
    return True


def lift_suppression(*, session: Session, subscriber: Subscriber, force: bool = False) -> str:
    """An admin takes the address off the suppression list; returns the reason it had.

    A reader disabled by bounces or a complaint becomes active again, their bounce score
    cleared; a complaint only when forced (the reader asked), as re-enabling one is. A
    reader's own unsubscribe is never lifted by an admin: only the reader can come back,
    by signing up and confirming.
    """
    h = address_hash(subscriber.email)
    row = session.exec(select(Suppression).where(Suppression.address_hash == h)).first()
    if row is None:
        raise SubscriberError(f"{subscriber.email} is not on the suppression list")
    if row.reason in LIFTED_BY_OPT_IN or subscriber.status == "unsubscribed":
        raise SubscriberError(f"{subscriber.email} {_SUPPRESSED_BECAUSE['unsubscribed']}")
    if row.reason == "complaint" and not force:
        raise SubscriberError(
            f"{subscriber.email} reported our mail as spam; lift it only if they asked for it "
            "(force)"
        )
    session.delete(row)
    if subscriber.status == "disabled":
        subscriber.status, subscriber.disabled_reason = "active", None
        subscriber.bounce_score, subscriber.bounce_scored_at = 0.0, None
        session.add(subscriber)
    session.flush()
    return row.reason


def list_subscribers(*, session: Session, status: str | None = None) -> list[Subscriber]:
    query = select(Subscriber).order_by(Subscriber.id)
    if status:
        query = query.where(Subscriber.status == status)
    return list(session.exec(query))


# --- CSV import / export ---------------------------------------------------------------------

EXPORT_FIELDS = ["email", "name", "language", "timezone", "frequency", "topics", "status"]


@dataclass
class RowProblem:
    where: str
    reason: str


@dataclass
class RowOutcome:
    """What became of one imported row: added, updated, unchanged or refused (why)."""

    where: str
    email: str
    action: str
    reason: str = ""

    @property
    def line(self) -> int:
        """The line of a `where` of csv_rows ("line 7")."""
        last = self.where.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0


@dataclass
class SubscriberImportReport:
    added: int = 0
    duplicate: int = 0
    invalid: list[RowProblem] = field(default_factory=list)
    # each row's outcome, in file order, when the caller asks for it (a list to fill)
    rows: list[RowOutcome] | None = None

    @property
    def ok(self) -> bool:
        return not self.invalid


def csv_rows(text: str | Iterable[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, row) of a subscribers CSV, given as text or as lines (see `file_lines`).

    Read as csv.DictReader reads it (blank lines skipped, cells past the header dropped,
    missing cells empty), without its per-row cost. The cells are separated by what the
    header line uses: a comma, a semicolon (spreadsheets in many European locales) or a
    tab; a header that shows none of them is read as comma-separated."""
    lines = iter(io.StringIO(text, newline="") if isinstance(text, str) else text)
    first = next(lines, None)
    if first is None:
        raise SubscriberError("CSV header needs an email column")
    reader = csv.reader(itertools.chain([first], lines), delimiter=header_delimiter(first))
    header = next(reader, None)
    if not header or "email" not in [f.strip().lower() for f in header]:
        raise SubscriberError("CSV header needs an email column")
    names = [f.strip().lower() for f in header]
    wanted = [(i, name) for i, name in enumerate(names) if name]
    if len({name for _, name in wanted}) < len(wanted):  # a repeated column: the last wins
        wanted = list({name: (i, name) for i, name in wanted}.values())
    line = 1
    for row in reader:
        if not row:
            continue
        where = f"line {line + 1}"
        line = reader.line_num
        n = len(row)
        yield where, {name: csv_value(row[i].strip()) if i < n else "" for i, name in wanted}


CSV_DELIMITERS = ",;\t"


def header_delimiter(header: str) -> str:
    """The delimiter a CSV header line uses: comma, semicolon or tab (comma if unsure)."""
    try:
        return csv.Sniffer().sniff(header, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


class FileReadError(ValueError):
    """A file that is not UTF-8 text; says where, as reading it whole would."""


def file_lines(path: Path, block: int = 1 << 20) -> Iterator[str]:
    """The lines of a UTF-8 file (a BOM dropped), read a block at a time, split as
    `io.StringIO(text, newline="")` splits the whole text (at \\r, \\n and \\r\\n only).

    A file that is not UTF-8 raises FileReadError with the message decoding it whole
    gives (where the first bad byte is)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    carry = ""
    with path.open("rb") as f:
        while True:
            data = f.read(block)
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError:
                try:  # only for the message: positions as in the whole file
                    path.read_bytes().decode("utf-8-sig")
                except UnicodeDecodeError as exc:
                    raise FileReadError(str(exc)) from exc
                raise
            lines = io.StringIO(carry + text, newline="").readlines()
            # a last line without its end may go on in the next block (even "\\r" + "\\n")
            carry = lines.pop() if lines and data and not lines[-1].endswith("\n") else ""
            yield from lines
            if not data:
                break


# Rows validated in Python, then checked and written together: one query for duplicates,
# one for suppressions, and two multi-row inserts per chunk of this many rows.
IMPORT_CHUNK = 5000


def import_subscribers(
    *,
    session: Session,
    text: str | Iterable[str],
    default_topics: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> SubscriberImportReport:
    """Add every valid row; report duplicates and invalid rows with their line number.

    `text` is the CSV, or its lines (e.g. `file_lines(path)`, which keeps memory flat
    however large the file). Each row is judged as `add_subscriber` would judge it, in
    file order; the rows that pass are written a chunk at a time. Nothing is committed here: the caller commits once, so a file that fails as a whole
    leaves nothing.
    """
    report = SubscriberImportReport()
    batch = _ImportBatch(session, report)
    for chunk in _chunks(csv_rows(text), IMPORT_CHUNK):
        batch.flush(validate_rows(chunk, default_topics), progress)
    return report


def _chunks(rows: Iterator[tuple[str, dict[str, str]]], size: int) -> Iterator[list]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def validate_rows(
    rows: list[tuple[str, dict[str, str]]], default_topics: list[str] | None
) -> list[RowProblem | tuple[str, dict[str, Any]]]:
    """Each CSV row as the fields of a valid SubscriberIn, or the problem with it."""
    out: list[RowProblem | tuple[str, dict[str, Any]]] = []
    defaults = split_topics(default_topics) if default_topics else None
    for where, row in rows:
        fields = quick_fields(row, defaults)
        if fields is None:  # a problem somewhere: SubscriberIn says which, in its words
            data: dict[str, Any] = {k: v for k, v in row.items() if v}
            if not data.get("topics") and default_topics:
                data["topics"] = default_topics
            try:
                fields = SubscriberIn.model_validate(data).model_dump()
            except (ValueError, SubscriberError) as exc:
                out.append(RowProblem(where, reason(exc)))
                continue
        out.append((where, fields))
    return out


# The few values a file repeats on every row (language, time zone, frequency, topics)
# are checked once each: (field, value) -> the cleaned value, or _REFUSED.
_REFUSED = object()
_CLEANERS: dict[str, Callable[[str], Any]] = {
    "language": clean_language,
    "timezone": clean_timezone,
    "frequency": clean_frequency,
    "topics": lambda v: tuple(split_topics(v)),
}
_cleaned: dict[tuple[str, str], Any] = {}
_CLEANED_KEPT = 10_000


def quick_fields(row: dict[str, str], default_topics: list[str] | None) -> dict[str, Any] | None:
    """SubscriberIn(**row).model_dump() (empty cells taken as absent) for a valid row,
    without pydantic's per-row cost; None for a row with any problem."""
    email, name = row.get("email"), row.get("name") or ""
    if not email or len(name) > NAME_MAX_LENGTH:
        return None
    try:
        email = normalise_email(email)
    except SubscriberError:
        return None
    fields: dict[str, Any] = {"email": email, "name": one_line(name) if name else ""}
    for key, default in (("language", "en"), ("timezone", "UTC"), ("frequency", "monthly")):
        value = row.get(key)
        cleaned = _clean(key, value) if value else default
        if cleaned is _REFUSED:
            return None
        fields[key] = cleaned
    topics = row.get("topics")
    if topics:
        cleaned = _clean("topics", topics)
        if cleaned is _REFUSED:
            return None
        fields["topics"] = list(cleaned)
    else:
        fields["topics"] = list(default_topics or ())
    return fields


def _clean(key: str, value: str) -> Any:
    try:
        return _cleaned[key, value]
    except KeyError:
        pass
    try:
        cleaned = _CLEANERS[key](value)
    except ValueError:
        cleaned = _REFUSED
    if len(_cleaned) >= _CLEANED_KEPT:
        _cleaned.clear()
    _cleaned[key, value] = cleaned
    return cleaned


SUBSCRIBER_COLUMNS = [
    "id",
    "email",
    "name",
    "language",
    "timezone",
    "frequency",
    "source",
    "status",
    "created_at",
    "confirmed_at",
]


class _ImportBatch:
    """Judged import rows (a problem, or a valid row) waiting to be checked against the
    database and written, in file order."""

    def __init__(self, session: Session, report: SubscriberImportReport):
        self.session, self.report = session, report
        topics = list_topics(session=session)
        self.topic_ids = {t.slug: t.id for t in topics}
        self.known = ", ".join(t.slug for t in topics)
        self._topic_sets: dict[tuple[str, ...], tuple[int, ...] | str] = {}
        self._driver_integrity_error = session.get_bind().dialect.loaded_dbapi.IntegrityError

    def flush(self, items: list, progress: Callable[[int], None] | None) -> None:
        if items:
            try:
                with self.session.begin_nested():
                    self._write(items)
            except (IntegrityError, self._driver_integrity_error):
                # another writer added one of these addresses meanwhile: row by row (the
                # bulk insert goes through the driver, which raises its own error class)
                self._write_one_by_one(items)
        if progress:
            progress(len(items))

    def _write(self, items: list[RowProblem | tuple[str, dict[str, Any]]]) -> None:
        """Judge and write one chunk; the report changes only once the rows are written."""
        session = self.session
        invalid: list[RowProblem] = []
        duplicate = 0
        valid = [item for item in items if not isinstance(item, RowProblem)]
        keys = {where: _lookup_key(sub["email"]) for where, sub in valid}
        existing = _existing_emails(session, [k for k in keys.values() if k])
        suppressed = _suppressed_hashes(session, [sub["email"] for _, sub in valid])
        subs, topic_ids, added = [], [], set()
        outcomes: list[RowOutcome] = []
        for item in items:
            if isinstance(item, RowProblem):
                invalid.append(item)
                outcomes.append(RowOutcome(item.where, "", "refused", item.reason))
                continue
            where, sub = item
            key = keys[where]
            if key is not None and (key in existing or key in added):
                duplicate += 1
                outcomes.append(RowOutcome(where, sub["email"], "unchanged", "already a reader"))
                continue
            ids = self._topic_set(sub["topics"])
            if isinstance(ids, str):
                invalid.append(RowProblem(where, ids))
                outcomes.append(RowOutcome(where, sub["email"], "refused", ids))
                continue
            email = sub["email"]
            if suppressed and address_hash(email) in suppressed:
                # rare: the reason is looked up, to say it as `subscribers add` does
                why = why_not_addable(session=session, email=email)
                invalid.append(RowProblem(where, why or f"{email} is on the suppression list"))
                outcomes.append(RowOutcome(where, email, "refused", invalid[-1].reason))
                continue
            added.add(email)
            subs.append((email, sub["name"], sub["language"], sub["timezone"], sub["frequency"]))
            topic_ids.append(ids)
            outcomes.append(RowOutcome(where, email, "added"))
        if subs:
            self._insert(subs, topic_ids)
        self.report.added += len(subs)
        self.report.duplicate += duplicate
        self.report.invalid += invalid
        if self.report.rows is not None:
            self.report.rows += outcomes

    def _topic_set(self, slugs: list[str]) -> tuple[int, ...] | str:
        """The sorted ids of a row's topics, or what is wrong with them (remembered)."""
        key = tuple(slugs)
        found = self._topic_sets.get(key)
        if found is None:
            wanted = list(dict.fromkeys(slugs))
            missing = [slug for slug in wanted if slug not in self.topic_ids]
            if not wanted:
                found = "choose at least one topic"
            elif missing:
                found = f"unknown topic(s): {', '.join(missing)} (known: {self.known})"
            else:
                found = tuple(sorted({self.topic_ids[slug] for slug in wanted}))
            if len(self._topic_sets) < 10_000:
                self._topic_sets[key] = found
        return found

    def _insert(self, subs: list[tuple], topic_ids: list[tuple[int, ...]]) -> None:
        session = self.session
        ids = reserve_ids(session, Subscriber.__table__, len(subs))
        now = utcnow()
        tail = ("import", "active", now, now)  # source, status, created_at, confirmed_at
        rows = [(i, *r, *tail) for i, r in zip(ids, subs, strict=True)]
        bulk_insert(session, Subscriber.__table__, SUBSCRIBER_COLUMNS, rows)
        links = [(i, t) for i, tids in zip(ids, topic_ids, strict=True) for t in tids]
        bulk_insert(session, Subscription.__table__, ["subscriber_id", "topic_id"], links)

    def _write_one_by_one(self, items: list[RowProblem | tuple[str, dict[str, Any]]]) -> None:
        from newsletter.topics.catalogue import TopicError

        rows = self.report.rows
        for item in items:
            if isinstance(item, RowProblem):
                self.report.invalid.append(item)
                if rows is not None:
                    rows.append(RowOutcome(item.where, "", "refused", item.reason))
                continue
            where, fields = item
            sub_in = SubscriberIn.model_construct(**fields)  # validated already
            if get_subscriber(session=self.session, email=sub_in.email) is not None:
                self.report.duplicate += 1
                if rows is not None:
                    rows.append(RowOutcome(where, sub_in.email, "unchanged", "already a reader"))
                continue
            try:
                with self.session.begin_nested():
                    add_subscriber(session=self.session, sub_in=sub_in, source="import")
            except (SubscriberError, TopicError) as exc:
                self.report.invalid.append(RowProblem(where, str(exc)))
                if rows is not None:
                    rows.append(RowOutcome(where, sub_in.email, "refused", str(exc)))
                continue
            self.report.added += 1
            if rows is not None:
                rows.append(RowOutcome(where, sub_in.email, "added"))


def _lookup_key(email: str) -> str | None:
    """What `get_subscriber` looks an address up by (a validated ASCII address is its own)."""
    if email.isascii():
        return email
    try:
        return normalise_email(email)
    except SubscriberError:
        return None


def _existing_emails(session: Session, emails: list[str]) -> set[str]:
    return values_in(session, Subscriber.email, emails)


def _suppressed_hashes(session: Session, emails: list[str]) -> set[str]:
    """The address hashes of those of `emails` on the suppression list (an empty list,
    the usual case, costs no hashing)."""
    if session.execute(select(Suppression.id).limit(1)).first() is None:
        return set()
    hashes = list({address_hash(email) for email in emails})
    return values_in(session, Suppression.address_hash, hashes)


def export_subscribers(*, session: Session) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for sub in list_subscribers(session=session):
        row = {k: getattr(sub, k) for k in EXPORT_FIELDS if k != "topics"}
        row["topics"] = ",".join(t.slug for t in subscriber_topics(session=session, subscriber=sub))
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return out.getvalue()
