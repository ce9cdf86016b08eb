"""Turning claimed webhook rows into sends: grouping, pacing per endpoint, outcomes."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from ..alerts import alert_title
from ..events import slugs_by_event
from ..models import Delivery, Event, Topic, WebhookEndpoint, utcnow
from ..webhooks import endpoint_secret
from .cards import PayloadError, event_items, render_messages
from .channels.base import PermanentDeliveryError, TemporaryDeliveryError
from .channels.webhook import WebhookChannel, prepare
from .outbox import Outcome, crashed

# messages per window (seconds) that each platform accepts from one webhook
PLATFORM_RATES = {
    "dingtalk": (20, 60.0),
    "wecom": (20, 60.0),
    "feishu": (5, 1.0),
    "slack": (1, 1.0),
    "discord": (5, 2.0),
    "teams": (4, 1.0),
}


class EndpointPacer:
    """Sliding-window limits per endpoint: a full window defers that endpoint only."""

    def __init__(self, rates: dict[str, tuple[int, float]] | None = None):
        self.rates = PLATFORM_RATES if rates is None else rates
        self.sent: dict[int, deque[float]] = {}

    def reserve(self, endpoint_id: int, platform: str, n: int) -> float:
        """Record n sends now and return 0, or return the seconds to wait (nothing recorded)."""
        if platform not in self.rates:
            return 0.0
        limit, window = self.rates[platform]
        now = time.monotonic()
        q = self.sent.setdefault(endpoint_id, deque())
        while q and now - q[0] >= window:
            q.popleft()
        if len(q) + n > max(limit, n):
            return max(0.05, window - (now - q[0]) if q else window)
        q.extend([now] * n)
        return 0.0


@dataclass
class WebhookGroup:
    endpoint_id: int
    platform: str
    url: str
    secret: str | None
    delivery_ids: list[int]
    messages: list[dict] = field(default_factory=list)


def prepare_groups(session: Session, settings, env, deliveries: list[Delivery], edition_of):
    groups: list[WebhookGroup] = []
    ready: list[Outcome] = []
    if not deliveries:
        return groups, ready
    endpoints = {
        e.id: e
        for e in session.execute(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id.in_({d.endpoint_id for d in deliveries})
            )
        ).scalars()
    }
    alerts: dict[int, list[Delivery]] = {}
    for d in deliveries:
        ep = endpoints.get(d.endpoint_id)
        if ep is None:
            ready.append(Outcome(d.id, "cancelled", "webhook endpoint is gone"))
        elif not ep.enabled:
            ready.append(Outcome(d.id, "held", f"endpoint disabled: {ep.disabled_reason}"))
        elif d.edition_id is not None:
            try:
                edition = edition_of(session, d.edition_id)
                groups.append(_group(ep, [d.id], list(edition.payload or [])))
            except SQLAlchemyError:
                raise  # the database, not this row: the batch is retried
            except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
                ready += crashed([d.id], exc, endpoint_id=ep.id)
        else:
            alerts.setdefault(ep.id, []).append(d)
    for endpoint_id, rows in alerts.items():
        ep = endpoints[endpoint_id]
        event_ids = [int(d.period.split(":", 1)[1]) for d in rows]
        try:
            messages = alert_messages(session, settings, env, ep, event_ids)
        except PayloadError as exc:
            ready += [Outcome(d.id, "permanent", str(exc), endpoint_id=ep.id) for d in rows]
            continue
        except SQLAlchemyError:
            raise  # the database, not this row: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            ready += crashed([d.id for d in rows], exc, endpoint_id=ep.id)
            continue
        if not messages:
            ready += [Outcome(d.id, "cancelled", "the events are gone") for d in rows]
            continue
        groups.append(_group(ep, [d.id for d in rows], messages))
    return groups, ready


def _group(ep: WebhookEndpoint, ids: list[int], messages: list[dict]) -> WebhookGroup:
    return WebhookGroup(ep.id, ep.platform, ep.url, endpoint_secret(ep), ids, messages)


def alert_messages(
    session: Session, settings, env, ep: WebhookEndpoint, event_ids: list[int]
) -> list[dict]:
    events = list(
        session.execute(
            select(Event).where(Event.id.in_(event_ids)).order_by(Event.occurred_on, Event.id)
        ).scalars()
    )
    if not events:
        return []
    slugs = slugs_by_event(session, [e.id for e in events])
    topics = list(session.execute(select(Topic).order_by(Topic.position)).scalars())
    items = event_items([(e, slugs[e.id]) for e in events], topics, ep.language)
    names = {t.slug: (t.name_zh if ep.language == "zh" else t.name_en) for t in topics}
    first_topics = [names[s] for s in slugs[events[0].id] if s in names]
    return render_messages(
        env,
        platform=ep.platform,
        kind="alert",
        lang=ep.language,
        title=alert_title(ep.language, first_topics, len(events)),
        items=items,
        archive_url=settings.base_url.rstrip("/") + "/archive",
        timestamp=utcnow().isoformat(timespec="seconds"),
    )


async def send_group(
    channel: WebhookChannel, pacer: EndpointPacer, group: WebhookGroup
) -> list[Outcome]:
    wait = pacer.reserve(group.endpoint_id, group.platform, len(group.messages))
    if wait:
        return [
            Outcome(i, "deferred", "rate limit", retry_after=wait, endpoint_id=group.endpoint_id)
            for i in group.delivery_ids
        ]
    started = utcnow()

    def each(result: str, error: str | None = None, code: int | None = None, **kw) -> list[Outcome]:
        return [
            Outcome(i, result, error, code, started_at=started, endpoint_id=group.endpoint_id, **kw)
            for i in group.delivery_ids
        ]

    answer = ""
    try:
        for n, payload in enumerate(group.messages, start=1):
            # the same id on every retry lets a receiver drop duplicates
            request = prepare(
                group.platform,
                group.url,
                payload,
                secret=group.secret,
                msg_id=f"msg_{group.delivery_ids[0]}_{n}",
            )
            answer = await channel.post(group.platform, request)
    except TemporaryDeliveryError as exc:
        return each("temporary", str(exc), exc.code, retry_after=exc.retry_after)
    except PermanentDeliveryError as exc:
        return each("permanent", str(exc), exc.code, disable=exc.disable)
    except Exception as exc:  # noqa: BLE001 - a bug here fails these rows, not the batch
        return crashed(group.delivery_ids, exc, started_at=started, endpoint_id=group.endpoint_id)
    return each("sent", None, 200, message_id=answer[:200])
