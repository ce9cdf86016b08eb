"""Proofs: a digest exactly as one reader would get it, sent to an editor instead.

A proof goes through the normal email channel (SMTP, or the .eml folder) straight away,
to the editor's address only. It is no delivery: no outbox row, nothing counted for the
reader, its unsubscribe and preference links lead nowhere (`messages.proof_links`), and
its event links are the events' own, so an editor's clicks are never counted.
Its subject starts with "[Proof]", and it shows the sharp take even while that is a
draft, as proofing the take is what it is for.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass

from jinja2 import Environment
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.core.addresses import AddressError, proof_address
from newsletter.core.models import Delivery, DigestRun, Subscriber, utcnow
from newsletter.core.settings import Settings
from newsletter.delivery.channels.base import DeliveryError
from newsletter.delivery.messages import BuiltMessage, build_digest_email
from newsletter.planning import send_times
from newsletter.planning.digests import DigestError, ReaderView, reader_view

log = logging.getLogger("newsletter.planning.proofs")

PROOF_PREFIX = "[Proof] "
MAX_PROOF_ADDRESSES = 10


class ProofError(ValueError):
    """A proof that cannot be made or sent, with the reason."""


class ProofSendError(ProofError):
    """The email channel did not take the proof (the relay refused it or is down)."""


@dataclass
class ProofSent:
    to: list[str]
    subject: str
    event_count: int
    view: str  # whose digest it shows, in words


def proof_addresses(values: list[str] | str) -> list[str]:
    """Validated, normalised editor addresses (one or a few), without repeats."""
    if isinstance(values, str):
        values = [v for v in values.replace(";", ",").split(",")]
    out: list[str] = []
    for value in values:
        if not value.strip():
            continue
        try:
            address = proof_address(value)
        except AddressError as exc:
            raise ProofError(str(exc)) from exc
        if address not in out:
            out.append(address)
    if not out:
        raise ProofError("give an address to send the proof to")
    if len(out) > MAX_PROOF_ADDRESSES:
        raise ProofError(f"at most {MAX_PROOF_ADDRESSES} proof addresses at a time")
    return out


def build_proofs(view: ReaderView, *, settings: Settings, to: list[str]) -> list[BuiltMessage]:
    """One message per editor address, each the reader's digest marked as a proof."""
    edition = view.edition.model_copy()
    edition.subject = PROOF_PREFIX + edition.subject
    nonce = secrets.token_hex(8)  # each proof its own Message-ID
    messages = []
    for address in to:
        subscriber = view.subscriber
        if not subscriber.id:  # a made-up reader of a topic set: the footer names the editor
            subscriber = subscriber.model_copy(update={"email": address})
        key = hashlib.sha256(f"proof|{edition.segment_key}|{address}|{nonce}".encode()).hexdigest()
        delivery = Delivery(
            id=0,  # no outbox row: no VERP tag, no provider tags
            idempotency_key=f"proof|{key}",
            channel="email",
            kind="proof",
            created_at=utcnow(),
        )
        messages.append(
            build_digest_email(
                settings=settings,
                delivery=delivery,
                edition=edition,
                subscriber=subscriber,
                proof_to=address,
            )
        )
    return messages


def deliver(settings: Settings, messages: list[BuiltMessage]) -> None:
    """Send now through the email channel the worker uses; any failure is a ProofError."""
    from newsletter.delivery.worker import email_channel

    async def run() -> None:
        channel = email_channel(settings)
        try:
            for message in messages:
                await channel.send(
                    sender=message.sender,
                    recipient=message.recipient,
                    message=message.data,
                    key=f"proof-{message.message_id.strip('<>').split('@')[0]}",
                )
        finally:
            await channel.aclose()

    try:
        asyncio.run(run())
    except (DeliveryError, OSError) as exc:
        raise ProofSendError(f"the proof could not be sent: {exc}") from exc


def send_proof(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    to: list[str] | str,
    email: str | None = None,
    topics: list[str] | None = None,
    language: str = "en",
) -> ProofSent:
    """Render the digest of the subscriber `email` (or of a reader of `topics` in
    `language`) and send it to the editors `to` as a proof."""
    addresses = proof_addresses(to)
    view = reader_view(  # DigestError: a bad period, or nothing to send
        session=session,
        env=env,
        settings=settings,
        frequency=frequency,
        period_key=period_key,
        email=email,
        topics=topics,
        language=language,
        drafts=True,
        count_clicks=False,
    )
    deliver(settings, build_proofs(view, settings=settings, to=addresses))
    if email:
        who = f"{view.subscriber.email}'s {frequency} digest"
    else:
        slugs = ", ".join(view.edition.topic_slugs)
        who = f"the {language} {frequency} digest of {slugs}"
    return ProofSent(addresses, PROOF_PREFIX + view.edition.subject, view.event_count, who)


# --- the scheduled proof before the monthly send -----------------------------------------

PROOF_RUN = "monthly-proof"  # DigestRun.frequency of the record that a period's proof went


def scheduled_proofs(
    *, engine: Engine, env: Environment, settings: Settings, now: dt.datetime | None = None
) -> list[str]:
    """Send the editors (NEWSLETTER_PROOF_TO) a proof of each monthly digest whose
    earliest send is at most NEWSLETTER_PROOF_LEAD_HOURS away, once per period.

    One proof per language the monthly readers read, showing every topic. Claimed with
    a DigestRun row (frequency `monthly-proof`), so two schedulers, or one restarted,
    send it once; a proof that could not be sent is forgotten and tried on the next tick.
    A proof whose send has already gone out (the deadline passed) is not sent late.
    Returns the periods whose proof went.
    """
    if not settings.proof_to:
        return []
    now = now or utcnow()
    lead = dt.timedelta(hours=settings.proof_lead_hours)
    held = send_times.hold(settings, "monthly")
    send_time = dt.time.fromisoformat(settings.digest_send_time)
    sent: list[str] = []
    with Session(engine, expire_on_commit=False) as session:
        earliest: dict[str, send_times.Due] = {}
        for tz in send_times.zones(session, "monthly"):
            for due in send_times.send_moments(
                "monthly", tz, send_time, now - held - dt.timedelta(hours=1), now + lead
            ):
                if due.period.key not in earliest or due.due_at < earliest[due.period.key].due_at:
                    earliest[due.period.key] = due
        for period, due in sorted(earliest.items()):
            if not (due.due_at - lead <= now < max(due.due_at + held, due.due_at + _GRACE)):
                continue
            if _planned(session, period):
                continue  # the digest went out already (a zone of it, at least)
            if not _claim(session, period, due.due_at - lead, now):
                continue
            try:
                languages = reader_languages(session)
                for language in languages:
                    try:
                        send_proof(
                            session=session,
                            env=env,
                            settings=settings,
                            frequency="monthly",
                            period_key=period,
                            to=settings.proof_to,
                            language=language,
                        )
                    except DigestError as exc:  # no events for this language's readers
                        log.info("no %s proof for %s: %s", language, period, exc)
            except Exception:
                session.rollback()
                _forget(session, period)
                log.exception("the proof of the monthly digest %s failed", period)
                continue
            _finish(session, period, len(settings.proof_to))
            log.info("sent the proof of the monthly digest %s to the editors", period)
            sent.append(period)
    return sent


# a proof is worth sending until its digest goes out; with no wait for the take, until
# the send's own tick has had time to run
_GRACE = dt.timedelta(minutes=30)


def reader_languages(session: Session) -> list[str]:
    """The languages of the active monthly readers (English when there are none)."""
    found = session.execute(
        select(Subscriber.language)
        .where(Subscriber.frequency == "monthly", Subscriber.status == "active")
        .distinct()
    ).scalars()
    return sorted({lang for lang in found if lang in ("en", "zh")}) or ["en"]


def proof_sent(session: Session, period: str) -> dt.datetime | None:
    """When the scheduled proof of a monthly digest went, or None."""
    return session.execute(
        select(DigestRun.finished_at).where(
            DigestRun.frequency == PROOF_RUN,
            DigestRun.period == period,
            DigestRun.outcome == "done",
        )
    ).scalar()


def _planned(session: Session, period: str) -> bool:
    return (
        session.execute(
            select(DigestRun.id).where(
                DigestRun.frequency == "monthly",
                DigestRun.period == period,
                DigestRun.outcome == "done",
            )
        ).first()
        is not None
    )


def _claim(session: Session, period: str, due_at: dt.datetime, now: dt.datetime) -> bool:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    row = session.execute(
        insert(DigestRun)
        .values(
            frequency=PROOF_RUN,
            period=period,
            timezone="*",
            due_at=due_at,
            started_at=now,
            recipients=0,
            enqueued=0,
            outcome="running",
        )
        .on_conflict_do_nothing(index_elements=["frequency", "period", "timezone"])
        .returning(DigestRun.id)
    ).first()
    session.commit()
    return row is not None


def _forget(session: Session, period: str) -> None:
    session.execute(
        delete(DigestRun).where(DigestRun.frequency == PROOF_RUN, DigestRun.period == period)
    )
    session.commit()


def _finish(session: Session, period: str, editors: int) -> None:
    session.execute(
        update(DigestRun)
        .where(DigestRun.frequency == PROOF_RUN, DigestRun.period == period)
        .values(finished_at=utcnow(), outcome="done", recipients=editors, note="proof")
    )
    session.commit()
