"""`newsletter take ...`: the editor's monthly sharp take."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from newsletter.cli.common import console, fail, state
from newsletter.cli.groups import command_group
from newsletter.ingest.takes import approve_take, get_take, set_take

app = command_group("The monthly sharp take (Markdown), per language: set, show, approve.")


@app.command("set")
def set_cmd(
    ctx: typer.Context,
    period: str = typer.Argument(..., help="Month, YYYY-MM."),
    language: str = typer.Option(..., "--language", help="zh or en."),
    file: Path = typer.Option(..., "--file", help="Markdown file, or - for standard input."),
) -> None:
    """Store (or replace) the sharp take of a month in one language."""
    try:
        body = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    with state(ctx).session() as session:
        try:
            take = set_take(session=session, period=period, language=language, body=body)
        except ValueError as exc:
            fail(str(exc))
    console.print(  # once committed, like every command's report
        f"Stored the {take.language} sharp take for {take.period} ({len(take.body_markdown)} characters)"
        f" as a {take.state}."
    )


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    period: str = typer.Argument(..., help="Month, YYYY-MM."),
    language: str = typer.Option("en", "--language", help="zh or en (falls back to the other)."),
) -> None:
    """Print the sharp take of a month."""
    with state(ctx).session() as session:
        take = get_take(session=session, period=period, language=language)
        if take is None:
            fail(f"no sharp take for {period}")
        if take.language != language:
            console.print(f"(no {language} version; showing {take.language})")
        console.print(state_line(take))
        print(take.body_markdown)


def state_line(take) -> str:
    if take.state == "approved":
        when = f"{take.approved_at:%Y-%m-%d %H:%M} UTC" if take.approved_at else "before approvals"
        by = f" by {take.approved_by}" if take.approved_by else ""
        return f"State: approved{by} ({when})"
    return "State: draft (the monthly send waits for its approval: take approve)"


@app.command("approve")
def approve_cmd(
    ctx: typer.Context,
    period: str = typer.Argument(..., help="Month, YYYY-MM."),
    language: str = typer.Argument(..., help="zh or en."),
) -> None:
    """Approve the sharp take of a month in one language: the monthly send may carry it."""
    with state(ctx).session() as session:
        try:
            take = approve_take(session=session, period=period, language=language, by="cli")
        except ValueError as exc:
            fail(str(exc))
    console.print(f"Approved the {take.language} sharp take for {take.period}.")
