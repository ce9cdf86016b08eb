"""What every provider's webhook reader shares: the event it hands on, the refusal it
raises, and the small checks each applies (JSON body, signed time, our token)."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

from newsletter.core.text import one_line
from newsletter.feedback.parse import Parsed

_TOKEN_SHAPE = re.compile(r"[0-9A-Za-z-]{20,40}")


class Refused(Exception):
    """The request is not taken: an HTTP status and the reason the sender is told."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None):
        reason = one_line(reason)  # it is logged, and may quote what the sender sent
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass
class Event:
    """One bounce or complaint a provider reported: `key` is the provider's id for it,
    the same on every retry; `parsed` is what it says, in the shape a parsed mail has."""

    key: str
    parsed: Parsed


@dataclass
class Batch:
    events: list[Event] = field(default_factory=list)
    ignored: int = 0  # events of other kinds (delivered, opened, ...): nothing to do
    note: str = ""


def json_body(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON ({exc})") from exc
    except RecursionError as exc:  # nested deeper than the parser goes: no provider's
        raise Refused(400, "the body is not JSON we read (nested too deep)") from exc


def check_age(signed_at: dt.datetime, now: dt.datetime, max_age: dt.timedelta, skew: dt.timedelta):
    """Refuse a request signed too long ago (a replay) or too far in the future."""
    if signed_at < now - max_age:
        raise Refused(403, f"signed at {signed_at:%Y-%m-%d %H:%M:%S} UTC, too long ago")
    if signed_at > now + skew:
        raise Refused(403, f"signed at {signed_at:%Y-%m-%d %H:%M:%S} UTC, in the future")


def unix_time(value: object, what: str) -> dt.datetime:
    try:
        seconds = float(str(value))
        return dt.datetime.fromtimestamp(seconds, dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise Refused(400, f"{what} is not a Unix time") from exc


def tokens(*values: object) -> list[str]:
    """Our delivery tokens among values a provider handed back (strings of their shape)."""
    return [v for v in values if isinstance(v, str) and _TOKEN_SHAPE.fullmatch(v)]


def message_id(value: object) -> str | None:
    """A Message-ID in angle brackets (some providers drop them)."""
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        return None
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def obj(value: object) -> dict:
    """A JSON object, or {} for anything else (a provider's field may be missing or odd)."""
    return value if isinstance(value, dict) else {}


def text(value: object, limit: int = 480) -> str:
    return value[:limit] if isinstance(value, str) else ""


def address(value: object) -> list[str]:
    if isinstance(value, str) and "@" in value and len(value) <= 320:
        return [value.strip()]
    return []
