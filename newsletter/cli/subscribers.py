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

app = command_group(
    "Email subscribers: add, import, export, list, show, enable, remove, sync rosters."
)


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


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="Address of the reader."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """A reader's status, bounce score and why they are disabled, with their bounce
    history (bounces, complaints, unsubscribe mails, re-enabling), newest first."""
    import datetime as dt

    from newsletter.feedback.sources import recent

    if fmt not in ("table", "json"):
        fail("--format must be table or json")
    with state(ctx).session() as session:
        sub = get_subscriber(session=session, email=email)
        if sub is None:
            fail(f"no subscriber {email}")
        topics = [t.slug for t in subscriber_topics(session=session, subscriber=sub)]
        history = recent(session, dt.datetime(1970, 1, 1, tzinfo=dt.UTC), subscriber_id=sub.id)
        info = {
            "email": sub.email,
            "status": sub.status,
            "frequency": sub.frequency,
            "language": sub.language,
            "topics": topics,
            "bounce_score": sub.bounce_score,
            "disabled_reason": sub.disabled_reason,
        }
    if fmt == "json":
        info["bounces"] = [r.as_dict() for r in history]
        print(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key, value in info.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        console.print(f"{key}: {'-' if shown in (None, '') else shown}", markup=False)
    if not history:
        console.print("No bounces, complaints or unsubscribe mails.")
        return
    table = Table(title="bounce history", title_justify="left")
    for column in ("received (UTC)", "kind", "diagnostic", "action", "source"):
        table.add_column(column, overflow="fold")
    for r in history:
        table.add_row(f"{r.received_at:%Y-%m-%d %H:%M}", r.kind, r.diagnostic, r.action, r.source)
    console.print(table)


@app.command("enable")
def enable_cmd(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="Address of a reader disabled by bounces."),
    force: bool = typer.Option(
        False, "--force", help="Also a reader who reported our mail as spam (they asked)."
    ),
) -> None:
    """Take back a reader that bounces disabled: resets the bounce score, lifts the
    suppression for bounces, and records who did it in the reader's bounce history."""
    import getpass

    from newsletter.feedback.reenable import ReenableError, enable_reader

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown user"
    with state(ctx).session() as session:
        sub = get_subscriber(session=session, email=email)
        if sub is None:
            fail(f"no subscriber {email}")
        try:
            action = enable_reader(
                session=session, subscriber=sub, by=f"{who} (command line)", via="cli", force=force
            )
        except ReenableError as exc:
            fail(str(exc))
    console.print(f"{email}: {action}.", markup=False)


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
