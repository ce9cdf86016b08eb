"""`newsletter topics ...`: topics and their matching rules."""

from __future__ import annotations

import json

import typer
from pydantic import ValidationError
from rich.table import Table

from newsletter.cli.common import console, fail, say_empty, state
from newsletter.cli.groups import command_group
from newsletter.core.errors import reason as validation_message
from newsletter.topics.catalogue import (
    TopicError,
    TopicIn,
    TopicUpdate,
    create_topic,
    delete_topic,
    event_counts,
    get_topic,
    list_topics,
    subscriber_count,
    update_topic,
)

app = command_group("Topics readers follow, and the rules that match events to them.")


def split_terms(values: list[str] | None) -> list[str]:
    """Terms from repeated options, each of which may hold a comma-separated list."""
    terms: list[str] = []
    for value in values or []:
        terms += [t.strip() for t in value.replace("，", ",").split(",") if t.strip()]
    return terms


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Show every topic with its rules and how many events it has."""
    with state(ctx).session() as session:
        counts = event_counts(session=session)
        topics = list_topics(session=session)
        if fmt == "json":
            rows = [
                {
                    "slug": t.slug,
                    "name_en": t.name_en,
                    "name_zh": t.name_zh,
                    "description": t.description,
                    "rules": t.rules,
                    "events": counts.get(t.id, 0),
                }
                for t in topics
            ]
            console.print_json(json.dumps(rows, ensure_ascii=False))
            return
        if fmt != "table":
            fail("--format must be table or json")
        if not topics:
            say_empty(
                "topics",
                "newsletter topics add robotics --name-en Robotics --name-zh 机器人 "
                '--include "robot*,机器人"',
            )
            return
        table = Table("slug", "name (en / zh)", "events", "include", "exclude", "regex")
        for t in topics:
            table.add_row(
                t.slug,
                f"{t.name_en} / {t.name_zh}",
                str(counts.get(t.id, 0)),
                ", ".join(t.rules.get("include", [])),
                ", ".join(t.rules.get("exclude", [])),
                t.rules.get("regex") or "",
            )
        console.print(table)


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Short id, e.g. robotics."),
    name_en: str = typer.Option(..., "--name-en", help="English name."),
    name_zh: str = typer.Option(..., "--name-zh", help="Chinese name."),
    description: str = typer.Option("", "--description", help="One line shown to readers."),
    description_zh: str = typer.Option(
        "", "--description-zh", help="The line shown on the Chinese pages."
    ),
    include: list[str] = typer.Option(
        None, "--include", help="Keywords or phrases (repeat or comma-separate)."
    ),
    exclude: list[str] = typer.Option(None, "--exclude", help="Keywords that veto the topic."),
    regex: str | None = typer.Option(None, "--regex", help="Optional regular expression."),
) -> None:
    """Create a topic. Run `newsletter events retag` to apply it to stored events."""
    try:
        topic_in = TopicIn(
            slug=slug,
            name_en=name_en,
            name_zh=name_zh,
            description=description,
            description_zh=description_zh,
            rules={
                "include": split_terms(include),
                "exclude": split_terms(exclude),
                "regex": regex,
            },
        )
    except ValidationError as exc:
        fail(validation_message(exc))
    with state(ctx).session() as session:
        try:
            topic = create_topic(session=session, topic_in=topic_in)
        except TopicError as exc:
            fail(str(exc))
    console.print(  # once committed, like every command's report
        f"Added topic {topic.slug}. Run `newsletter events retag` to tag stored events."
    )


@app.command("edit")
def edit_cmd(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Topic to change."),
    name_en: str | None = typer.Option(None, "--name-en"),
    name_zh: str | None = typer.Option(None, "--name-zh"),
    description: str | None = typer.Option(None, "--description"),
    description_zh: str | None = typer.Option(None, "--description-zh"),
    include: list[str] = typer.Option(None, "--include", help="Replace the include list."),
    add_include: list[str] = typer.Option(None, "--add-include", help="Add include terms."),
    remove_include: list[str] = typer.Option(None, "--remove-include", help="Drop include terms."),
    exclude: list[str] = typer.Option(None, "--exclude", help="Replace the exclude list."),
    add_exclude: list[str] = typer.Option(None, "--add-exclude", help="Add exclude terms."),
    remove_exclude: list[str] = typer.Option(None, "--remove-exclude", help="Drop exclude terms."),
    regex: str | None = typer.Option(None, "--regex", help="Set the regex."),
    no_regex: bool = typer.Option(False, "--no-regex", help="Remove the regex."),
) -> None:
    """Change a topic's names or rules."""
    with state(ctx).session() as session:
        try:
            topic = get_topic(session=session, slug=slug)
        except TopicError as exc:
            fail(str(exc))
        rules = {k: list(v) if isinstance(v, list) else v for k, v in topic.rules.items()}
        rules_changed = False
        for key, replace, add, remove in (
            ("include", include, add_include, remove_include),
            ("exclude", exclude, add_exclude, remove_exclude),
        ):
            terms = split_terms(replace) if replace else list(rules.get(key, []))
            terms = list(dict.fromkeys(terms + split_terms(add)))
            dropped = set(split_terms(remove))
            missing = dropped - set(terms)
            if missing:
                fail(f"{key} has no term(s): {', '.join(sorted(missing))}")
            terms = [t for t in terms if t not in dropped]
            if terms != rules.get(key, []):
                rules[key], rules_changed = terms, True
        if regex is not None or no_regex:
            rules["regex"], rules_changed = (None if no_regex else regex), True
        try:
            update = TopicUpdate(
                name_en=name_en,
                name_zh=name_zh,
                description=description,
                description_zh=description_zh,
                rules=rules if rules_changed else None,
            )
        except ValidationError as exc:
            fail(validation_message(exc))
        update_topic(session=session, topic=topic, topic_in=update)
    console.print(f"Updated topic {slug}.")
    if rules_changed:
        console.print("Rules changed: run `newsletter events retag` to re-match stored events.")


@app.command("remove")
def remove_cmd(
    ctx: typer.Context,
    slug: str = typer.Argument(..., help="Topic to remove."),
    force: bool = typer.Option(False, "--force", help="Remove even if subscribers follow it."),
) -> None:
    """Delete a topic (and its event matches); refuses if it has followers unless --force."""
    with state(ctx).session() as session:
        try:
            topic = get_topic(session=session, slug=slug)
            subs, hooks = subscriber_count(session=session, topic=topic)
            delete_topic(session=session, topic=topic, force=force)
        except TopicError as exc:
            fail(str(exc))
    extra = (
        f" ({subs} subscriber(s) and {hooks} webhook(s) no longer follow it)"
        if subs or hooks
        else ""
    )
    console.print(f"Removed topic {slug}{extra}.")
