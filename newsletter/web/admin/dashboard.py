"""The deliveries dashboard: outbox counts per channel and a 14-day chart (inline SVG)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from newsletter.core.metrics import FEEDBACK_DAYS, feedback_counts
from newsletter.core.models import Delivery, utcnow
from newsletter.delivery import history
from newsletter.delivery import stats as delivery_stats
from newsletter.delivery.outbox import DeliveryStatus, last_errors, status_counts

DAYS = 14

# (key, label, what it counts) in display order
STATUS_COLUMNS = [
    ("sent", "Sent", "delivered"),
    ("failed", "Failed", "gave up after the last try"),
    ("retrying", "Retrying", "queued again after a failed try"),
    ("queued", "Queued", "waiting for a first try or in flight"),
    ("suppressed", "Suppressed", "address on the suppression list"),
    ("held", "Held", "webhook disabled, waiting"),
]

# (key, label, what it counts) of what came back, over the last FEEDBACK_DAYS days
FEEDBACK_COLUMNS = [
    ("bounces", "Bounces", "hard and soft"),
    ("complaints", "Complaints", "reported as spam"),
    ("disabled", "Readers disabled", "by bounces or a complaint"),
    ("suppressed", "Addresses suppressed", "for a bounce or a complaint"),
]

# attempt outcome -> (legend label, css class)
SERIES = [
    ("sent", "Delivered", "s-sent"),
    ("temporary", "Temporary error (retried)", "s-temp"),
    ("permanent", "Permanent error", "s-perm"),
]


def channel_rows(engine: Engine) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One row per channel with a count per dashboard column, and the totals."""
    by_channel = status_counts(engine)
    with engine.connect() as conn:
        retrying = dict(
            conn.execute(
                select(Delivery.channel, func.count())
                .where(Delivery.status == DeliveryStatus.QUEUED, Delivery.attempts > 0)
                .group_by(Delivery.channel)
            ).all()
        )
    rows = []
    totals = {key: 0 for key, _, _ in STATUS_COLUMNS} | {"total": 0}
    for channel in sorted(by_channel):
        counts = by_channel[channel]
        retry = retrying.get(channel, 0)
        row: dict[str, Any] = {
            "channel": channel,
            "sent": counts.get("sent", 0),
            "failed": counts.get("failed", 0),
            "retrying": retry,
            "queued": counts.get("queued", 0) - retry + counts.get("sending", 0),
            "suppressed": counts.get("suppressed", 0),
            "held": counts.get("held", 0),
            "total": sum(counts.values()),
        }
        for key in totals:
            totals[key] += row[key]
        rows.append(row)
    return rows, totals


def daily_attempts(engine: Engine, today: dt.date) -> dict[dt.date, dict[str, int]]:
    """{day: {outcome: attempts}} for the last DAYS days (UTC), every day present."""
    first = today - dt.timedelta(days=DAYS - 1)
    out: dict[dt.date, dict[str, int]] = {first + dt.timedelta(days=i): {} for i in range(DAYS)}
    for d, outcome, n in delivery_stats.attempts_by_outcome(engine, first):
        if d in out:
            out[d][outcome] = out[d].get(outcome, 0) + n
    return out


def nice_step(peak: int, ticks: int = 4) -> int:
    """A 1-2-5 step so that `ticks` steps cover the peak."""
    raw = max(peak, 1) / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for m in (1, 2, 5, 10):
        if m * magnitude >= raw:
            return max(1, int(m * magnitude))
    return int(10 * magnitude)  # pragma: no cover


@dataclass
class Chart:
    width: int = 1040
    height: int = 260
    left: int = 48
    right: int = 12
    top: int = 18
    bottom: int = 34
    bars: list[dict[str, Any]] = field(default_factory=list)
    grid: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    totals: list[dict[str, Any]] = field(default_factory=list)
    empty: bool = True
    total: int = 0

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom


def build_chart(days: dict[dt.date, dict[str, int]], today: dt.date) -> Chart:
    chart = Chart()
    peak = max((sum(v.values()) for v in days.values()), default=0)
    step = nice_step(peak)
    ymax = step * 4
    plot_h = chart.plot_bottom - chart.top
    slot = (chart.width - chart.left - chart.right) / len(days)
    bar_w = round(slot * 0.58, 1)
    for i in range(5):
        value = step * i
        y = round(chart.plot_bottom - plot_h * value / ymax, 1)
        chart.grid.append({"y": y, "value": value})
    for i, (day, outcomes) in enumerate(sorted(days.items())):
        x = round(chart.left + i * slot + (slot - bar_w) / 2, 1)
        cx = round(chart.left + i * slot + slot / 2, 1)
        label = "Today" if day == today else f"{day.day} {day:%b}"
        chart.labels.append({"x": cx, "text": label, "weekend": day.weekday() >= 5})
        y = float(chart.plot_bottom)
        total = 0
        for key, name, css in SERIES:
            n = outcomes.get(key, 0)
            if not n:
                continue
            h = plot_h * n / ymax
            y -= h
            total += n
            chart.bars.append(
                {
                    "x": x,
                    "y": round(y, 1),
                    "w": bar_w,
                    "h": round(h, 1),
                    "css": css,
                    "title": f"{day:%a %d %b}: {n} {name.lower()}",
                }
            )
        if total:
            chart.totals.append({"x": cx, "y": round(y - 5, 1), "value": total})
        chart.total += total
    chart.empty = chart.total == 0
    return chart


def failed_attempts(engine: Engine, limit: int = 8) -> list[tuple[int, str, str, str | None]]:
    """The newest failed attempts, each delivery named by its recipient and what it
    carries (as on the outbox page), never by its internal key."""
    errors = last_errors(engine, limit=limit)
    with Session(engine) as session:
        lines = history.named(session, [delivery_id for delivery_id, *_ in errors])
    out = []
    for delivery_id, _key, outcome, message in errors:
        line = lines.get(delivery_id)
        name = f"{line.carries} to {line.recipient}" if line else "a removed delivery"
        out.append((delivery_id, name, outcome, message))
    return out


def dashboard_data(*, engine: Engine) -> dict[str, Any]:
    now = utcnow()
    today = now.date()
    rows, totals = channel_rows(engine)
    days = daily_attempts(engine, today)
    first = min(days)
    finished = totals["sent"] + totals["failed"]
    with engine.connect() as conn:
        feedback = feedback_counts(conn, now - dt.timedelta(days=FEEDBACK_DAYS))
    return {
        "success_rate": round(100 * totals["sent"] / finished, 1) if finished else None,
        "columns": STATUS_COLUMNS,
        "series": SERIES,
        "channels": rows,
        "totals": totals,
        "chart": build_chart(days, today),
        "range_label": f"{first:%d %b} – {today:%d %b %Y} (UTC)",
        "errors": failed_attempts(engine),
        "feedback_columns": FEEDBACK_COLUMNS,
        "feedback": feedback,
        "feedback_days": FEEDBACK_DAYS,
        "generated_at": now.strftime("%Y-%m-%d %H:%M UTC"),
    }
