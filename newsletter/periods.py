"""Digest periods: `2025-07` (monthly), `2025-W31` (weekly), `2025-07-31` (daily)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

FREQUENCIES = ("instant", "daily", "weekly", "monthly")
DIGEST_FREQUENCIES = ("daily", "weekly", "monthly")

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


class PeriodError(ValueError):
    """A period string that does not fit its frequency."""


@dataclass(frozen=True)
class Period:
    """A half-open range of days [start, end) that a digest covers."""

    frequency: str
    key: str
    start: dt.date
    end: dt.date

    def label(self, language: str) -> str:
        """How the period is named in a subject line."""
        if self.frequency == "monthly":
            if language == "zh":
                return f"{self.start.year}年{self.start.month}月"
            return self.start.strftime("%B %Y")
        if self.frequency == "weekly":
            year, week, _ = self.start.isocalendar()
            last = self.end - dt.timedelta(days=1)
            if language == "zh":
                return f"{year}年第{week}周（{self.start.month}月{self.start.day}日–{last.month}月{last.day}日）"
            return f"week {week}, {year} ({self.start:%d %b}–{last:%d %b})"
        if language == "zh":
            return f"{self.start.year}年{self.start.month}月{self.start.day}日"
        return f"{self.start.day} {self.start:%B %Y}"


def parse_period(frequency: str, key: str) -> Period:
    key = key.strip()
    if frequency == "monthly":
        m = _MONTH.match(key)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise PeriodError(f"a monthly period is YYYY-MM, e.g. 2025-07, not {key!r}")
        start = dt.date(int(m.group(1)), int(m.group(2)), 1)
        end = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return Period(frequency, key, start, end)
    if frequency == "weekly":
        m = _WEEK.match(key)
        try:
            start = dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1) if m else None
        except ValueError:
            start = None
        if start is None:
            raise PeriodError(
                f"a weekly period is an ISO week YYYY-Www, e.g. 2025-W31, not {key!r}"
            )
        return Period(frequency, key, start, start + dt.timedelta(days=7))
    if frequency == "daily":
        try:
            day = dt.date.fromisoformat(key) if _DAY.match(key) else None
        except ValueError:
            day = None
        if day is None:
            raise PeriodError(f"a daily period is YYYY-MM-DD, e.g. 2025-07-31, not {key!r}")
        return Period(frequency, key, day, day + dt.timedelta(days=1))
    raise PeriodError(
        f"frequency must be one of {', '.join(DIGEST_FREQUENCIES)}, not {frequency!r}"
    )


def period_containing(frequency: str, day: dt.date) -> Period:
    if frequency == "monthly":
        return parse_period(frequency, f"{day:%Y-%m}")
    if frequency == "weekly":
        year, week, _ = day.isocalendar()
        return parse_period(frequency, f"{year}-W{week:02d}")
    return parse_period(frequency, day.isoformat())


def previous_period(frequency: str, today: dt.date) -> Period:
    """The last complete period before `today` (what a digest sent today covers)."""
    return period_containing(
        frequency, period_containing(frequency, today).start - dt.timedelta(days=1)
    )
