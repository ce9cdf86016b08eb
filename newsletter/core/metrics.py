"""Prometheus metrics: in-process counters for what this process does, and outbox gauges
read from the database at scrape time (so they are right with workers anywhere)."""

from __future__ import annotations

import contextlib
import datetime as dt

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine, func, select

from newsletter.core.models import Bounce, Delivery, Feed, Subscriber, Suppression

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter(
    "newsletter_messages_total",
    "Delivery attempts by channel and result (sent, temporary, permanent).",
    ["channel", "result"],
    registry=REGISTRY,
)
SEND_SECONDS = Histogram(
    "newsletter_send_seconds",
    "Time to hand one message to its channel.",
    ["channel"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BOUNCES = Counter(
    "newsletter_bounces_total",
    "Mails received back by kind (hard, soft, complaint, unsubscribe, delayed, unknown, "
    "duplicate, refused, unreadable, too-large).",
    ["kind"],
    registry=REGISTRY,
)
BOUNCE_WEBHOOKS = Counter(
    "newsletter_bounce_webhooks_total",
    "Provider bounce webhook requests by provider and HTTP status answered.",
    ["provider", "status"],
    registry=REGISTRY,
)
FEED_POLLS = Counter(
    "newsletter_feed_polls_total",
    "Feed polls by result (new, not-modified, error).",
    ["result"],
    registry=REGISTRY,
)
WORKER_UP = Gauge(
    "newsletter_worker_up",
    "1 while this process's worker loop runs, 0 while it waits to be restarted.",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "newsletter_worker_restarts_total",
    "Times `serve` restarted its worker loop after it crashed.",
    registry=REGISTRY,
)
SCHEDULER_OVERDUE = Gauge(
    "newsletter_scheduler_overdue_seconds",
    "How late the earliest scheduled job is (0 when the scheduler keeps up).",
    registry=REGISTRY,
)
SCHEDULER_ERRORS = Counter(
    "newsletter_scheduler_jobstore_errors_total",
    "Scheduler wake-ups that failed on the job store and were retried.",
    registry=REGISTRY,
)


FEEDBACK_DAYS = 30


def feedback_counts(conn, since: dt.datetime) -> dict[str, int]:
    """What came back since `since`: bounces (hard and soft), complaints, readers disabled
    (and still disabled) and addresses suppressed for a bounce or a complaint. The
    dashboard shows them, /metrics exports them."""
    kinds = dict(
        conn.execute(
            select(Bounce.kind, func.count())
            .where(Bounce.received_at >= since, Bounce.kind.in_(["hard", "soft", "complaint"]))
            .group_by(Bounce.kind)
        ).all()
    )
    disabled = conn.execute(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == "disabled", Subscriber.disabled_at >= since)
    ).scalar_one()
    suppressed = conn.execute(
        select(func.count())
        .select_from(Suppression)
        .where(Suppression.created_at >= since, Suppression.reason.in_(["bounced", "complaint"]))
    ).scalar_one()
    return {
        "bounces": kinds.get("hard", 0) + kinds.get("soft", 0),
        "complaints": kinds.get("complaint", 0),
        "disabled": disabled,
        "suppressed": suppressed,
    }


class OutboxCollector:
    """Outbox depth by status and channel, and the age of the oldest queued row."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def collect(self):
        depth = GaugeMetricFamily(
            "newsletter_outbox_rows",
            "Outbox rows by channel and status.",
            labels=["channel", "status"],
        )
        oldest = GaugeMetricFamily(
            "newsletter_outbox_oldest_queued_seconds", "Age of the oldest queued row."
        )
        failing = GaugeMetricFamily("newsletter_feeds_failing", "Feeds whose last poll failed.")
        feedback = GaugeMetricFamily(
            "newsletter_feedback_last_30_days",
            "Bounces (hard and soft) and complaints received, readers disabled (still "
            "disabled) and addresses suppressed for a bounce or complaint, in the last 30 days.",
            labels=["what"],
        )
        try:
            with self.engine.connect() as conn:
                for channel, status, n in conn.execute(
                    select(Delivery.channel, Delivery.status, func.count()).group_by(
                        Delivery.channel, Delivery.status
                    )
                ):
                    depth.add_metric([channel, status], n)
                first = conn.execute(
                    select(func.min(Delivery.created_at)).where(Delivery.status == "queued")
                ).scalar()
                failing.add_metric(
                    [],
                    conn.execute(
                        select(func.count()).select_from(Feed).where(Feed.consecutive_failures > 0)
                    ).scalar_one(),
                )
                since = dt.datetime.now(dt.UTC) - dt.timedelta(days=FEEDBACK_DAYS)
                for what, n in feedback_counts(conn, since).items():
                    feedback.add_metric([what], n)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
            return
        if first is not None:
            first = first if first.tzinfo else first.replace(tzinfo=dt.UTC)
            oldest.add_metric([], max(0.0, (dt.datetime.now(dt.UTC) - first).total_seconds()))
        else:
            oldest.add_metric([], 0.0)
        yield depth
        yield oldest
        yield failing
        yield feedback


def render_metrics(engine: Engine, health=None) -> bytes:
    """This process's counters, then the outbox read from this app's database (collected
    per scrape: registering it would clash when a process holds two engines)."""
    if health is not None and health.scheduler_grace is not None:
        from newsletter.core.health import overdue_seconds

        # a scrape must not fail because the database is down
        with contextlib.suppress(Exception):
            SCHEDULER_OVERDUE.set(overdue_seconds(engine))
    return generate_latest(REGISTRY) + generate_latest(OutboxCollector(engine))
