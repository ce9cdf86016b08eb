"""Acting on what came back: the one function every entry point calls (`process_message`).

Who a bounce is about is decided by the return-path token first (it names the delivery,
signed), then by the returned message's Message-ID (which carries the delivery id and
must equal what was sent), and only then by the failed address, and only if we ever
mailed it. A token that is present but forged or expired stops there: nothing is
guessed from the text of a message that lies about its origin.

- hard bounce: the address is suppressed, the reader disabled, the delivery marked
  failed (`outbox.note_bounce`); soft bounce: the reader's bounce score grows (hard 1,
  soft 0.5, at most once a day, restarting after a quiet period) and a reader over the
  threshold is disabled with the reason;
- complaint (ARF): suppressed and disabled at once;
- unsubscribe mail with a valid token: unsubscribed, as by the one-click POST.

Every message is recorded once (`Bounce.message_hash`, unique): a message read twice, or
sent twice by a relay, changes nothing the second time (its savepoint is rolled back). A
provider's webhook event arrives already read (`process_event`) and goes through the same
steps, recorded once by its id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session

from newsletter.audience.reader_links import TokenError
from newsletter.audience.reader_links import read_token as read_reader_token
from newsletter.audience.subscribers import (
    address_hash,
    address_key,
    get_subscriber,
    suppress,
    unsubscribe,
)
from newsletter.core.metrics import BOUNCES
from newsletter.core.models import Bounce, Delivery, Subscriber, utcnow
from newsletter.core.settings import Settings
from newsletter.core.text import one_line
from newsletter.delivery import outbox
from newsletter.delivery.return_path import read_token as read_return_token
from newsletter.feedback.parse import Parsed, Unreadable, parse

log = logging.getLogger("newsletter.feedback")

HARD_WEIGHT, SOFT_WEIGHT = 1.0, 0.5
_MESSAGE_ID = re.compile(r"<([0-9]{1,10})\.[0-9a-f]{20}@[^>\s]+>")


@dataclass
class Result:
    """What one message was and what was done: the line a report prints."""

    # hard|soft|complaint|unsubscribe|delayed|unknown, or duplicate|refused (a forged
    # token: read, nothing done), unreadable|too-large|error (not read or not processed)
    kind: str
    action: str
    email: str | None = None
    delivery_id: int | None = None
    diagnostic: str = ""
    subscriber_id: int | None = None

    @property
    def ok(self) -> bool:
        """False only for a message that could not be read at all."""
        return self.kind not in ("unreadable", "too-large", "error")

    def line(self) -> str:
        who = f" for {self.email}" if self.email else ""
        where = f" (delivery {self.delivery_id})" if self.delivery_id else ""
        diag = f" [{self.diagnostic}]" if self.diagnostic else ""
        return f"{self.kind}{who}{where}: {self.action}{diag}"


def message_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def process_message(
    session: Session,
    settings: Settings,
    raw: bytes,
    *,
    envelope_to: tuple[str, ...] = (),
    source: str = "import",
    now: dt.datetime | None = None,
) -> Result:
    """Read one raw message and act on it, in a savepoint of the caller's transaction: a
    message that fails half-way leaves nothing behind, and the next one goes on."""
    now = now or utcnow()
    if len(raw) > settings.bounce_max_bytes:
        result = Result("too-large", f"larger than {settings.bounce_max_bytes} bytes, not read")
        log.warning("bounce refused: %s", result.action)
        return _counted(result)
    digest = message_hash(raw)
    try:
        parsed = parse(raw, envelope_to)
    except Unreadable as exc:
        log.warning("bounce unreadable: %s", exc)
        return _counted(Result("unreadable", str(exc)))
    except Exception as exc:  # noqa: BLE001 - odd input must not stop the messages after it
        log.exception("bounce could not be parsed")
        return _counted(Result("unreadable", f"could not be parsed ({type(exc).__name__})"))
    return _record(session, settings, parsed, digest, source, now)


def process_event(
    session: Session,
    settings: Settings,
    parsed: Parsed,
    *,
    key: str,
    source: str,
    now: dt.datetime | None = None,
) -> Result:
    """Act on a report that arrived already read (a provider's webhook event), exactly as
    on a parsed message. `key` names the event for good (the provider's event id): an
    event delivered again changes nothing the second time."""
    digest = message_hash(f"{source}:{key}".encode())
    if _seen(session, digest):
        return _counted(Result("duplicate", "already processed, nothing done"))
    parsed.diagnostic = one_line(parsed.diagnostic)[:480]
    return _record(session, settings, parsed, digest, source, now or utcnow())


def _seen(session: Session, digest: str) -> bool:
    return bool(session.execute(select(exists().where(Bounce.message_hash == digest))).scalar())


def _record(
    session: Session, settings: Settings, parsed: Parsed, digest: str, source: str, now
) -> Result:
    """Act and record, in a savepoint of the caller's transaction: a report that fails
    half-way leaves nothing behind, and the next one goes on."""
    try:
        with session.begin_nested():
            result = _act(session, settings, parsed, now)
            session.add(
                Bounce(
                    kind=parsed.kind,
                    subscriber_id=result.subscriber_id,
                    delivery_id=result.delivery_id,
                    diagnostic=parsed.diagnostic[:500],
                    action=result.action[:200],
                    source=source,
                    message_hash=digest,
                    received_at=now,
                )
            )
            session.flush()
    except IntegrityError:
        # the same message seen before (or by another process at this moment): its record
        # is refused by the unique hash and the savepoint undoes what it did. Asking first
        # would cost a statement for every message to spare one for the few duplicates.
        return _counted(Result("duplicate", "already processed, nothing done"))
    except SQLAlchemyError:
        raise  # the database, not this report: the caller retries or reports it
    except Exception as exc:  # noqa: BLE001 - a bug here must not stop the other reports
        log.exception("bounce could not be processed")
        return _counted(Result("error", f"could not be processed ({type(exc).__name__})"))
    level = logging.WARNING if result.kind == "refused" else logging.INFO
    log.log(level, "bounce %s", result.line())
    return _counted(result)


def _counted(result: Result) -> Result:
    BOUNCES.labels(kind=result.kind).inc()
    return result


def _act(session: Session, settings: Settings, parsed: Parsed, now: dt.datetime) -> Result:
    if parsed.kind == "unsubscribe":
        return _unsubscribe(session, settings, parsed)
    if parsed.kind == "unknown":
        return Result("unknown", "not a bounce, complaint or unsubscribe mail; nothing done")
    if parsed.kind == "delayed":
        return Result(
            "delayed", "delivery delayed, not failed; nothing done", diagnostic=parsed.diagnostic
        )
    found = _whose(session, settings, parsed)
    if isinstance(found, Result):
        return found
    delivery, sub = found
    delivery_id = delivery.id if delivery else None
    result = Result(parsed.kind, "", sub.email, delivery_id, parsed.diagnostic, sub.id)
    if delivery is not None and delivery.id is not None:
        outbox.note_bounce(session, delivery.id, parsed.kind, parsed.diagnostic or parsed.kind)
    if parsed.kind == "complaint":
        suppress(session=session, email=sub.email, reason="complaint")
        _disable(session, sub, f"spam complaint: {parsed.diagnostic}")
        result.action = "suppressed and disabled (complaint)"
        return result
    actions = []
    if parsed.kind == "hard":
        suppress(session=session, email=sub.email, reason="bounced")
        actions.append("suppressed")
    actions.append(_score(session, settings, sub, parsed, now))
    result.action = ", ".join(a for a in actions if a)
    return result


def _whose(session: Session, settings: Settings, parsed: Parsed):
    """(delivery or None, reader) a failure is about, or a Result saying why nobody."""
    if parsed.return_tags:
        named = None
        for tag in parsed.return_tags:
            named = read_return_token(settings.secret_key, tag, max_days=settings.bounce_token_days)
            if named:
                break
        if named is None:
            return Result(
                "refused",
                "return-path token forged, garbled or expired; nothing done",
                diagnostic=parsed.diagnostic,
            )
        return _reader_of(parsed, *_delivery_and_reader(session, named.delivery_id))
    match = _MESSAGE_ID.fullmatch(parsed.original_message_id or "")
    if match:
        delivery, reader = _delivery_and_reader(session, int(match.group(1)))
        if delivery is not None and delivery.message_id == parsed.original_message_id:
            found = _reader_of(parsed, delivery, reader)
            # a Message-ID is seen by whoever got the message: it names the delivery
            # only when the failure is about that delivery's reader
            if isinstance(found, Result) or _same_reader(found[1], parsed.addresses):
                return found
    for address in parsed.addresses:
        sub = get_subscriber(session=session, email=address)
        if sub is not None and _ever_mailed(session, sub):
            return None, sub
    who = ", ".join(parsed.addresses[:3]) or "no address"
    return Result(
        parsed.kind,
        f"no delivery of ours matches ({who}); nothing done",
        diagnostic=parsed.diagnostic,
    )


def _delivery_and_reader(
    session: Session, delivery_id: int
) -> tuple[Delivery | None, Subscriber | None]:
    """A delivery and its reader in one query."""
    row = session.execute(
        select(Delivery, Subscriber)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id == delivery_id)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def _reader_of(parsed: Parsed, delivery: Delivery | None, sub: Subscriber | None):
    if delivery is None or delivery.subscriber_id is None:
        return Result(
            parsed.kind,
            "its delivery or reader is gone; nothing done",
            diagnostic=parsed.diagnostic,
        )
    if sub is None:
        return Result(parsed.kind, "its reader is gone; nothing done", diagnostic=parsed.diagnostic)
    return delivery, sub


def _same_reader(sub: Subscriber, addresses: list[str]) -> bool:
    mine = address_key(sub.email)
    return not addresses or any(address_key(a) == mine for a in addresses)


def _ever_mailed(session: Session, sub: Subscriber) -> bool:
    return bool(
        session.execute(
            select(
                exists().where(
                    Delivery.subscriber_id == sub.id,
                    Delivery.channel == "email",
                    Delivery.status.in_(["sent", "failed"]),
                )
            )
        ).scalar()
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _score(session: Session, settings: Settings, sub: Subscriber, parsed: Parsed, now) -> str:
    """The reader's bounce score: restart after a quiet period, one increment a day,
    disabled over the threshold."""
    last = _aware(sub.bounce_scored_at) if sub.bounce_scored_at else None
    if last is not None and now - last > dt.timedelta(days=settings.bounce_decay_days):
        sub.bounce_score = 0.0
    if last is not None and last.date() == now.date() and sub.bounce_score > 0:
        note = f"score {sub.bounce_score:g} (already counted today)"
    else:
        sub.bounce_score += HARD_WEIGHT if parsed.kind == "hard" else SOFT_WEIGHT
        sub.bounce_scored_at = now
        note = f"score {sub.bounce_score:g}"
    session.add(sub)
    if parsed.kind == "hard":
        _disable(session, sub, f"hard bounce: {parsed.diagnostic or 'address rejected'}")
        return note + ", disabled"
    if sub.bounce_score >= settings.bounce_threshold and sub.status in ("active", "pending"):
        _disable(
            session,
            sub,
            f"bounce score {sub.bounce_score:g} reached {settings.bounce_threshold:g}; "
            f"last: {parsed.diagnostic or 'soft bounce'}",
        )
        return note + ", disabled"
    return note


def _disable(session: Session, sub: Subscriber, reason: str) -> None:
    if sub.status in ("active", "pending"):
        sub.status = "disabled"
        sub.disabled_at = utcnow()
    sub.disabled_reason = reason[:500]
    session.add(sub)
    session.flush()


def _unsubscribe(session: Session, settings: Settings, parsed: Parsed) -> Result:
    token = parsed.unsubscribe_token
    if not token:
        return Result("unsubscribe", "no unsubscribe token in the address or subject; nothing done")
    try:
        sub_id, prefix = read_reader_token(settings.secret_key, "unsubscribe", token)
    except TokenError:
        log.warning("unsubscribe mail with an invalid token")
        return Result("refused", "unsubscribe token forged or garbled; nothing done")
    sub = session.get(Subscriber, sub_id)
    if sub is None or address_hash(sub.email)[:16] != prefix:
        return Result("unsubscribe", "the reader is gone; nothing done")
    if sub.status == "unsubscribed":
        return Result("unsubscribe", "already unsubscribed", sub.email, subscriber_id=sub.id)
    unsubscribe(session=session, subscriber=sub)
    session.flush()
    return Result("unsubscribe", "unsubscribed", sub.email, subscriber_id=sub.id)
