"""Turning claimed webhook rows into sends: grouping, pacing per endpoint, outcomes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from newsletter.audience.endpoints import endpoint_secret
from newsletter.core import platforms
from newsletter.core.models import DeliveryRow, Event, Topic, WebhookEndpoint, utcnow
from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.webhook import WebhookChannel, prepare
from newsletter.delivery.outbox import Outcome, crashed
from newsletter.ingest.events import slugs_by_event
from newsletter.rendering.cards import PayloadError, encode, event_items, render_messages
from newsletter.rendering.labels import alert_title


class EndpointPacer:
    """Sliding-window limits per endpoint: a full window defers that endpoint only.

    The limits are each platform's documented rate (`platforms.RATES`)."""

    def __init__(self, rates: dict[str, tuple[int, float]] | None = None):
        self.rates = platforms.RATES if rates is None else rates
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
    messages: list[bytes] = field(default_factory=list)  # encoded cards (cards.encode)


class BatchCards:
    """The cards of one claimed batch, each rendered and encoded once per (platform,
    language, events) and shared by every endpoint that gets it; the batch's events,
    their topics and the topic names are loaded in one query each."""

    def __init__(self, session: Session, settings, env, event_ids: set[int]):
        self.settings, self.env = settings, env
        self.events: dict[int, Event] = {}
        if event_ids:
            self.events = {
                e.id: e
                for e in session.execute(select(Event).where(Event.id.in_(event_ids))).scalars()
            }
        self.slugs = slugs_by_event(session, list(self.events))
        self.topics = list(session.execute(select(Topic).order_by(Topic.position)).scalars())
        self.timestamp = utcnow().isoformat(timespec="seconds")
        self._cards: dict[tuple, list[bytes] | Exception] = {}

    def alert(self, platform: str, lang: str, event_ids: list[int]) -> list[bytes]:
        """The encoded messages of one endpoint's alert; [] if the events are gone."""
        events = sorted(
            (self.events[i] for i in set(event_ids) if i in self.events),
            key=lambda e: (e.occurred_on, e.id),
        )
        if not events:
            return []
        key = (platform, lang, tuple(e.id for e in events))
        cards = self._cards.get(key)
        if cards is None:
            try:
                cards = [encode(m) for m in self._render(platform, lang, events)]
            except SQLAlchemyError:
                raise
            except Exception as exc:  # noqa: BLE001 - kept, and raised for each endpoint
                cards = exc
            self._cards[key] = cards
        if isinstance(cards, Exception):
            raise cards
        return cards

    def _render(self, platform: str, lang: str, events: list[Event]) -> list[dict]:
        items = event_items([(e, self.slugs.get(e.id, [])) for e in events], self.topics, lang)
        names = {t.slug: (t.name_zh if lang == "zh" else t.name_en) for t in self.topics}
        first_topics = [names[s] for s in self.slugs.get(events[0].id, []) if s in names]
        return render_messages(
            self.env,
            platform=platform,
            kind="alert",
            lang=lang,
            title=alert_title(lang, first_topics, len(events)),
            items=items,
            archive_url=self.settings.base_url.rstrip("/") + "/archive",
            timestamp=self.timestamp,
        )

    def edition(self, edition) -> list[bytes]:
        key = ("edition", edition.id)
        cards = self._cards.get(key)
        if cards is None:
            cards = self._cards[key] = [encode(p) for p in edition.payload or []]
        return cards  # type: ignore[return-value]


def _event_id(d: DeliveryRow) -> int:
    """The event of an alert row (its period is "event:<id>")."""
    kind, _, value = (d.period or "").partition(":")
    if kind != "event" or not value.isdigit():
        raise ValueError(f"alert row {d.id} has no event in its period ({d.period!r})")
    return int(value)


def prepare_groups(session: Session, settings, env, deliveries: Sequence[DeliveryRow], edition_of):
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
    alerts: dict[int, list[tuple[DeliveryRow, int]]] = {}
    editions: list[tuple[WebhookEndpoint, DeliveryRow]] = []
    for d in deliveries:
        ep = endpoints.get(d.endpoint_id)
        if ep is None:
            ready.append(Outcome(d.id, "cancelled", "webhook endpoint is gone"))
        elif not ep.enabled:
            ready.append(Outcome(d.id, "held", f"endpoint disabled: {ep.disabled_reason}"))
        elif d.edition_id is not None:
            editions.append((ep, d))
        else:
            try:
                alerts.setdefault(ep.id, []).append((d, _event_id(d)))
            except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
                ready += crashed([d.id], exc, endpoint_id=ep.id)
    cards = BatchCards(session, settings, env, {e for rows in alerts.values() for _, e in rows})
    for ep, d in editions:
        try:
            groups.append(_group(ep, [d.id], cards.edition(edition_of(session, d.edition_id))))
        except SQLAlchemyError:
            raise  # the database, not this row: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            ready += crashed([d.id], exc, endpoint_id=ep.id)
    for endpoint_id, rows in alerts.items():
        ep = endpoints[endpoint_id]
        ids = [d.id for d, _ in rows]
        try:
            messages = cards.alert(ep.platform, ep.language, [e for _, e in rows])
        except PayloadError as exc:
            ready += [Outcome(i, "permanent", str(exc), endpoint_id=ep.id) for i in ids]
            continue
        except SQLAlchemyError:
            raise  # the database, not this row: the batch is retried
        except Exception as exc:  # noqa: BLE001 - one broken row must not stop the batch
            ready += crashed(ids, exc, endpoint_id=ep.id)
            continue
        if not messages:
            ready += [Outcome(i, "cancelled", "the events are gone") for i in ids]
            continue
        groups.append(_group(ep, ids, messages))
    return groups, ready


def _group(ep: WebhookEndpoint, ids: list[int], messages: list[bytes]) -> WebhookGroup:
    return WebhookGroup(ep.id, ep.platform, ep.url, endpoint_secret(ep), ids, messages)


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
