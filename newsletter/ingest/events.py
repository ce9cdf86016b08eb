"""Events: validation of what a source gives us, de-duplication, tagging and queries."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator
from sqlalchemy import func, or_
from sqlmodel import Session, select

from newsletter.core.models import Event, EventTopic, Topic
from newsletter.core.options import EVENTS_HIGHEST_DELETED, get_value, set_value
from newsletter.core.periods import check_date, date_window, parse_period
from newsletter.core.text import clean_block, normalise_url, one_line, title_key
from newsletter.topics.catalogue import compiled_rules, topics_by_slug
from newsletter.topics.matching import TopicRules, match_topics

LANGS = ("zh", "en")
REGION = re.compile(r"^[a-z][a-z0-9-]{1,31}$")
LANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,4})?$")  # fits the 8-character column
MAX_URL = 2000
MAX_TITLE = 500
MAX_SUMMARY = 5000


def _localised(value: Any, *, name: str, block: bool) -> dict[str, str]:
    """{language: cleaned text}; a plain string is keyed "_" (the event's own language).

    Plain strings and mappings go through the same cleaning, whatever the source.
    """
    clean = clean_block if block else one_line
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        texts = {"_": clean(value)}
    elif isinstance(value, dict):
        texts = {}
        for lang, text in value.items():
            if not isinstance(lang, str) or not LANGUAGE.match(lang):
                raise ValueError(f"{name} has an invalid language code {lang!r}")
            if text is None:
                continue
            if not isinstance(text, str):
                raise ValueError(f"{name}.{lang} must be a string")
            texts[lang] = clean(text)
    else:
        raise ValueError(f"{name} must be a string or a mapping of language to string")
    if name == "title" and texts and not any(texts.values()):
        raise ValueError(f"{name} is blank (only spaces or control characters)")
    return {k: v for k, v in texts.items() if v}


def _prepare_source(data: dict[str, Any]) -> None:
    """`source` as a string, a {language: name} mapping, or `source_zh` / `source_en` keys
    (CSV columns): stored as `sources` per language plus `source`, the event's own."""
    flat = {
        key.partition("_")[2]: data.pop(key)
        for key in [k for k in data if isinstance(k, str) and k.startswith("source_")]
    }
    stored = data.pop("sources", None)
    if isinstance(stored, dict):
        flat = {**stored, **flat}
    elif stored is not None:
        raise ValueError("sources must be a mapping of language to name")
    given = data.get("source")
    if isinstance(given, dict):
        flat = {**given, **flat}
        given = None
    names = _localised(flat or None, name="source", block=False)
    if not names:
        if isinstance(data.get("source"), dict):
            data.pop("source")
        return
    data["sources"] = names
    if not given:
        data["source"] = names.get(data["language"]) or next(iter(names.values()))


class EventIn(BaseModel):
    """One event as a source gives it; `title`/`summary` may be per-language mappings."""

    title: dict[str, str]
    summary: dict[str, str] = Field(default_factory=dict)
    url: str
    source: str = ""
    # the source's name per language; `source` is then the one in the event's language
    sources: dict[str, str] = Field(default_factory=dict)
    region: str = "global"
    occurred_on: dt.date
    language: str = "en"
    importance: int | None = Field(default=None, ge=1, le=5)
    pinned: bool = False
    topics: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("an event must be a mapping of fields")
        data = dict(data)
        language = data.get("language") or "en"
        if not isinstance(language, str):
            raise ValueError("language must be a string")
        data["language"] = language.strip().lower()
        for name, block in (("title", False), ("summary", True)):
            texts = _localised(data.get(name), name=name, block=block)
            if "_" in texts:  # a plain string is in the event's own language
                texts = {data["language"]: texts.pop("_"), **texts}
            data[name] = texts
        _prepare_source(data)
        if data.get("pinned") in ("", None):
            data.pop("pinned", None)
        topics = data.get("topics")
        if isinstance(topics, str):
            data["topics"] = [t for t in re.split(r"[,;|\s]+", topics) if t] or None
        elif topics == []:
            data["topics"] = None
        for key in ("source", "region", "url"):
            if data.get(key) is None:
                data.pop(key, None)
        if data.get("importance") in ("", None):
            data["importance"] = None
        return data

    @field_validator("title")
    @classmethod
    def _title(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("title is required")
        for lang, text in v.items():
            if len(text) > MAX_TITLE:
                raise ValueError(f"title.{lang} is longer than {MAX_TITLE} characters")
        return v

    @field_validator("summary")
    @classmethod
    def _summary(cls, v: dict[str, str]) -> dict[str, str]:
        for lang, text in v.items():
            if len(text) > MAX_SUMMARY:
                raise ValueError(f"summary.{lang} is longer than {MAX_SUMMARY} characters")
        return v

    @field_validator("occurred_on")
    @classmethod
    def _occurred_on(cls, v: dt.date) -> dt.date:
        return check_date(v, "occurred_on")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if len(v) > MAX_URL:
            raise ValueError(f"url is longer than {MAX_URL} characters")
        return normalise_url(v)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return one_line(v)[:200]

    @field_validator("sources")
    @classmethod
    def _sources(cls, v: dict[str, str]) -> dict[str, str]:
        return {lang: text[:200] for lang, text in v.items()}

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        v = v.strip().lower()
        if not REGION.match(v):
            raise ValueError("region must be a lower-case code such as global or china")
        return v

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if not LANGUAGE.match(v):
            raise ValueError(f"language {v!r} is not a language code such as zh or en")
        return v


@dataclass
class AddResult:
    event: Event | None
    duplicate_of: Event | None = None

    @property
    def created(self) -> bool:
        return self.event is not None


def find_duplicate(*, session: Session, url: str, key: str, day: dt.date) -> Event | None:
    """An stored event with the same URL, or the same normalised title on the same day."""
    return session.exec(
        select(Event).where(
            or_(Event.url == url, (Event.title_key == key) & (Event.occurred_on == day))
        )
    ).first()


def primary_title(title: dict[str, str], language: str) -> str:
    return title.get(language) or next(iter(title.values()))


def add_event(
    *,
    session: Session,
    event_in: EventIn,
    rules: list[TopicRules] | None = None,
    feed_id: int | None = None,
) -> AddResult:
    """Store a new event and tag it, or return the stored duplicate untouched."""
    key = title_key(primary_title(event_in.title, event_in.language))
    dup = find_duplicate(session=session, url=event_in.url, key=key, day=event_in.occurred_on)
    if dup is not None:
        return AddResult(event=None, duplicate_of=dup)
    manual = topics_by_slug(session=session, slugs=event_in.topics) if event_in.topics else []
    event = Event(
        **event_in.model_dump(exclude={"topics"}),
        title_key=key,
        manual_topics=bool(manual),
        feed_id=feed_id,
        search_text=search_text(event_in.title, event_in.summary),
    )
    fresh = _id_never_used(session)
    if fresh is not None:
        event.id = fresh
    session.add(event)
    session.flush()
    if manual:
        set_manual_topics(session=session, event=event, topics=manual)
    else:
        tag_event(session=session, event=event, rules=rules or compiled_rules(session=session))
    return AddResult(event=event)


def search_text(title: dict[str, str], summary: dict[str, str]) -> str:
    """What the admin search looks in: every title and summary, case-folded."""
    return "\n".join([*title.values(), *summary.values()]).casefold()


class EventConflict(ValueError):
    """An edit would make the event a duplicate of another one."""


def update_event(*, session: Session, event: Event, event_in: EventIn) -> list[str]:
    """An editor's change to a stored event; returns the names of the fields that changed.

    Topics given are kept as chosen by hand (re-running the rules leaves them alone); no
    topics given puts the event back in the rules' hands, on its new text. Raises
    EventConflict (nothing written) if the new URL, or title and day, is another event's.
    """
    key = title_key(primary_title(event_in.title, event_in.language))
    other = session.exec(
        select(Event).where(
            Event.id != event.id,
            or_(
                Event.url == event_in.url,
                (Event.title_key == key) & (Event.occurred_on == event_in.occurred_on),
            ),
        )
    ).first()
    if other is not None:
        same = "URL" if other.url == event_in.url else "title on the same day"
        raise EventConflict(f"event {other.id} has the same {same}")
    manual = topics_by_slug(session=session, slugs=event_in.topics) if event_in.topics else []
    before = set(topic_slugs(session=session, event=event))
    values = event_in.model_dump(exclude={"topics", "pinned"})
    changed = [k for k, v in values.items() if getattr(event, k) != v]
    for name, value in values.items():
        setattr(event, name, value)
    event.title_key = key
    event.search_text = search_text(event.title, event.summary)
    was_manual = event.manual_topics
    session.add(event)
    session.flush()
    if manual:
        set_manual_topics(session=session, event=event, topics=manual)
    else:
        event.manual_topics = False
        session.add(event)
        tag_event(session=session, event=event, rules=compiled_rules(session=session))
    if set(topic_slugs(session=session, event=event)) != before or was_manual != bool(manual):
        changed.append("topics")
    return changed


def delete_event(*, session: Session, event: Event) -> None:
    """Remove a stored event and its topics (the outbox's rows are the caller's)."""
    if _reuses_ids(session):
        highest = int(get_value(session, EVENTS_HIGHEST_DELETED) or 0)
        set_value(session, EVENTS_HIGHEST_DELETED, str(max(highest, event.id)))
    for match in session.exec(select(EventTopic).where(EventTopic.event_id == event.id)):
        session.delete(match)
    session.flush()
    session.delete(event)
    session.flush()


def _reuses_ids(session: Session) -> bool:
    """SQLite gives a new row the highest id + 1, so the id of the newest event, once
    deleted, would go to the next one (PostgreSQL's sequences never go back)."""
    return session.get_bind().dialect.name == "sqlite"


def _id_never_used(session: Session) -> int | None:
    """The id for a new event when the database would reuse a deleted one, else None.
    Alerts (`event:<id>` in their idempotency keys), the outbox history and the audit
    log name events by id: a reused id would inherit them (readers who had the deleted
    event's alert would never be alerted to the new one)."""
    if not _reuses_ids(session):
        return None
    highest = int(get_value(session, EVENTS_HIGHEST_DELETED) or 0)
    if not highest:
        return None
    stored = session.execute(select(func.max(Event.id))).scalar() or 0
    return highest + 1 if highest >= stored else None


def set_manual_topics(*, session: Session, event: Event, topics: list[Topic]) -> None:
    """An admin's choice replaces whatever the rules said."""
    _replace_topics(session, event, {t.id: ("manual", "manual") for t in topics})
    event.manual_topics = True
    session.add(event)


def tag_event(*, session: Session, event: Event, rules: list[TopicRules]) -> set[str]:
    """Re-run the rules on one event; returns the topic slugs it now has."""
    found = match_topics(rules, event.title, event.summary)
    ids = dict(session.exec(select(Topic.slug, Topic.id).where(Topic.slug.in_(list(found)))).all())
    _replace_topics(session, event, {ids[s]: ("rule", why) for s, why in found.items()})
    return set(found)


def _replace_topics(session: Session, event: Event, wanted: dict[int, tuple[str, str]]) -> None:
    current = {
        m.topic_id: m
        for m in session.exec(select(EventTopic).where(EventTopic.event_id == event.id))
    }
    for topic_id, row in current.items():
        if topic_id not in wanted:
            session.delete(row)
    for topic_id, (source, reason) in wanted.items():
        existing = current.get(topic_id)
        if existing is None:
            session.add(
                EventTopic(event_id=event.id, topic_id=topic_id, source=source, reason=reason)
            )
        elif (existing.source, existing.reason) != (source, reason):
            existing.source, existing.reason = source, reason
            session.add(existing)
    session.flush()


@dataclass
class RetagReport:
    examined: int = 0
    changed: int = 0
    kept_manual: int = 0


def retag(*, session: Session, include_manual: bool = False) -> RetagReport:
    """Re-run the rules on stored events; manual choices are kept unless include_manual."""
    rules = compiled_rules(session=session)
    report = RetagReport()
    for event in session.exec(select(Event).order_by(Event.id)).all():
        if event.manual_topics and not include_manual:
            report.kept_manual += 1
            continue
        report.examined += 1
        before = set(topic_slugs(session=session, event=event))
        event.manual_topics = False
        session.add(event)
        if tag_event(session=session, event=event, rules=rules) != before:
            report.changed += 1
    return report


def topic_matches(*, session: Session, event: Event) -> list[tuple[Topic, EventTopic]]:
    return list(
        session.exec(
            select(Topic, EventTopic)
            .join(EventTopic, EventTopic.topic_id == Topic.id)
            .where(EventTopic.event_id == event.id)
            .order_by(Topic.position, Topic.slug)
        )
    )


def slugs_by_event(session: Session, event_ids: list[int]) -> dict[int, list[str]]:
    """Each event's topic slugs, in topic display order (one query for many events)."""
    slugs: dict[int, list[str]] = {i: [] for i in event_ids}
    if event_ids:
        for event_id, slug in session.execute(
            select(EventTopic.event_id, Topic.slug)
            .join(Topic, Topic.id == EventTopic.topic_id)
            .where(EventTopic.event_id.in_(list(event_ids)))
            .order_by(Topic.position, Topic.slug)
        ):
            slugs[event_id].append(slug)
    return slugs


def topic_slugs(*, session: Session, event: Event) -> list[str]:
    return [t.slug for t, _ in topic_matches(session=session, event=event)]


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First day and first day after a `YYYY-MM` month (within the date window)."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    period = parse_period("monthly", month)
    return period.start, period.end


def list_events(
    *,
    session: Session,
    topic: str | None = None,
    month: str | None = None,
    region: str | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
) -> list[Event]:
    query = select(Event)
    if topic:
        (topic_row,) = topics_by_slug(session=session, slugs=[topic])
        query = query.join(EventTopic, EventTopic.event_id == Event.id).where(
            EventTopic.topic_id == topic_row.id
        )
    if month:
        start, end = month_bounds(month)
    if start:
        query = query.where(Event.occurred_on >= start)
    if end:
        query = query.where(Event.occurred_on < end)
    if region:
        query = query.where(Event.region == region.strip().lower())
    return list(session.exec(query.order_by(Event.occurred_on, Event.id)))


def latest_event_day(*, session: Session) -> dt.date | None:
    """The newest event date within the date window (a default period for pages; a row
    stored before the window existed, e.g. dated 9999-12-31, is not a period to offer)."""
    first, last = date_window()
    return session.exec(
        select(func.max(Event.occurred_on)).where(
            Event.occurred_on >= first, Event.occurred_on <= last
        )
    ).one()


def get_event(*, session: Session, event_id: int) -> Event | None:
    return session.get(Event, event_id)


def set_pinned(*, session: Session, event: Event, pinned: bool) -> None:
    """Pin an event among the editor's picks (every monthly reader gets it), or unpin it.

    Editions already stored keep what they were rendered with; a period planned after
    this shows the change."""
    event.pinned = pinned
    session.add(event)


def event_as_dict(*, session: Session, event: Event) -> dict[str, Any]:
    """Every field of an event, with its topics, as plain JSON-able data."""
    return {
        "id": event.id,
        "title": event.title,
        "summary": event.summary,
        "url": event.url,
        "source": event.source,
        "sources": event.sources or {},
        "region": event.region,
        "occurred_on": event.occurred_on.isoformat(),
        "language": event.language,
        "importance": event.importance,
        "pinned": event.pinned,
        "topics": topic_slugs(session=session, event=event),
        "manual_topics": event.manual_topics,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


#: digests that open with the editor's picks
PICKS_FREQUENCIES = ("monthly",)


def is_pick(event: Event) -> bool:
    """An editor's pick: pinned by an admin, or of the highest importance."""
    return bool(event.pinned) or (event.importance or 0) >= 5


def localised(texts: dict[str, str], language: str) -> str:
    """The text in the reader's language, else the other one we have."""
    if language in texts:
        return texts[language]
    for lang in LANGS:
        if lang in texts:
            return texts[lang]
    return next(iter(texts.values()), "")
