"""`newsletter db ...`: schema migrations."""

from __future__ import annotations

import typer

from newsletter.cli.common import console, state
from newsletter.cli.groups import command_group
from newsletter.core.db import current_revision, head_revision, upgrade

app = command_group("Database schema: apply migrations and show the revision.")


@app.command("upgrade")
def upgrade_cmd(ctx: typer.Context) -> None:
    """Apply every pending migration; a new database also gets the default topics."""
    engine = state(ctx).creating_engine()
    before = current_revision(engine)
    upgrade(engine)
    after = current_revision(engine)
    if before == after:
        console.print(f"Database already at {after}.")
        return
    console.print(f"Database upgraded from {before or 'empty'} to {after}.")
    if before is None:  # a new database: only now, so a topic deleted later stays deleted
        from newsletter.core.db import session_scope
        from newsletter.topics.catalogue import ensure_default_topics, list_topics

        with session_scope(engine) as session:
            created = ensure_default_topics(session=session)
            slugs = ", ".join(t.slug for t in list_topics(session=session))
        if created:
            console.print(
                f"Created the default topics: {slugs} (sample events: newsletter sample load)."
            )


@app.command("current")
def current_cmd(ctx: typer.Context) -> None:
    """Show the database's revision and the one this code needs."""
    engine = state(ctx).engine
    current, head = current_revision(engine), head_revision()
    console.print(f"database: {current or 'empty'}  code: {head}")
    if current != head:
        raise typer.Exit(1)
