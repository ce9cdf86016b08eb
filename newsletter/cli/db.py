"""`newsletter db ...`: schema migrations."""

from __future__ import annotations

import typer

from newsletter.cli.common import console, state
from newsletter.cli.groups import command_group
from newsletter.core.db import current_revision, head_revision, upgrade

app = command_group("Database schema: apply migrations and show the revision.")


@app.command("upgrade")
def upgrade_cmd(ctx: typer.Context) -> None:
    """Apply every pending migration (creates the database on first run)."""
    engine = state(ctx).creating_engine()
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"Database already at {after}.")
    else:
        console.print(f"Database upgraded from {before or 'empty'} to {after}.")


@app.command("current")
def current_cmd(ctx: typer.Context) -> None:
    """Show the database's revision and the one this code needs."""
    engine = state(ctx).engine
    current, head = current_revision(engine), head_revision()
    console.print(f"database: {current or 'empty'}  code: {head}")
    if current != head:
        raise typer.Exit(1)
