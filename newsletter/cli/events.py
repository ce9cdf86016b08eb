"""`newsletter events ...`: import, list, show and re-tag events."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import typer
from rich.table import Table

from newsletter import pipeline
from newsletter.cli.common import console, err_console, fail, progress_bar, say_empty, state
from newsletter.cli.groups import command_group
from newsletter.core.text import printable
from newsletter.ingest.events import (
    event_as_dict,
    get_event,
    list_events,
    localised,
    retag,
    set_pinned,
    topic_matches,
)
from newsletter.ingest.files import ImportFileError
from newsletter.topics.catalogue import TopicError, list_topics

app = command_group("Events: import them, list them, see why they match topics.")


def print_import_report(report, label: str) -> None:
    console.print(
        f"{label}: {report.new} new, {report.duplicate} duplicate, {len(report.invalid)} invalid"
    )
    for problem in report.invalid:
        err_console.print(f"  invalid {problem.where}: {problem.reason}", markup=False)


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    files: list[Path] = typer.Argument(..., help="JSON, JSON Lines, YAML or CSV files."),
    fmt: str | None = typer.Option(
        None, "--format", help="json, jsonl, yaml or csv (default: by extension)."
    ),
) -> None:
    """Import events; exits non-zero if any record was invalid (the valid ones are kept)."""
    st = state(ctx)
    failed = False
    for path in files:
        try:
            with (
                st.session() as session,
                progress_bar(f"importing {path.name}", "{task.completed} records") as bar,
            ):
                task = bar.add_task("import", total=None)
                ingested = pipeline.ingest_file(
                    session=session,
                    settings=st.settings,
                    path=path,
                    fmt=fmt,
                    progress=functools.partial(bar.advance, task),
                )
                report, alerts = ingested.report, ingested.alerts
        except ImportFileError as exc:
            err_console.print(f"Error: {path}: {exc}", markup=False)
            failed = True
            continue
        print_import_report(report, str(path))
        if alerts:
            console.print(f"  {alerts} instant alert(s) queued for readers and team webhooks")
        failed = failed or not report.ok
    if failed:
        raise typer.Exit(1)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    topic: str | None = typer.Option(None, "--topic", help="Only events with this topic."),
    month: str | None = typer.Option(None, "--month", help="Only events of this month, YYYY-MM."),
    region: str | None = typer.Option(None, "--region", help="Only events of this region."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    by_topic: bool = typer.Option(False, "--by-topic", help="Group the table by topic."),
    language: str = typer.Option("en", "--language", help="Language of titles in the table."),
) -> None:
    """List events, oldest first."""
    if fmt not in ("table", "json"):
        fail("--format must be table or json")
    with state(ctx).session() as session:
        try:
            events = list_events(session=session, topic=topic, month=month, region=region)
        except (TopicError, ValueError) as exc:
            fail(str(exc))
        rows = [event_as_dict(session=session, event=e) for e in events]
        if fmt == "json":
            print(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        if not rows and (topic or month or region):
            console.print("No events match these filters.")
            return
        if not rows:
            say_empty(
                "events",
                "newsletter events import events.jsonl   "
                "(or the July 2025 sample: newsletter sample load)",
            )
            return
        if by_topic:
            groups = [(t.slug, f"{t.name_en} / {t.name_zh}") for t in list_topics(session=session)]
            groups.append(("", "No topic"))
            for slug, name in groups:
                members = [
                    r for r in rows if (slug in r["topics"]) or (not slug and not r["topics"])
                ]
                if members:
                    console.print(_table(members, language, title=f"{name} ({len(members)})"))
            return
        console.print(_table(rows, language, title=f"{len(rows)} event(s)"))


def _table(rows: list[dict], language: str, title: str) -> Table:
    table = Table("id", "date", "region", "title", "topics", title=title, title_justify="left")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["occurred_on"],
            printable(r["region"]),
            printable(localised(r["title"], language)),
            ", ".join(r["topics"]),
        )
    return table


@app.command("show")
def show_cmd(ctx: typer.Context, event_id: int = typer.Argument(..., help="Event id.")) -> None:
    """Show one event and, for each topic, why it matched."""
    with state(ctx).session() as session:
        event = get_event(session=session, event_id=event_id)
        if event is None:
            fail(f"no event with id {event_id}")
        # printable(): a row stored before text cleaning may still hold terminal escapes
        console.print(
            f"Event {event.id}  {event.occurred_on}  region={printable(event.region)}  "
            f"language={printable(event.language)}",
            markup=False,
        )
        for lang, text in event.title.items():
            console.print(f"  title[{printable(lang)}]: {printable(text)}", markup=False)
        for lang, text in event.summary.items():
            console.print(f"  summary[{printable(lang)}]: {printable(text)}", markup=False)
        console.print(f"  url: {printable(event.url)}", markup=False)
        console.print(
            f"  source: {printable(event.source)}  importance: {event.importance or '-'}"
            f"  pinned: {'yes' if event.pinned else 'no'}",
            markup=False,
        )
        for lang, text in (event.sources or {}).items():
            console.print(f"  source[{printable(lang)}]: {printable(text)}", markup=False)
        matches = topic_matches(session=session, event=event)
        if not matches:
            console.print("  topics: none (no rule matched)")
        for topic, match in matches:
            why = "manual" if match.source == "manual" else match.reason
            console.print(f"  topic {topic.slug}: {printable(why)}", markup=False)


@app.command("retag")
def retag_cmd(
    ctx: typer.Context,
    all_: bool = typer.Option(
        False, "--all", help="Also re-match events whose topics an admin set by hand."
    ),
) -> None:
    """Re-run topic rules on stored events (after rules changed)."""
    with state(ctx).session() as session:
        report = retag(session=session, include_manual=all_)
    console.print(
        f"Re-matched {report.examined} event(s): {report.changed} changed"
        + (f", {report.kept_manual} with manual topics kept" if report.kept_manual else "")
    )


def _pin(ctx: typer.Context, event_id: int, pinned: bool) -> None:
    with state(ctx).session() as session:
        event = get_event(session=session, event_id=event_id)
        if event is None:
            fail(f"no event with id {event_id}")
        set_pinned(session=session, event=event, pinned=pinned)
        session.commit()
        title = printable(localised(event.title, "en"))
    if pinned:
        console.print(
            f"Pinned event {event_id} ({title}): it is in the editor's picks of the monthly "
            f"digest for {event.occurred_on:%Y-%m}, for every reader.",
            markup=False,
        )
    else:
        console.print(f"Unpinned event {event_id} ({title}).", markup=False)


@app.command("pin")
def pin_cmd(ctx: typer.Context, event_id: int = typer.Argument(..., help="Event id.")) -> None:
    """Put an event in the monthly digest's editor's picks, for every reader."""
    _pin(ctx, event_id, True)


@app.command("unpin")
def unpin_cmd(ctx: typer.Context, event_id: int = typer.Argument(..., help="Event id.")) -> None:
    """Take an event out of the editor's picks (importance 5 events stay in them)."""
    _pin(ctx, event_id, False)
