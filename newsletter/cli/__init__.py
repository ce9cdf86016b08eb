"""The `newsletter` command line: a thin layer that translates arguments into domain calls."""

from __future__ import annotations

import typer

from newsletter.cli import admin as admin_cmds
from newsletter.cli import bounces as bounce_cmds
from newsletter.cli import db as db_cmds
from newsletter.cli import delivery as delivery_cmds
from newsletter.cli import digest as digest_cmds
from newsletter.cli import events as event_cmds
from newsletter.cli import sample as sample_cmds
from newsletter.cli import service as service_cmds
from newsletter.cli import subscribers as subscriber_cmds
from newsletter.cli import takes as take_cmds
from newsletter.cli import topics as topic_cmds
from newsletter.cli import webhooks as webhook_cmds
from newsletter.cli.common import DatabaseErrorsGroup, State, load_state

app = typer.Typer(
    cls=DatabaseErrorsGroup,
    help="AI-industry newsletter and alert delivery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="NEWSLETTER_DATABASE_URL", help="SQLAlchemy database URL."
    ),
) -> None:
    """Build the settings once here and hand them to every command."""
    ctx.obj = load_state(database_url)


app.add_typer(db_cmds.app, name="db")
app.add_typer(topic_cmds.app, name="topics")
app.add_typer(event_cmds.app, name="events")
app.add_typer(sample_cmds.app, name="sample")
app.add_typer(subscriber_cmds.app, name="subscribers")
app.add_typer(take_cmds.app, name="take")
app.add_typer(digest_cmds.app, name="digest")
app.add_typer(delivery_cmds.outbox_app, name="outbox")
app.add_typer(webhook_cmds.app, name="webhooks")
app.command("worker")(delivery_cmds.worker_cmd)
app.command("serve")(service_cmds.serve_cmd)
app.command("scheduler")(service_cmds.scheduler_cmd)
app.add_typer(service_cmds.schedule_app, name="schedule")
app.add_typer(service_cmds.feeds_app, name="feeds")
app.add_typer(admin_cmds.app, name="admin")
app.add_typer(bounce_cmds.app, name="bounces")

__all__ = ["app", "State"]
