"""Which stored events would these rules give a topic? The one answer the API's rules check
and the admin's topic editor both show, before anything is saved.

An event whose topics an editor chose by hand keeps them: rules neither add nor drop a
topic there (as `ingest.events.retag` does), so such an event is never "new" or "lost".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from newsletter.core.models import Event, EventTopic
from newsletter.topics.matching import TopicRules, event_fields


@dataclass
class Hit:
    event: Event
    why: str
    tagged: bool  # the topic has this event now
    new: bool  # retagging with these rules would add the topic


@dataclass
class DryRun:
    examined: int
    hits: list[Hit]
    lost: list[Event]  # tagged by the current rules, not matched by these


def dry_run(
    session: Session, rules: TopicRules, events: Sequence[Event], topic_id: int | None
) -> DryRun:
    tagged: dict[int, str] = {}
    if topic_id is not None:
        tagged = dict(
            session.exec(
                select(EventTopic.event_id, EventTopic.source).where(
                    EventTopic.topic_id == topic_id
                )
            ).all()
        )
    hits: list[Hit] = []
    lost: list[Event] = []
    for event in events:
        why = rules.explain(event_fields(event.title, event.summary))
        if why:
            new = event.id not in tagged and not event.manual_topics
            hits.append(Hit(event, why, event.id in tagged, new))
        elif tagged.get(event.id) == "rule" and not event.manual_topics:
            lost.append(event)
    return DryRun(len(events), hits, lost)
