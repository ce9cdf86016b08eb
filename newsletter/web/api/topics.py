"""/api/v1/topics: topics, their rules, and a dry run of rules against stored events."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response
from sqlmodel import Session

from newsletter.core.models import Topic
from newsletter.ingest.events import list_events
from newsletter.topics.catalogue import (
    TopicError,
    create_topic,
    delete_topic,
    event_counts,
    get_topic,
    list_topics,
    rules_summary,
    subscriber_count,
    update_topic,
)
from newsletter.topics.dry_run import dry_run
from newsletter.topics.matching import TopicRules
from newsletter.topics.suggestions import suggest_keywords
from newsletter.web.api.common import admin_router, errors, note, status_on
from newsletter.web.api.models import (
    SLUG_PATTERN,
    RuleMatchPublic,
    RulesCheckIn,
    RulesCheckPublic,
    RulesPublic,
    SuggestionPublic,
    SuggestionsPublic,
    TopicChange,
    TopicCreate,
    TopicPublic,
    TopicsPublic,
)
from newsletter.web.deps import AdminDep, SessionDep, role

router = admin_router("/topics", "topics")

SlugPath = Annotated[str, Path(max_length=64, pattern=SLUG_PATTERN)]


def topic_public(session: Session, topic: Topic, events: int | None = None) -> TopicPublic:
    subs, hooks = subscriber_count(session=session, topic=topic)
    if events is None:
        events = event_counts(session=session).get(topic.id, 0)
    return TopicPublic(
        **topic.model_dump(exclude={"rules"}),
        rules=RulesPublic(**(topic.rules or {})),
        events=events,
        subscribers=subs,
        webhooks=hooks,
    )


def topic_or_404(session: Session, slug: str) -> Topic:
    with status_on(404, TopicError):
        return get_topic(session=session, slug=slug)


@router.get("", response_model=TopicsPublic, summary="List topics")
def read_topics(session: SessionDep) -> TopicsPublic:
    counts = event_counts(session=session)
    data = [topic_public(session, t, counts.get(t.id, 0)) for t in list_topics(session=session)]
    return TopicsPublic(data=data, count=len(data))


@router.post(
    "",
    response_model=TopicPublic,
    status_code=201,
    summary="Create a topic",
    responses=errors(409, 422),
)
def add_topic(session: SessionDep, admin: AdminDep, topic_in: TopicCreate) -> TopicPublic:
    with status_on(409, TopicError):  # the only refusal: the slug is taken
        topic = create_topic(session=session, topic_in=topic_in)
    note(session, admin, "topic.create", topic.slug, topic.name_en)
    return topic_public(session, topic, 0)


@router.post(
    "/match",
    response_model=RulesCheckPublic,
    openapi_extra=role("viewer"),
    summary="Which stored events would these rules match?",
    responses=errors(404, 422),
)
def check_rules(session: SessionDep, check: RulesCheckIn) -> RulesCheckPublic:
    rules = TopicRules.compile(check.slug or "_", dict(check.rules))
    events = list_events(session=session, month=check.month, region=check.region)
    topic = topic_or_404(session, check.slug) if check.slug else None
    run = dry_run(session, rules, events, topic.id if topic else None)
    return RulesCheckPublic(
        examined=run.examined,
        matched=len(run.hits),
        events=[
            RuleMatchPublic(
                id=h.event.id,
                title=h.event.title,
                occurred_on=h.event.occurred_on,
                reason=h.why,
                tagged=h.tagged if topic else None,
                new=h.new if topic else None,
            )
            for h in run.hits[: check.limit]
        ],
        dropped=sorted(e.id for e in run.lost),
    )


@router.get(
    "/{slug}", response_model=TopicPublic, summary="Read a topic", responses=errors(404, 422)
)
def read_topic(session: SessionDep, slug: SlugPath) -> TopicPublic:
    return topic_public(session, topic_or_404(session, slug))


@router.get(
    "/{slug}/suggestions",
    response_model=SuggestionsPublic,
    summary="Keywords suggested by events added to the topic by hand",
    description="Frequent terms of events an admin put in the topic that its rules do not "
    "match, leaving out terms common across all events.",
    responses=errors(404, 422),
)
def read_suggestions(session: SessionDep, slug: SlugPath) -> SuggestionsPublic:
    found = suggest_keywords(session=session, topic=topic_or_404(session, slug))
    return SuggestionsPublic(
        manual=found.manual,
        missed=found.missed,
        data=[SuggestionPublic(**vars(s)) for s in found.terms],
    )


@router.patch(
    "/{slug}",
    response_model=TopicPublic,
    summary="Change a topic (run POST /events/retag after changing rules)",
    responses=errors(404, 422),
)
def change_topic(
    session: SessionDep, admin: AdminDep, slug: SlugPath, change: TopicChange
) -> TopicPublic:
    topic = update_topic(session=session, topic=topic_or_404(session, slug), topic_in=change)
    note(session, admin, "topic.edit", topic.slug, rules_summary(topic.rules))
    return topic_public(session, topic)


@router.delete(
    "/{slug}",
    status_code=204,
    summary="Remove a topic",
    description="Refused with 409 while subscribers or webhooks follow it, unless `force`, "
    "which also drops it from their subscriptions.",
    responses=errors(404, 409, 422),
)
def remove_topic(
    session: SessionDep,
    admin: AdminDep,
    slug: SlugPath,
    force: Annotated[bool, Query(description="Remove even if followed.")] = False,
) -> Response:
    topic = topic_or_404(session, slug)
    readers, hooks = subscriber_count(session=session, topic=topic)
    with status_on(409, TopicError):  # the only refusal: still followed
        delete_topic(session=session, topic=topic, force=force)
    note(session, admin, "topic.delete", topic.slug, deleted_detail(readers, hooks))
    return Response(status_code=204)


def deleted_detail(readers: int, hooks: int) -> str:
    """What a topic's removal did to those who followed it, for the audit log."""
    if not readers and not hooks:
        return "nobody followed it"
    return (
        f"dropped from the subscriptions of {readers} reader(s) and {hooks} webhook(s); "
        "its events stay"
    )
