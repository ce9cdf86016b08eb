"""Admin pages for topics (rules, live match check, retag); the events list is in
`admin_events`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session, select

from newsletter.core.models import Event, Topic
from newsletter.core.text import one_line
from newsletter.ingest.events import localised, retag
from newsletter.topics.catalogue import (
    TopicError,
    TopicIn,
    TopicUpdate,
    create_topic,
    delete_topic,
    event_counts,
    get_topic,
    list_topics,
    removal_impact,
    rules_summary,
    subscriber_count,
    update_topic,
)
from newsletter.topics.dry_run import dry_run
from newsletter.topics.matching import (
    MAX_KEYWORDS,
    RuleError,
    TopicRules,
    check_regex,
    check_terms,
)
from newsletter.topics.suggestions import suggest_keywords
from newsletter.web.admin.auth import (
    AdminDep,
    AdminRoute,
    CsrfDep,
    ReadFormDep,
    fragment,
    note,
    render,
    safe_next,
)
from newsletter.web.deps import SessionDep

router = APIRouter(route_class=AdminRoute)

CHECK_LIMIT = 2000  # most recent events the live check looks at
_SPLIT = re.compile(r"[\n,，]+")


def parse_terms(text: str) -> list[str]:
    """Keywords given one per line or comma-separated (de-duplicated in linear time:
    the form may hold any number of them)."""
    terms = (" ".join(part.split()) for part in _SPLIT.split(text or ""))
    return list(dict.fromkeys(t for t in terms if t))


@dataclass
class RulesForm:
    include: str = ""
    exclude: str = ""
    regex: str = ""

    @classmethod
    def of(cls, topic: Topic) -> RulesForm:
        rules = topic.rules or {}
        return cls(
            include="\n".join(rules.get("include") or []),
            exclude="\n".join(rules.get("exclude") or []),
            regex=rules.get("regex") or "",
        )

    def errors(self) -> dict[str, str]:
        """What is wrong with each field, in words an editor can act on."""
        errors: dict[str, str] = {}
        for key in ("include", "exclude"):
            terms = parse_terms(getattr(self, key))
            if len(terms) > MAX_KEYWORDS:  # before compiling any of them
                errors[key] = f"{len(terms)} keywords; at most {MAX_KEYWORDS} are allowed"
                continue
            for term in terms:
                try:
                    check_terms(key, [term])
                except RuleError as exc:
                    errors[key] = f"“{term[:40]}”: {exc}"
                    break
        regex = self.regex.strip()
        if regex:
            try:
                check_regex(regex)
            except RuleError as exc:
                errors["regex"] = str(exc)
        return errors

    def rules(self) -> dict[str, Any]:
        return {
            "include": parse_terms(self.include),
            "exclude": parse_terms(self.exclude),
            "regex": self.regex.strip() or None,
        }


def check_rules(session: Session, topic: Topic, form: RulesForm) -> dict[str, Any]:
    """Which stored events the rules in the form would give the topic, and why."""
    errors = form.errors()
    result: dict[str, Any] = {"errors": errors, "topic": topic}
    if errors:
        return result
    try:
        rules = TopicRules.compile(topic.slug, form.rules())
    except RuleError as exc:  # anything the per-field checks missed
        result["errors"] = {"rules": str(exc)}
        return result
    events = session.exec(
        select(Event).order_by(Event.occurred_on.desc(), Event.id.desc()).limit(CHECK_LIMIT)
    ).all()
    run = dry_run(session, rules, events, topic.id)
    row = lambda e, why: {"event": e, "title": localised(e.title, "en"), "why": why}  # noqa: E731
    matches = [{**row(h.event, h.why), "new": h.new} for h in run.hits]
    lost = [row(e, None) for e in run.lost]
    result.update(
        examined=len(events),
        limited=len(events) == CHECK_LIMIT,
        match_count=len(matches),
        new_count=sum(1 for m in matches if m["new"]),
        matches=matches[:50],
        lost_count=len(lost),
        lost=lost[:20],
    )
    return result


def _topic_or_404(session: Session, slug: str) -> Topic:
    try:
        return get_topic(session=session, slug=slug)
    except TopicError as exc:
        raise HTTPException(404, str(exc)) from exc


NEW_FIELDS = ("slug", "name_en", "name_zh", "description", "description_zh")
# the live check of the "New topic" form: not a slug (slugs start with a letter or digit)
NEW_CHECK = "/admin/topics/_new/check"


def _topics_page(
    request: Request,
    admin,
    session: Session,
    *,
    new: dict[str, str] | None = None,
    form: RulesForm | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    retagged: dict | None = None,
    created: Topic | None = None,
    deleted: str = "",
):
    topics = list_topics(session=session)
    counts = event_counts(session=session)
    rows = []
    for topic in topics:
        subs, hooks = subscriber_count(session=session, topic=topic)
        rules = topic.rules or {}
        rows.append(
            {
                "topic": topic,
                "events": counts.get(topic.id, 0),
                "subscribers": subs,
                "webhooks": hooks,
                "include": len(rules.get("include") or []),
                "exclude": len(rules.get("exclude") or []),
                "regex": rules.get("regex") or "",
            }
        )
    form = form or RulesForm()
    check = None
    if errors is not None:  # the form came back: show what its rules would match
        check = check_rules(session, _unsaved((new or {}).get("slug", "")), form)
    return render(
        request,
        "topics.html.j2",
        admin=admin,
        section="topics",
        status=status,
        rows=rows,
        retagged=retagged,
        new=new or dict.fromkeys(NEW_FIELDS, ""),
        form=form,
        errors=errors or {},
        check=check,
        new_check=NEW_CHECK,
        created=created,
        deleted=deleted,
    )


def _unsaved(slug: str) -> Topic:
    """The topic being created, for the live check (not stored: no event has it yet)."""
    return Topic(slug=slug.strip()[:64] or "new", name_en="", name_zh="")


@router.get("/topics")
def topics_page(
    request: Request,
    admin: AdminDep,
    session: SessionDep,
    examined: int | None = None,
    changed: int | None = None,
    kept: int | None = None,
    created: str = "",
    deleted: str = "",
):
    made = (
        session.exec(select(Topic).where(Topic.slug == created[:64])).first() if created else None
    )
    return _topics_page(
        request,
        admin,
        session,
        retagged=_report(examined, changed, kept),
        created=made,
        deleted=deleted[:64],
    )


@dataclass
class PostedTopic:
    """A topic's names and rules as posted by the create and edit forms."""

    names: dict[str, str]
    rules: RulesForm


def _posted_topic(
    name_en: Annotated[str, Form()] = "",
    name_zh: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    description_zh: Annotated[str, Form()] = "",
    include: Annotated[str, Form()] = "",
    exclude: Annotated[str, Form()] = "",
    regex: Annotated[str, Form()] = "",
) -> PostedTopic:
    names = {
        "name_en": name_en,
        "name_zh": name_zh,
        "description": description,
        "description_zh": description_zh,
    }
    return PostedTopic(names, RulesForm(include=include, exclude=exclude, regex=regex))


TopicForm = Annotated[PostedTopic, Depends(_posted_topic)]


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """A model's validation errors by form field (the rules' own ones under "rules")."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "rules"
        errors[key] = err["msg"].removeprefix("Value error, ")
    return errors


@router.post("/topics")
def topic_create(
    request: Request,
    admin: CsrfDep,
    session: SessionDep,
    posted: TopicForm,
    slug: Annotated[str, Form()] = "",
):
    new = {"slug": slug.strip(), **posted.names}
    form = posted.rules
    errors = form.errors()
    if not new["slug"]:
        errors["slug"] = "a slug is required: lower-case letters, digits and hyphens"
    for key in ("name_en", "name_zh"):
        if not one_line(new[key]):
            errors[key] = "a name is required"
    topic = None
    if not errors:
        try:
            topic = create_topic(session=session, topic_in=TopicIn(**new, rules=form.rules()))
        except ValidationError as exc:
            errors.update(_field_errors(exc))
        except TopicError as exc:  # the slug is taken
            errors["slug"] = str(exc)
    if topic is None:  # the form again with what was typed; nothing is stored
        session.rollback()
        return _topics_page(request, admin, session, new=new, form=form, errors=errors, status=422)
    note(session, admin, "topic.create", topic.slug, topic.name_en)
    session.commit()  # stored before the browser follows the redirect
    return RedirectResponse(f"/admin/topics?{urlencode({'created': topic.slug})}", status_code=303)


@router.post("/topics/_new/check")
def new_topic_check(
    request: Request,
    admin: ReadFormDep,
    session: SessionDep,
    slug: Annotated[str, Form()] = "",
    include: Annotated[str, Form()] = "",
    exclude: Annotated[str, Form()] = "",
    regex: Annotated[str, Form()] = "",
):
    form = RulesForm(include=include, exclude=exclude, regex=regex)
    topic = _unsaved(slug)
    return fragment(request, "topic_check.html.j2", check=check_rules(session, topic, form))


def _report(examined: int | None, changed: int | None, kept: int | None) -> dict | None:
    if examined is None:
        return None
    return {"examined": examined, "changed": changed or 0, "kept": kept or 0}


def _edit_page(
    request, admin, session, topic, *, names, form, errors, status=200, saved=False,
    retagged=None, delete_error="",
):  # fmt: skip
    return render(
        request,
        "topic_edit.html.j2",
        admin=admin,
        section="topics",
        status=status,
        topic=topic,
        names=names,
        form=form,
        errors=errors,
        saved=saved,
        retagged=retagged,
        check=check_rules(session, topic, form),
        suggestions=suggest_keywords(session=session, topic=topic),
        impact=removal_impact(session=session, topic=topic),
        delete_error=delete_error,
    )


@router.get("/topics/{slug}")
def topic_edit(
    request: Request,
    slug: str,
    admin: AdminDep,
    session: SessionDep,
    saved: int = 0,
    examined: int | None = None,
    changed: int | None = None,
    kept: int | None = None,
):
    topic = _topic_or_404(session, slug)
    names = {
        "name_en": topic.name_en,
        "name_zh": topic.name_zh,
        "description": topic.description,
        "description_zh": topic.description_zh,
    }
    return _edit_page(
        request,
        admin,
        session,
        topic,
        names=names,
        form=RulesForm.of(topic),
        errors={},
        saved=bool(saved),
        retagged=_report(examined, changed, kept),
    )


@router.post("/topics/{slug}")
def topic_save(
    request: Request,
    slug: str,
    admin: CsrfDep,
    session: SessionDep,
    posted: TopicForm,
):
    topic = _topic_or_404(session, slug)
    names, form = posted.names, posted.rules
    errors = form.errors()
    for key in ("name_en", "name_zh"):
        if not one_line(names[key]):
            errors[key] = "a name is required"
    update = None
    if not errors:
        try:
            update = TopicUpdate(**names, rules=form.rules())
        except ValidationError as exc:
            errors.update(_field_errors(exc))
    if update is None:
        # the form is shown again with what was typed; nothing is stored
        return _edit_page(
            request, admin, session, topic, names=names, form=form, errors=errors, status=422
        )
    update_topic(session=session, topic=topic, topic_in=update)
    note(session, admin, "topic.edit", topic.slug, rules_summary(topic.rules))
    return RedirectResponse(f"/admin/topics/{topic.slug}?saved=1", status_code=303)


@router.post("/topics/{slug}/check")
def topic_check(
    request: Request,
    slug: str,
    admin: ReadFormDep,
    session: SessionDep,
    include: Annotated[str, Form()] = "",
    exclude: Annotated[str, Form()] = "",
    regex: Annotated[str, Form()] = "",
):
    topic = _topic_or_404(session, slug)
    form = RulesForm(include=include, exclude=exclude, regex=regex)
    return fragment(request, "topic_check.html.j2", check=check_rules(session, topic, form))


@router.post("/topics/{slug}/delete")
def topic_delete(
    request: Request,
    slug: str,
    admin: CsrfDep,
    session: SessionDep,
    followed: Annotated[str, Form()] = "",
):
    """Delete a topic. While readers or webhooks follow it the domain refuses, unless the
    editor ticked the box that says it is dropped from their subscriptions."""
    topic = _topic_or_404(session, slug)
    impact = removal_impact(session=session, topic=topic)
    try:
        delete_topic(session=session, topic=topic, force=followed == "drop")
    except TopicError:
        session.rollback()
        topic = _topic_or_404(session, slug)
        return _edit_page(
            request, admin, session, topic,
            names={k: getattr(topic, k) for k in NEW_FIELDS[1:]},
            form=RulesForm.of(topic), errors={}, status=409,
            delete_error="Nothing was deleted: tick the box to confirm that the topic is "
            "dropped from the subscriptions of those who follow it.",
        )  # fmt: skip
    if impact.readers or impact.webhooks:
        detail = (
            f"dropped from the subscriptions of {impact.readers} reader(s) and "
            f"{impact.webhooks} webhook(s); {impact.events} event(s) lost the topic"
        )
    else:
        detail = f"nobody followed it; {impact.events} event(s) lost the topic"
    note(session, admin, "topic.delete", slug, detail)
    session.commit()  # stored before the browser follows the redirect
    return RedirectResponse(f"/admin/topics?{urlencode({'deleted': slug})}", status_code=303)


@router.post("/events/retag")
def events_retag(
    admin: CsrfDep,
    session: SessionDep,
    back: Annotated[str, Form()] = "",
):
    report = retag(session=session)
    note(
        session, admin, "events.retag", "", f"{report.examined} examined, {report.changed} changed"
    )
    target = safe_next(back)
    if target == "/admin/":
        target = "/admin/topics"
    query = urlencode(
        {"examined": report.examined, "changed": report.changed, "kept": report.kept_manual}
    )
    return RedirectResponse(f"{target.split('?')[0]}?{query}", status_code=303)
