"""Settings an owner changes at run time from the admin UI, stored in the `option` table.

Environment settings (settings.py) say what a deployment allows; an option is a choice
made within that, recorded with the admin change that made it (audit log).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Option, utcnow

# per-reader click counts (clicks are counted at all only with NEWSLETTER_CLICK_TRACKING)
CLICKS_PER_READER = "clicks.per_reader"


# SQLite only: the highest id of a deleted event (see ingest.events.add_event)
EVENTS_HIGHEST_DELETED = "events.highest_deleted_id"


def get_value(session: Session, name: str) -> str | None:
    return session.execute(select(Option.value).where(Option.name == name)).scalar()


def set_value(session: Session, name: str, value: str) -> None:
    row = session.get(Option, name)
    if row is None:
        row = Option(name=name)
    row.value = value
    row.updated_at = utcnow()
    session.add(row)


def get_flag(session: Session, name: str) -> bool:
    return get_value(session, name) == "1"


def set_flag(session: Session, name: str, on: bool) -> None:
    set_value(session, name, "1" if on else "0")
