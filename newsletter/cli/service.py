"""`newsletter serve | scheduler | schedule show | feeds ...`: the running service."""

from __future__ import annotations

import asyncio

import typer
from rich.table import Table

from newsletter.cli.common import console, fail, state
from newsletter.core.logs import setup_logging
from newsletter.ingest.feeds import (
    FeedError,
    add_feed,
    get_feed,
    list_feeds,
    remove_feed,
)
from newsletter.pipeline import poll_feeds
from newsletter.service import runner as service

schedule_app = typer.Typer(help="The scheduler's jobs.", no_args_is_help=True)
feeds_app = typer.Typer(help="RSS/Atom feeds polled for events.", no_args_is_help=True)


def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the web app listens on."),
    port: int = typer.Option(8000, "--port", help="Port of the web app."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Run workers separately (newsletter worker)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run everything in one process: scheduler, worker and web app (and the bounce
    endpoints configured: NEWSLETTER_BOUNCE_SMTP_PORT, NEWSLETTER_BOUNCE_IMAP_HOST).
    Stops on SIGTERM."""
    setup_logging(verbose)
    st = state(ctx)
    st.require_secret_key()
    ok = asyncio.run(
        service.run(st.checked_engine(), st.settings, worker=not no_worker, host=host, port=port)
    )
    if not ok:  # a part stopped by itself: never report success
        raise typer.Exit(1)


def scheduler_cmd(
    ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v")
) -> None:
    """Run only the scheduler (feeds, alerts, digests at each reader's local time)."""
    setup_logging(verbose)
    st = state(ctx)
    if not asyncio.run(service.run(st.checked_engine(), st.settings, worker=False, web=False)):
        raise typer.Exit(1)


@schedule_app.command("show")
def schedule_show(ctx: typer.Context) -> None:
    """Every scheduled job and its next run time."""
    from newsletter.service.scheduler import describe

    rows = describe(state(ctx).checked_engine())
    if not rows:
        console.print(
            "No jobs stored yet: they are created when `newsletter serve` or `newsletter scheduler` starts."
        )
        return
    table = Table("job", "trigger", "next run (UTC)")
    for row in rows:
        table.add_row(*row)
    console.print(table)


@feeds_app.command("add")
def feeds_add(
    ctx: typer.Context,
    url: str = typer.Argument(..., help="RSS or Atom URL."),
    name: str | None = typer.Option(None, "--name"),
    region: str = typer.Option("global", "--region"),
    language: str = typer.Option("en", "--language"),
) -> None:
    """Add a feed; it is polled on the schedule (or now with `feeds poll`)."""
    st = state(ctx)
    with st.session() as session:
        try:
            feed = add_feed(
                session=session,
                settings=st.settings,
                url=url,
                name=name,
                region=region,
                language=language,
            )
        except FeedError as exc:
            fail(str(exc))
    console.print(f"Added feed {feed.name}.", markup=False)  # once committed


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """Feeds with their last poll and error."""

    with state(ctx).session() as session:
        feeds = list_feeds(session=session)
        table = Table(
            "name", "url", "region", "lang", "last ok", "failures", "last error", "next poll"
        )
        for f in feeds:
            table.add_row(
                f.name,
                f.url,
                f.region,
                f.language,
                str(f.last_ok_at or "-")[:19],
                str(f.consecutive_failures),
                (f.last_error or "")[:60],
                str(f.next_poll_at or "now")[:19],
            )
    console.print(table)


@feeds_app.command("remove")
def feeds_remove(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Stop polling a feed (its events stay)."""
    with state(ctx).session() as session:
        try:
            remove_feed(session=session, feed=get_feed(session=session, name=name))
        except FeedError as exc:
            fail(str(exc))
    console.print(f"Removed feed {name}.")


@feeds_app.command("poll")
def feeds_poll(
    ctx: typer.Context, name: str | None = typer.Argument(None, help="Only this feed.")
) -> None:
    """Poll feeds now (all due ones, or the named one)."""
    st = state(ctx)
    try:
        results = poll_feeds(engine=st.checked_engine(), settings=st.settings, only=name)
    except FeedError as exc:
        fail(str(exc))
    for r in results:
        line = f"{r.feed}: {r.status}, {len(r.new_ids)} new, {r.duplicates} duplicate, {r.invalid} invalid"
        console.print(line + (f" — {r.error}" if r.error else ""), markup=False)
    if any(r.status == "error" for r in results):
        raise typer.Exit(1)
