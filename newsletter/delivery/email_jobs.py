"""Turning claimed email rows into messages: digests, confirmations, and instant alerts
(an reader's due alerts are grouped into one email)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from newsletter.audience.subscribers import LIFTED_BY_OPT_IN, address_hash, subscriber_topics
from newsletter.core.db import among
from newsletter.core.models import (
    DeliveryRow,
    Edition,
    Event,
    Subscriber,
    SubscriberRow,
    Suppression,
    Topic,
    utcnow,
)
from newsletter.delivery.messages import (
    BuiltMessage,
    MessageError,
    build_confirm_email,
    build_digest_email,
)
from newsletter.delivery.outbox import Outcome, crashed
from newsletter.delivery.welcome import build_welcome_email
from newsletter.ingest.events import slugs_by_event
from newsletter.rendering.click_links import click_linker
from newsletter.rendering.editions import alert_context, render_digest

#: what building a reader's message reads of them (plain rows: nothing here changes them)
_SUBSCRIBER_COLUMNS = [
    Subscriber.__table__.c[name] for name in ("id", "email", "name", "language", "status")
]


@dataclass
class EmailJob:
    delivery_ids: list[int]  # all share the one message's outcome
    built: BuiltMessage


def prepare_emails(session: Session, settings, env, deliveries: Sequence[DeliveryRow], edition_of):
    jobs: list[EmailJob] = []
    ready: list[Outcome] = []
    dialect = session.get_bind().dialect.name
    subscribers = {
        s.id: s
        for s in session.execute(
            select(*_SUBSCRIBER_COLUMNS).where(
                among(
                    dialect,
                    Subscriber.id,
                    {d.subscriber_id for d in deliveries if d.subscriber_id},
                )
            )
        )
    }
    hashes: dict[str, list[int]] = {}  # one mailbox may be stored in two spellings
    for s in subscribers.values():
        hashes.setdefault(address_hash(s.email), []).append(s.id)
    suppressed = {
        sub_id: why
        for h, why in session.execute(
            select(Suppression.address_hash, Suppression.reason).where(
                among(dialect, Suppression.address_hash, hashes)
            )
        )
        for sub_id in hashes[h]
    }
    alerts: dict[int, list[DeliveryRow]] = {}
    for d in deliveries:
        sub = subscribers.get(d.subscriber_id)
        confirm = d.kind == "confirm"
        if sub is None or (d.edition_id is None and d.kind not in ("confirm", "welcome", "alert")):
            ready.append(Outcome(d.id, "cancelled", "recipient or edition is gone"))
            continue
        # a reader who unsubscribed may ask to come back: only the confirmation goes out
        blocked = sub.id in suppressed and not (confirm and suppressed[sub.id] in LIFTED_BY_OPT_IN)
        if blocked or sub.status != ("pending" if confirm else "active"):
            reason = "address is suppressed" if blocked else f"subscriber is {sub.status}"
            ready.append(Outcome(d.id, "suppressed", reason))
            continue
        if d.kind == "alert":
            alerts.setdefault(sub.id, []).append(d)
            continue
        try:
            if confirm:
                built = build_confirm_email(settings=settings, env=env, delivery=d, subscriber=sub)
            elif d.kind == "welcome":
                built = build_welcome_email(session, settings, env, d, sub)
            else:
                built = build_digest_email(
                    settings=settings,
                    delivery=d,
                    edition=edition_of(session, d.edition_id),
                    subscriber=sub,
                )
        except MessageError as exc:
            ready.append(Outcome(d.id, "permanent", str(exc)))
            continue
        except SQLAlchemyError:
            raise  # the database, not this row: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            ready += crashed([d.id], exc)
            continue
        jobs.append(EmailJob([d.id], built))
    for sub_id, rows in alerts.items():
        try:
            alert = build_alert_email(session, settings, env, subscribers[sub_id], rows)
        except MessageError as exc:
            ready += [Outcome(d.id, "permanent", str(exc)) for d in rows]
            continue
        except SQLAlchemyError:
            raise  # the database, not this row: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            ready += crashed([d.id for d in rows], exc)
            continue
        if alert is None:
            ready += [Outcome(d.id, "cancelled", "the events are gone") for d in rows]
        else:
            jobs.append(EmailJob([d.id for d in rows], alert))
    return jobs, ready


def build_alert_email(
    session: Session, settings, env, sub: SubscriberRow, rows: list[DeliveryRow]
) -> BuiltMessage | None:
    """One email with every event this reader's due alert rows name."""
    ids = [int(d.period.split(":", 1)[1]) for d in rows]
    events = list(
        session.execute(
            select(Event).where(Event.id.in_(ids)).order_by(Event.occurred_on, Event.id)
        ).scalars()
    )
    if not events:
        return None
    slugs = slugs_by_event(session, [e.id for e in events])
    topics = list(session.execute(select(Topic).order_by(Topic.position)).scalars())
    follows = tuple(t.slug for t in subscriber_topics(session=session, subscriber=sub))
    context = alert_context(
        language=sub.language,
        topics=topics,
        topic_slugs=follows,
        events=[(e, slugs[e.id]) for e in events],
        base_url=settings.base_url,
        day=utcnow().date(),
        links=click_linker(session, settings, utcnow().date().isoformat()),
    )
    rendered = render_digest(env, context, kind="alert")
    edition = Edition(
        segment_key="",
        format="email",
        frequency="instant",
        period=rows[0].period,
        language=sub.language,
        subject=rendered.subject,
        body_html=rendered.body_html,
        body_text=rendered.body_text,
        content_hash="",
    )
    first = min(rows, key=lambda d: d.id)
    return build_digest_email(settings=settings, delivery=first, edition=edition, subscriber=sub)
