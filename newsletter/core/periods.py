"""Digest periods: `2025-07` (monthly), `2025-W31` (weekly), `2025-07-31` (daily)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

FREQUENCIES = ("instant", "daily", "weekly", "monthly")
DIGEST_FREQUENCIES = ("daily", "weekly", "monthly")

_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")
_WEEK = re.compile(r"^([0-9]{4})-W([0-9]{2})$")
# ASCII digits only: "２０２５-07" must not become a second key for the same period
_DAY = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")


class PeriodError(ValueError):
    """A period string that does not fit its frequency."""


# The one window of dates the service accepts, for events (`occurred_on`) and digest
# periods alike: nothing this old is news, nothing this far ahead is real, and dates
# near the ends of the calendar (9999-12-31) break the arithmetic of every period.
EARLIEST_DATE = dt.date(1990, 1, 1)
FUTURE_DAYS = 366


def date_window(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """(first, last) accepted date, both included: 1990-01-01 to a year from today."""
    today = today or dt.datetime.now(dt.UTC).date()
    return EARLIEST_DATE, today + dt.timedelta(days=FUTURE_DAYS)


def check_date(day: dt.date, what: str = "date") -> dt.date:
    """The day, or ValueError saying it is outside the window."""
    first, last = date_window()
    if not first <= day <= last:
        raise ValueError(
            f"{what} {day.isoformat()} is outside the accepted dates, {first} to {last}"
        )
    return day


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
    """The period `key` names for `frequency`; PeriodError (with an example of the right
    form) for anything else, including periods outside the date window."""
    key = key.strip()
    first, last = date_window()
    outside = PeriodError(f"period {key} is outside the accepted dates, {first} to {last}")
    try:
        period = _parse(frequency, key)
    except PeriodError:
        raise
    except (ValueError, OverflowError) as exc:  # e.g. 9999-12-31 has no next day
        raise outside from exc
    if not first <= period.start <= last:
        raise outside
    return period


def _parse(frequency: str, key: str) -> Period:
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
            monday = dt.date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1) if m else None
        except ValueError:
            monday = None
        if monday is None:
            raise PeriodError(
                f"a weekly period is an ISO week YYYY-Www, e.g. 2025-W31, not {key!r}"
            )
        return Period(frequency, key, monday, monday + dt.timedelta(days=7))
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
