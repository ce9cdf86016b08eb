"""Subscribers: validated addresses, their topics, and the suppression list."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session, select

from .errors import reason
from .models import Subscriber, Subscription, Suppression, Topic, utcnow
from .periods import FREQUENCIES
from .text import csv_cell, csv_value, one_line
from .topics import topics_by_slug

LANGUAGES = ("zh", "en")


class SubscriberError(ValueError):
    """A subscriber request that cannot be carried out, with the reason."""


def normalise_email(value: str) -> str:
    """Validate syntax (no DNS lookups) and return the normalised address."""
    if not isinstance(value, str) or any(c in value for c in "\r\n\x00"):
        raise SubscriberError("email address contains line breaks or control characters")
    try:
        info = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email address {value.strip()!r}: {exc}") from exc
    return info.normalized.lower() if info.ascii_email else info.normalized


def address_key(value: str) -> str:
    """One key per mailbox: the stored form of a valid address, else its lower-cased text
    (`user@xn--mnchen-3ya.de` and `User@München.de` are the same reader)."""
    try:
        return normalise_email(value)
    except SubscriberError:
        return value.strip().lower()


def address_hash(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
        ) from exc
    return value


class SubscriberIn(BaseModel):
    """A subscriber as an admin, a file or a roster gives it."""

    email: str
    name: str = Field(default="", max_length=200)
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
        v = (v or "en").strip().lower()
        if v not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return check_timezone((v or "UTC").strip())

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str) -> str:
        v = (v or "monthly").strip().lower()
        if v not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {', '.join(FREQUENCIES)}")
        return v

    @field_validator("topics", mode="before")
    @classmethod
    def _topics(cls, v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, str):
            v = v.replace(";", ",").split(",")
        return [str(t).strip() for t in v if str(t).strip()]


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


def subscriber_topics(*, session: Session, subscriber: Subscriber) -> list[Topic]:
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


def add_subscriber(
    *, session: Session, sub_in: SubscriberIn, source: str = "admin", status: str = "active"
) -> Subscriber:
    """Create an active subscriber (the admin vouches for consent)."""
    if not sub_in.topics:
        raise SubscriberError("choose at least one topic")
    topics = topics_by_slug(session=session, slugs=sub_in.topics)
    if get_subscriber(session=session, email=sub_in.email) is not None:
        raise SubscriberError(f"{sub_in.email} is already subscribed")
    if is_suppressed(session=session, email=sub_in.email):
        raise SubscriberError(
            f"{sub_in.email} is on the suppression list (unsubscribed, removed or bounced)"
        )
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
    """Delete personal data; keep a suppression entry so the address is never mailed again."""
    from .delivery import outbox

    suppress(session=session, email=subscriber.email, reason=reason)
    for row in session.exec(
        select(Subscription).where(Subscription.subscriber_id == subscriber.id)
    ):
        session.delete(row)
    outbox.detach_subscriber(session, subscriber.id)
    session.delete(subscriber)
    session.flush()


def unsubscribe(*, session: Session, subscriber: Subscriber) -> None:
    """Stop all mail to a subscriber (kept, marked unsubscribed, and suppressed)."""
    subscriber.status = "unsubscribed"
    subscriber.unsubscribed_at = utcnow()
    session.add(subscriber)
    suppress(session=session, email=subscriber.email, reason="unsubscribed")


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
class SubscriberImportReport:
    added: int = 0
    duplicate: int = 0
    invalid: list[RowProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.invalid


def csv_rows(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
        raise SubscriberError("CSV header needs an email column")
    reader.fieldnames = [f.strip().lower() for f in reader.fieldnames]
    line = 1
    for row in reader:
        where = f"line {line + 1}"
        line = reader.line_num
        yield where, {k: csv_value((v or "").strip()) for k, v in row.items() if k}


def import_subscribers(
    *, session: Session, text: str, default_topics: list[str] | None = None
) -> SubscriberImportReport:
    """Add every valid row; report duplicates and invalid rows with their line number."""
    from .topics import TopicError

    report = SubscriberImportReport()
    for where, row in csv_rows(text):
        data = {k: v for k, v in row.items() if v}
        if not data.get("topics") and default_topics:
            data["topics"] = default_topics
        try:
            sub_in = SubscriberIn.model_validate(data)
        except (ValueError, SubscriberError) as exc:
            report.invalid.append(RowProblem(where, reason(exc)))
            continue
        if get_subscriber(session=session, email=sub_in.email) is not None:
            report.duplicate += 1
            continue
        try:
            with session.begin_nested():
                add_subscriber(session=session, sub_in=sub_in, source="import")
        except (SubscriberError, TopicError) as exc:
            report.invalid.append(RowProblem(where, str(exc)))
            continue
        report.added += 1
    return report


def export_subscribers(*, session: Session) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    for sub in list_subscribers(session=session):
        row = {k: getattr(sub, k) for k in EXPORT_FIELDS if k != "topics"}
        row["topics"] = ",".join(t.slug for t in subscriber_topics(session=session, subscriber=sub))
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return out.getvalue()
