"""Declarative rosters (`subscribers/*.yaml|*.csv`): an idempotent upsert, reported per entry.

A roster lists `subscribers:` (email, name, language, timezone, frequency, topics) and
`teams:` (chat webhooks). Entries absent from the rosters are left alone: a roster
adds and updates, it never deletes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlmodel import Session

from newsletter.audience.subscribers import (
    SubscriberError,
    SubscriberIn,
    add_subscriber,
    address_key,
    get_subscriber,
    is_suppressed,
    update_subscriber,
)
from newsletter.core.errors import reason
from newsletter.ingest.files import SAFE_LOADER
from newsletter.topics.catalogue import TopicError


class RosterError(ValueError):
    """A roster file that cannot be read as a whole."""


@dataclass
class EntryResult:
    where: str  # "example.yaml subscribers[2]"
    who: str
    action: str  # created | updated | unchanged | invalid | skipped
    reason: str = ""


@dataclass
class SyncReport:
    entries: list[EntryResult] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for e in self.entries if e.action == action)

    @property
    def ok(self) -> bool:
        return self.count("invalid") == 0


def roster_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RosterError(f"{path} is neither a file nor a folder")
    return sorted(p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml", ".csv"))


def read_roster(path: Path) -> dict[str, list[Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RosterError(f"{path.name}: cannot read: {exc}") from exc
    if path.suffix.lower() == ".csv":
        rows = [
            {k.strip().lower(): (v or "").strip() for k, v in r.items() if k}
            for r in csv.DictReader(io.StringIO(text))
        ]
        return {"subscribers": rows, "teams": []}
    try:
        data = yaml.load(text, Loader=SAFE_LOADER) or {}
    except yaml.YAMLError as exc:
        raise RosterError(f"{path.name}: invalid YAML: {exc}") from exc
    except RecursionError as exc:
        raise RosterError(f"{path.name}: invalid YAML: nested too deeply") from exc
    if not isinstance(data, dict):
        raise RosterError(f"{path.name}: a roster is a mapping with subscribers: and teams:")
    unknown = set(data) - {"subscribers", "teams"}
    if unknown:
        raise RosterError(f"{path.name}: unknown sections: {', '.join(sorted(unknown))}")
    out = {}
    for key in ("subscribers", "teams"):
        items = data.get(key) or []
        if not isinstance(items, list):
            raise RosterError(f"{path.name}: {key} must be a list")
        out[key] = items
    return out


def sync_subscriber(session: Session, where: str, entry: Any) -> EntryResult:
    who = str(entry.get("email", "?")) if isinstance(entry, dict) else "?"
    try:
        if not isinstance(entry, dict):
            raise SubscriberError("entry must be a mapping")
        sub_in = SubscriberIn.model_validate(entry)
        with session.begin_nested():
            existing = get_subscriber(session=session, email=sub_in.email)
            if existing is None:
                if is_suppressed(session=session, email=sub_in.email):
                    return EntryResult(where, sub_in.email, "skipped", "address is suppressed")
                add_subscriber(session=session, sub_in=sub_in, source="roster")
                return EntryResult(where, sub_in.email, "created")
            if existing.status != "active":
                return EntryResult(
                    where, sub_in.email, "skipped", f"subscriber is {existing.status}"
                )
            changed = update_subscriber(session=session, subscriber=existing, sub_in=sub_in)
            return EntryResult(where, sub_in.email, "updated" if changed else "unchanged")
    except (ValidationError, SubscriberError, TopicError) as exc:
        return EntryResult(where, who, "invalid", reason(exc))


def sync_rosters(*, session: Session, path: Path, team_sync=None) -> SyncReport:
    """Apply every roster under `path`; each entry succeeds or fails on its own."""
    report = SyncReport()
    seen: dict[str, str] = {}
    for file in roster_files(path):
        roster = read_roster(file)
        for n, entry in enumerate(roster["subscribers"], start=1):
            where = f"{file.name} subscribers[{n}]"
            raw = str(entry.get("email", "")) if isinstance(entry, dict) else ""
            email = address_key(raw) if raw.strip() else ""
            if email and email in seen:
                report.entries.append(
                    EntryResult(where, email, "invalid", f"also listed at {seen[email]}")
                )
                continue
            seen[email] = where
            report.entries.append(sync_subscriber(session, where, entry))
        for n, entry in enumerate(roster["teams"], start=1):
            where = f"{file.name} teams[{n}]"
            if team_sync is None:
                name = entry.get("name", "?") if isinstance(entry, dict) else "?"
                report.entries.append(
                    EntryResult(
                        where, str(name), "skipped", "chat webhooks are not enabled in this version"
                    )
                )
            else:
                report.entries.append(team_sync(session, where, entry))
    return report
