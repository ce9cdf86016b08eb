"""What the outbox holds, as admins read it: deliveries found by a filter a page at a time
(keyset, newest first), each named by its recipient and what it carries, with its attempts.

Read-only: retrying and cancelling are `outbox.retry` and `outbox.cancel`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, select
from sqlmodel import Session

from newsletter.audience.subscribers import get_subscriber
from newsletter.core.models import (
    Delivery,
    DeliveryAttempt,
    Edition,
    Event,
    Subscriber,
    WebhookEndpoint,
)
from newsletter.core.periods import parse_period
from newsletter.delivery.outbox import KINDS, DeliveryFilter, DeliveryStatus

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def recipient_ids(session: Session, recipient: str) -> tuple[int | None, int | None]:
    """(subscriber id, endpoint id) of a reader's address or a team endpoint's name;
    ValueError naming what was not found."""
    name = recipient.strip()
    if "@" in name:
        sub = get_subscriber(session=session, email=name)
        if sub is None:
            raise ValueError(f"no reader has the address {name!r}")
        return sub.id, None
    endpoint_id = session.execute(
        select(WebhookEndpoint.id).where(WebhookEndpoint.name == name)
    ).scalar()
    if endpoint_id is None:
        raise ValueError(f"no team endpoint is named {name!r} (a reader is found by address)")
    return None, endpoint_id


def build_filter(
    session: Session,
    *,
    statuses: Sequence[str] = (),
    channel: str | None = None,
    recipient: str | None = None,
    kinds: Sequence[str] = (),
    created_from: dt.date | None = None,
    created_to: dt.date | None = None,
) -> DeliveryFilter:
    """An outbox filter from what an admin typed: a recipient by address or endpoint name,
    a period of UTC days (both ends included). ValueError with the reason otherwise."""
    if created_from and created_to and created_from > created_to:
        raise ValueError(f"the period starts ({created_from}) after it ends ({created_to})")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}; kinds: {', '.join(KINDS)}")
    sub_id, ep_id = (
        recipient_ids(session, recipient) if recipient and recipient.strip() else (None, None)
    )
    start = dt.datetime.combine(created_from, dt.time(), tzinfo=dt.UTC) if created_from else None
    end = (
        dt.datetime.combine(created_to + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        if created_to
        else None
    )
    return DeliveryFilter(
        statuses=tuple(statuses), channel=channel or None, subscriber_id=sub_id,
        endpoint_id=ep_id, created_from=start, created_before=end, kinds=tuple(kinds),
    )  # fmt: skip


@dataclass
class DeliveryLine:
    """One outbox row as a person reads it."""

    id: int
    recipient: str  # the reader's address, the team's endpoint name, or "removed ..."
    recipient_kind: str  # subscriber|endpoint|removed
    subscriber_id: int | None
    endpoint_id: int | None
    carries: str  # "July 2025 monthly digest (zh)", "alert: <event title>", ...
    channel: str
    kind: str
    period: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    sent_at: dt.datetime | None


@dataclass
class AttemptLine:
    started_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str
    status_code: int | None
    error: str | None
    worker: str | None


@dataclass
class DeliveryPage:
    rows: list[DeliveryLine]
    next_before: int | None  # pass as `before` for the next (older) page; None: last page


_COLUMNS = (
    Delivery.id,
    Delivery.channel,
    Delivery.kind,
    Delivery.period,
    Delivery.status,
    Delivery.attempts,
    Delivery.last_error,
    Delivery.created_at,
    Delivery.next_attempt_at,
    Delivery.sent_at,
    Delivery.subscriber_id,
    Delivery.endpoint_id,
    Subscriber.email,
    Subscriber.language,
    WebhookEndpoint.name,
    WebhookEndpoint.language,
    Edition.language,
    Edition.event_ids,
)


def _query():
    return (
        select(*_COLUMNS)
        .select_from(Delivery)
        .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .outerjoin(WebhookEndpoint, WebhookEndpoint.id == Delivery.endpoint_id)
        .outerjoin(Edition, Edition.id == Delivery.edition_id)
    )


def find(
    session: Session,
    match: DeliveryFilter,
    *,
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> DeliveryPage:
    """One page of the deliveries `match` selects, newest first; `before` is the keyset
    (the smallest id of the previous page), so page 1000 costs what page 1 costs."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = _query().where(*match.conditions())
    if before is not None:
        query = query.where(Delivery.id < before)
    rows = session.execute(query.order_by(Delivery.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    lines = _lines(session, rows[:limit])
    return DeliveryPage(lines, lines[-1].id if more and lines else None)


def get(session: Session, delivery_id: int) -> DeliveryLine | None:
    rows = session.execute(_query().where(Delivery.id == delivery_id)).all()
    lines = _lines(session, rows)
    return lines[0] if lines else None


def named(session: Session, delivery_ids: Sequence[int]) -> dict[int, DeliveryLine]:
    """Deliveries by id, each named for people as on the outbox page."""
    if not delivery_ids:
        return {}
    rows = session.execute(_query().where(Delivery.id.in_(set(delivery_ids)))).all()
    return {line.id: line for line in _lines(session, rows)}


def attempts(session: Session, delivery_id: int) -> list[AttemptLine]:
    """Every try of one delivery, oldest first."""
    rows = session.execute(
        select(
            DeliveryAttempt.started_at,
            DeliveryAttempt.finished_at,
            DeliveryAttempt.outcome,
            DeliveryAttempt.status_code,
            DeliveryAttempt.error,
            DeliveryAttempt.worker,
        )
        .where(DeliveryAttempt.delivery_id == delivery_id)
        .order_by(DeliveryAttempt.id)
    ).all()
    return [AttemptLine(*r) for r in rows]


def _alert_event(period: str, event_ids: Any) -> int | None:
    if period.startswith("event:") and period[6:].isdigit():
        return int(period[6:])
    if isinstance(event_ids, list) and event_ids and isinstance(event_ids[0], int):
        return event_ids[0]
    return None


def _lines(session: Session, rows: Sequence[Any]) -> list[DeliveryLine]:
    """Rows of `_query()` named for people; event titles of alerts in one query."""
    wanted = {e for r in rows if r[2] == "alert" and (e := _alert_event(r[3], r[17])) is not None}
    titles: dict[int, dict[str, str]] = {}
    if wanted:
        titles = dict(
            session.execute(select(Event.id, Event.title).where(Event.id.in_(wanted))).all()
        )
    out = []
    for r in rows:
        (id_, channel, kind, period, status, tries, error, created, due, sent, sub_id, ep_id,
         email, sub_lang, ep_name, ep_lang, ed_lang, event_ids) = r  # fmt: skip
        if email is not None:
            recipient, recipient_kind = email, "subscriber"
        elif ep_name is not None:
            recipient, recipient_kind = ep_name, "endpoint"
        else:
            recipient = "removed reader" if channel == "email" else "removed team endpoint"
            recipient_kind = "removed"
        language = ed_lang or sub_lang or ep_lang or ""
        event_id = _alert_event(period, event_ids) if kind == "alert" else None
        title = titles.get(event_id) if event_id is not None else None
        out.append(
            DeliveryLine(
                id=id_, recipient=recipient, recipient_kind=recipient_kind,
                subscriber_id=sub_id, endpoint_id=ep_id,
                carries=describe(kind, period, language, title, event_ids),
                channel=channel, kind=kind, period=period, status=status, attempts=tries,
                last_error=error, created_at=created, next_attempt_at=due, sent_at=sent,
            )
        )  # fmt: skip
    return out


def describe(
    kind: str,
    period: str,
    language: str = "",
    event_title: dict[str, str] | None = None,
    event_ids: Any = None,
) -> str:
    """What a delivery carries, in words: "July 2025 monthly digest (zh)",
    "alert: <event title>", "confirmation email"."""
    lang = f" ({language})" if language else ""
    if kind == "confirm":
        return "confirmation email" + lang
    if kind == "alert":
        if event_title:
            title = event_title.get(language) or next(iter(event_title.values()), "")
            more = len(event_ids) - 1 if isinstance(event_ids, list) and len(event_ids) > 1 else 0
            return f"alert: {title}" + (f" (and {more} more)" if more else "")
        return "alert" + lang
    if kind.startswith("digest-"):
        frequency = kind.removeprefix("digest-")
        return f"{_period_words(frequency, period)} {frequency} digest{lang}"
    return f"{kind} {period}".strip() + lang


def _period_words(frequency: str, period: str) -> str:
    try:
        return parse_period(frequency, period).label("en")
    except ValueError:
        return period


@dataclass(frozen=True)
class EndpointHealth:
    """How a team endpoint's messages fare, from its outbox rows (the endpoint itself keeps
    its state, failure count and disabled reason)."""

    last_success_at: dt.datetime | None  # when its latest message was delivered
    queued: int  # waiting to be sent
    held: int  # waiting for the endpoint to be enabled

    @property
    def waiting(self) -> int:
        """What removing the endpoint cancels."""
        return self.queued + self.held


NO_HEALTH = EndpointHealth(last_success_at=None, queued=0, held=0)


def endpoint_health(session: Session, endpoint_ids: Sequence[int]) -> dict[int, EndpointHealth]:
    """Each endpoint's health in one grouped query (an endpoint without rows is absent:
    use `NO_HEALTH`)."""
    if not endpoint_ids:
        return {}

    def count(status: DeliveryStatus):
        return func.sum(case((Delivery.status == status.value, 1), else_=0))

    rows = session.execute(
        select(
            Delivery.endpoint_id,
            func.max(case((Delivery.status == DeliveryStatus.SENT.value, Delivery.sent_at))),
            count(DeliveryStatus.QUEUED),
            count(DeliveryStatus.HELD),
        )
        .where(Delivery.endpoint_id.in_(sorted(set(endpoint_ids))))
        .group_by(Delivery.endpoint_id)
    ).all()
    return {
        ep_id: EndpointHealth(
            last_success_at=_aware(last) if last is not None else None,
            queued=int(queued or 0),
            held=int(held or 0),
        )
        for ep_id, last, queued, held in rows
    }


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
