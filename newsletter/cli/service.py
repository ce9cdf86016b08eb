"""`newsletter serve | scheduler | schedule show | feeds ...`: the running service."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from newsletter.cli.common import console, err_console, fail, say_empty, state
from newsletter.cli.groups import command_group
from newsletter.core.logs import setup_logging
from newsletter.ingest.feeds import (
    FeedError,
    add_feed,
    get_feed,
    list_feeds,
    remove_feed,
    update_feed,
)
from newsletter.pipeline import poll_feeds

if TYPE_CHECKING:
    from newsletter.core.settings import Settings

schedule_app = command_group("When the scheduler sends what next.")
feeds_app = command_group("RSS/Atom feeds polled for events.")


def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address the web app listens on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of the web app."),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="Run workers separately (newsletter worker)."
    ),
    with_sample: bool = typer.Option(
        False,
        "--with-sample",
        help="First load the July 2025 sample and two demo readers, and queue their digest.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run everything in one process: scheduler, worker and web app.

    Also the bounce endpoints that are configured (NEWSLETTER_BOUNCE_SMTP_PORT,
    NEWSLETTER_BOUNCE_IMAP_HOST). Stops on SIGTERM."""
    from newsletter.service import runner as service

    st = state(ctx)
    st.require_secret_key()
    engine = st.checked_engine()
    st.settings, warning = links_follow(st.settings, host, port)
    if with_sample:
        from newsletter.cli.sample import load_sample_data

        for line in load_sample_data(st, with_readers=True):
            console.print(line)
    for line in welcome(st.settings, host, port, worker=not no_worker):
        console.print(line)
    if warning:
        err_console.print(f"WARNING: {warning}")
    console.file.flush()
    setup_logging(verbose)
    ok = asyncio.run(service.run(engine, st.settings, worker=not no_worker, host=host, port=port))
    if not ok:  # a part stopped by itself: never report success
        raise typer.Exit(1)


WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def links_follow(settings: Settings, host: str, port: int) -> tuple[Settings, str | None]:
    """Links in emails point where the web app listens unless NEWSLETTER_BASE_URL says
    otherwise. An address that means "every interface" names no host a reader could
    open: links then use 127.0.0.1, with a warning to set the public address."""
    if "base_url" in settings.model_fields_set:
        return settings, None
    name = "127.0.0.1" if host in WILDCARDS else host
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"  # an IPv6 address
    base = f"http://{name}:{port}"
    warning = None
    if host in WILDCARDS:
        warning = (
            f"NEWSLETTER_BASE_URL is not set and the web app listens on every interface "
            f"({host or '*'}:{port}): links in emails point to {base}, which opens only on "
            "this machine. Set NEWSLETTER_BASE_URL to the address readers use, "
            "e.g. https://news.example.com"
        )
    return settings.model_copy(update={"base_url": base}), warning


def welcome(settings: Settings, host: str, port: int, *, worker: bool) -> list[str]:
    """What a newcomer needs at start: where to look, where the mail goes, how to log in."""
    name = "127.0.0.1" if host in WILDCARDS else host
    name = f"[{name}]" if ":" in name and not name.startswith("[") else name
    web = f"http://{name}:{port}"
    if not worker:
        mail = "queued for `newsletter worker` (run it separately)"
    elif settings.smtp_url:
        from urllib.parse import urlsplit

        server = urlsplit(settings.smtp_url)
        mail = f"sent through the SMTP server {server.hostname}:{server.port or 25}"
    else:
        folder = settings.outbox_dir.resolve()
        mail = f"written as .eml files into {folder}/ (set NEWSLETTER_SMTP_URL to send them)"
    return [
        f"Web app:   {web}/  (archive {web}/archive, API docs {web}/docs)",
        f"Admin UI:  {web}/admin/  - log in with a token from: {cli_name()} admin token create YOUR-NAME",
        f"Emails:    {mail}",
        f"Links in emails point to {settings.base_url}",
        "Press Ctrl-C to stop.",
    ]


def cli_name() -> str:
    """How to call this CLI from the current folder: `.venv/bin/newsletter` when that is
    what runs (scripts/run), else `newsletter`."""
    import os
    import sys

    path = sys.argv[0] if sys.argv else ""
    if os.path.basename(path) == "newsletter" and os.path.isabs(path):
        relative = os.path.relpath(path)
        if not relative.startswith(".."):
            return relative
    return "newsletter"


def scheduler_cmd(
    ctx: typer.Context, verbose: bool = typer.Option(False, "--verbose", "-v")
) -> None:
    """Run only the scheduler (feeds, alerts, digests at each reader's local time)."""
    from newsletter.service import runner as service

    setup_logging(verbose)
    st = state(ctx)
    if not asyncio.run(service.run(st.checked_engine(), st.settings, worker=False, web=False)):
        raise typer.Exit(1)


JOB_LABELS = {
    "digests": "digests: due ones looked for",
    "alerts": "alerts: new events checked",
    "feeds": "feeds: due ones polled",
}


@schedule_app.command("show")
def schedule_show(ctx: typer.Context) -> None:
    """The next digest of each frequency and time zone, and how often the scheduler checks."""
    from newsletter.planning.send_times import next_sends, waiting_sends
    from newsletter.service.scheduler import describe

    st = state(ctx)
    with st.session() as session:
        upcoming = next_sends(session=session, settings=st.settings)
        waiting = waiting_sends(session=session, settings=st.settings)
    console.print(f"Digests go out at {st.settings.digest_send_time} in each reader's time zone.")
    for w in waiting:
        console.print(
            f"  the monthly digest {w.period} ({w.timezone}) is waiting for the sharp take"
            f" ({', '.join(w.languages)}) to be approved; it goes out at"
            f" {w.deadline:%Y-%m-%d %H:%M} UTC"
            f" {'without it' if w.unapproved == 'omit' else 'with the draft'}"
            f" (approve: newsletter take approve {w.period} LANGUAGE)"
        )
    for due in upcoming:
        console.print(
            f"  next {due.frequency} digest: {local_moment(due.due_at, due.timezone)} "
            f"- {due.period.label('en')}"
        )
    idle = [f for f in ("daily", "weekly", "monthly") if f not in {d.frequency for d in upcoming}]
    if idle:
        console.print(
            f"  no {' or '.join(idle).replace(' or ', ', ', len(idle) - 2)} digest is due: no active reader or team takes one"
            + ("" if upcoming else " (add one with: newsletter subscribers add EMAIL)")
        )
    jobs = describe(st.checked_engine())
    if not jobs:
        console.print(
            "The scheduler has not run on this database yet: start it with "
            "`newsletter serve` or `newsletter scheduler`."
        )
        return
    console.print("The scheduler (when running):")
    for job in jobs:
        every = f"every {duration(job.every_seconds)}" if job.every_seconds else "on its trigger"
        when = f"next {local_moment(job.next_run, 'UTC')}" if job.next_run else "paused"
        console.print(f"  {JOB_LABELS.get(job.id, job.id)} {every}, {when}")


def local_moment(moment, timezone: str) -> str:
    """`1 Dec 08:00 Asia/Shanghai`, with the year when it is not this year's."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    local = moment.astimezone(ZoneInfo(timezone))
    year = "" if local.year == dt.datetime.now(local.tzinfo).year else f" {local.year}"
    return f"{local.day} {local:%b}{year} {local:%H:%M} {timezone}"


def duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


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


@feeds_app.command("edit")
def feeds_edit(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The feed's name (or URL)."),
    url: str | None = typer.Option(None, "--url", help="A new RSS or Atom URL."),
    new_name: str | None = typer.Option(None, "--new-name"),
    region: str | None = typer.Option(None, "--region"),
    language: str | None = typer.Option(None, "--language"),
) -> None:
    """Change a feed's URL, name, region or language (what is not given stays).

    A new URL is checked like a new feed's and polled at the scheduler's next check;
    the events the feed brought stay as they are."""
    if url is None and new_name is None and region is None and language is None:
        fail("nothing to change: give --url, --new-name, --region or --language")
    st = state(ctx)
    with st.session() as session:
        try:
            feed = get_feed(session=session, name=name)
            changed = update_feed(
                session=session,
                settings=st.settings,
                feed=feed,
                url=url,
                name=new_name,
                region=region,
                language=language,
            )
        except FeedError as exc:
            fail(str(exc))
        what = ", ".join(f"{key} {getattr(feed, key)}" for key in changed)
        final = feed.name
    if changed:  # once committed
        console.print(f"Updated feed {final}: {what}.", markup=False)
    else:
        console.print(f"Feed {final} unchanged.", markup=False)


@feeds_app.command("list")
def feeds_list(ctx: typer.Context) -> None:
    """Feeds with their last poll (new events it brought) and error."""

    with state(ctx).session() as session:
        feeds = list_feeds(session=session)
        if not feeds:
            say_empty("feeds", "newsletter feeds add https://example.com/ai.rss --name wire")
            return
        table = Table(
            "name",
            "url",
            "region",
            "lang",
            "last ok",
            "last new",
            "failures",
            "last error",
            "next poll",
        )
        for f in feeds:
            table.add_row(
                f.name,
                f.url,
                f.region,
                f.language,
                str(f.last_ok_at or "-")[:19],
                "-" if f.last_new_events is None else str(f.last_new_events),
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
