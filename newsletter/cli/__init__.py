"""The `newsletter` command line: a thin layer that translates arguments into domain calls.

Only typer is imported here: each command's module (and through it the database, web
and template libraries) is imported when that command runs, so `newsletter --help`
and a short command start fast. `tests/cli/test_startup.py` keeps it that way.
"""

from __future__ import annotations

import typer

from newsletter.cli.groups import Lazy, LazyGroup


class Root(LazyGroup):
    """The root command: a database error in any command becomes one line on stderr and
    exit code 1, never a traceback."""

    lazy = {
        "db": Lazy(
            "newsletter.cli.db:app", "Database schema: apply migrations and show the revision."
        ),
        "sample": Lazy("newsletter.cli.sample:app", "Sample data for a first look."),
        "topics": Lazy(
            "newsletter.cli.topics:app",
            "Topics readers follow, and the rules that match events to them.",
        ),
        "events": Lazy(
            "newsletter.cli.events:app",
            "Events: import them, list them, see why they match topics.",
        ),
        "feeds": Lazy("newsletter.cli.service:feeds_app", "RSS/Atom feeds polled for events."),
        "subscribers": Lazy(
            "newsletter.cli.subscribers:app",
            "Email subscribers: add, import, export, list, show, enable, remove, sync rosters.",
        ),
        "webhooks": Lazy(
            "newsletter.cli.webhooks:app",
            "Team chat webhooks: add, list, test, enable, disable, edit, remove.",
        ),
        "take": Lazy(
            "newsletter.cli.takes:app",
            "The monthly sharp take (Markdown), per language: set, show, approve.",
        ),
        "digest": Lazy(
            "newsletter.cli.digest:app",
            "Email digests: preview what someone would get, plan and enqueue a send.",
        ),
        "outbox": Lazy("newsletter.cli.delivery:outbox_app", "The outbox of messages to send."),
        "worker": Lazy(
            "newsletter.cli.delivery:worker_cmd",
            "Send queued messages: claim, send, record, retry with backoff.",
        ),
        "serve": Lazy(
            "newsletter.cli.service:serve_cmd",
            "Run everything in one process: scheduler, worker and web app.",
        ),
        "scheduler": Lazy(
            "newsletter.cli.service:scheduler_cmd",
            "Run only the scheduler (feeds, alerts, digests at each reader's local time).",
        ),
        "schedule": Lazy(
            "newsletter.cli.service:schedule_app", "When the scheduler sends what next."
        ),
        "bounces": Lazy(
            "newsletter.cli.bounces:app",
            "Bounces, complaints and unsubscribe mails: import, receive over SMTP, poll IMAP, list.",
        ),
        "admin": Lazy("newsletter.cli.admin:app", "Administration of the service: API tokens."),
    }

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from newsletter.cli.common import database_problem, fail, is_database_error

            if is_database_error(exc):
                fail(database_problem(exc))
            raise


app = typer.Typer(
    cls=Root,
    help="AI-industry newsletter and alert delivery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("newsletter")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = "unknown"
        typer.echo(f"newsletter {number}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    database_url: str | None = typer.Option(
        None, "--database-url", envvar="NEWSLETTER_DATABASE_URL", help="SQLAlchemy database URL."
    ),
    version: bool = typer.Option(
        False,
        "--version",
        callback=show_version,
        is_eager=True,
        help="Show the version and exit.",
    ),
) -> None:
    """Build the settings once here and hand them to every command."""
    from newsletter.cli.common import load_state

    ctx.obj = load_state(database_url)


__all__ = ["app"]
