"""`newsletter subscribers ...`: people who get email digests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from newsletter.audience.endpoints import sync_team
from newsletter.audience.rosters import RosterError, sync_rosters
from newsletter.audience.subscribers import (
    FileReadError,
    SubscriberError,
    SubscriberIn,
    add_subscriber,
    export_subscribers,
    file_lines,
    get_subscriber,
    import_subscribers,
    list_subscribers,
    subscriber_topics,
)
from newsletter.cli.common import console, err_console, fail, progress_bar, say_empty, state
from newsletter.cli.groups import command_group
from newsletter.cli.topics import validation_message
from newsletter.pipeline import remove_subscriber
from newsletter.topics.catalogue import TopicError

app = command_group("Email subscribers: add, import, export, list, remove, sync rosters.")


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="Email address."),
    topics: str = typer.Option(..., "--topics", help="Comma-separated topic slugs."),
    frequency: str = typer.Option(
        "monthly", "--frequency", help="instant, daily, weekly or monthly."
    ),
    language: str = typer.Option("en", "--language", help="zh or en."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone, e.g. Asia/Shanghai."),
    name: str = typer.Option("", "--name", help="Name used in the greeting."),
) -> None:
    """Add an active subscriber (you vouch for their consent)."""
    try:
        sub_in = SubscriberIn(
            email=email,
            topics=topics,
            frequency=frequency,
            language=language,
            timezone=timezone,
            name=name,
        )
    except ValidationError as exc:
        fail(validation_message(exc))
    with state(ctx).session() as session:
        try:
            sub = add_subscriber(session=session, sub_in=sub_in)
        except (SubscriberError, TopicError) as exc:
            fail(str(exc))
    console.print(  # once committed, like every command's report
        f"Added {sub.email} ({sub.frequency}, {sub.language}): {', '.join(sub_in.topics)}",
        markup=False,
    )


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., help="CSV with email[,name,language,timezone,frequency,topics]."
    ),
    topics: str | None = typer.Option(None, "--topics", help="Topics for rows that name none."),
    quiet: bool = typer.Option(
        False,
        "--quiet",
        "-q",
        help="No progress bar (there is none when stderr is not a terminal).",
    ),
) -> None:
    """Import subscribers from CSV; reports each invalid row and exits 1 if there were any.

    The file is read as it is imported, so memory stays flat however many rows it has;
    nothing is stored unless the whole file could be read.
    """
    try:
        # a pipe cannot be read twice: its rows are counted as they come, without a total
        total = _count_lines(file) - 1 if file.is_file() else None
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")
    with (
        state(ctx).session() as session,
        progress_bar(
            f"importing {file.name}",
            BarColumn(),
            MofNCompleteColumn(),
            "rows",
            TimeRemainingColumn(),
            on=err_console,
            quiet=quiet,
        ) as bar,
    ):
        task = bar.add_task("import", total=None if total is None else max(total, 0))
        try:
            report = import_subscribers(
                session=session,
                text=file_lines(file),
                default_topics=topics.split(",") if topics else None,
                progress=lambda n: bar.advance(task, n),
            )
        except SubscriberError as exc:
            fail(str(exc))
        except (FileReadError, OSError) as exc:
            fail(f"cannot read {file}: {exc}")
    console.print(
        f"{file}: {report.added} added, {report.duplicate} duplicate, {len(report.invalid)} invalid"
    )
    for p in report.invalid:
        err_console.print(f"  invalid {p.where}: {p.reason}", markup=False)
    if not report.ok:
        raise typer.Exit(1)


def _count_lines(path: Path) -> int:
    """Line breaks in a file: the progress bar's total (a quoted field may hold more)."""
    n = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
    return n


@app.command("export")
def export_cmd(ctx: typer.Context) -> None:
    """Print every subscriber as CSV (the import format)."""
    with state(ctx).session() as session:
        print(export_subscribers(session=session), end="")


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: str | None = typer.Option(
        None, "--status", help="pending, active, unsubscribed or disabled (bounces, complaints)."
    ),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List subscribers with their topics."""
    with state(ctx).session() as session:
        rows: list[dict[str, Any]] = [
            {
                "email": s.email,
                "name": s.name,
                "status": s.status,
                "frequency": s.frequency,
                "language": s.language,
                "timezone": s.timezone,
                "topics": [t.slug for t in subscriber_topics(session=session, subscriber=s)],
            }
            for s in list_subscribers(session=session, status=status)
        ]
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows and status:
        console.print(f"No {status} subscribers.")
        return
    if not rows:
        say_empty(
            "subscribers",
            "newsletter subscribers add ada@example.com --topics governance --frequency monthly",
        )
        return
    table = Table(
        "email",
        "name",
        "status",
        "frequency",
        "lang",
        "tz",
        "topics",
        title=f"{len(rows)} subscriber(s)",
        title_justify="left",
    )
    for r in rows:
        table.add_row(
            r["email"],
            r["name"],
            r["status"],
            r["frequency"],
            r["language"],
            r["timezone"],
            ", ".join(r["topics"]),
        )
    console.print(table)


@app.command("remove")
def remove_cmd(
    ctx: typer.Context, email: str = typer.Argument(..., help="Address to forget.")
) -> None:
    """Delete a subscriber's personal data; the address stays suppressed forever."""
    with state(ctx).session() as session:
        sub = get_subscriber(session=session, email=email)
        if sub is None:
            fail(f"no subscriber {email}")
        remove_subscriber(session=session, subscriber=sub)
    console.print(
        f"Removed {email}; the address is suppressed and will never be mailed again.", markup=False
    )


@app.command("sync")
def sync_cmd(
    ctx: typer.Context,
    path: Path = typer.Argument(Path("subscribers"), help="Roster folder or file."),
) -> None:
    """Apply the declarative rosters (create / update; never deletes)."""
    st = state(ctx)
    with st.session() as session:
        try:
            report = sync_rosters(
                session=session,
                path=path,
                team_sync=lambda s, w, e: sync_team(s, st.settings, w, e),
            )
        except RosterError as exc:
            fail(str(exc))
    for e in report.entries:
        line = f"  {e.action:<9} {e.who}  ({e.where})" + (f": {e.reason}" if e.reason else "")
        (err_console if e.action == "invalid" else console).print(line, markup=False)
    counts = ", ".join(
        f"{report.count(a)} {a}" for a in ("created", "updated", "unchanged", "skipped", "invalid")
    )
    console.print(f"Roster sync: {counts}")
    if not report.ok:
        raise typer.Exit(1)
