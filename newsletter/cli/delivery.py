"""`newsletter worker` and `newsletter outbox status`: draining and watching the outbox."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, fail, progress_bar, state
from newsletter.cli.groups import command_group
from newsletter.core.logs import setup_logging
from newsletter.delivery import outbox
from newsletter.delivery.worker import run_worker

outbox_app = command_group("The outbox of messages to send.")


def worker_cmd(
    ctx: typer.Context,
    until_empty: bool = typer.Option(
        False, "--until-empty", help="Exit when nothing is left to send."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every delivery."),
    processes: int = typer.Option(
        1, "--processes", min=1, max=64, help="Worker processes on this machine (one per core)."
    ),
) -> None:
    """Send queued messages: claim, send, record, retry with backoff. Stops on SIGTERM."""
    st = state(ctx)
    st.require_secret_key()
    setup_logging(verbose)
    engine = st.checked_engine()
    if processes > 1:
        raise typer.Exit(
            run_processes(
                processes, st.settings.database_url, until_empty=until_empty, verbose=verbose
            )
        )
    try:
        if until_empty:
            with progress_bar("sending") as bar:
                task = bar.add_task("send", total=outbox.pending_count(engine))
                stats = run_worker(
                    engine, st.settings, until_empty=True, progress=lambda n: bar.advance(task, n)
                )
        else:
            stats = run_worker(engine, st.settings, until_empty=False)
    except ValueError as exc:
        fail(str(exc))
    done = ", ".join(f"{n} {s}" for s, n in sorted(stats.by_status.items())) or "nothing to send"
    console.print(f"Worker finished: {done}.")


def run_processes(n: int, database_url: str, *, until_empty: bool, verbose: bool) -> int:
    """n worker processes sharing the outbox (they claim with SKIP LOCKED); SIGTERM reaches all."""
    import os
    import signal
    import subprocess
    import sys

    args = [sys.executable, "-m", "newsletter", "worker"] + (
        ["--until-empty"] if until_empty else []
    )
    args += ["--verbose"] if verbose else []
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": database_url}
    children = [subprocess.Popen(args, env=env) for _ in range(n)]

    def forward(signum, _frame):
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes)


@outbox_app.command("status")
def status_cmd(ctx: typer.Context) -> None:
    """Counts by channel and status, and the most recent errors."""
    engine = state(ctx).checked_engine()
    counts = outbox.status_counts(engine)
    table = Table("channel", *outbox.STATUSES, title="Outbox", title_justify="left")
    for channel, by_status in sorted(counts.items()):
        table.add_row(channel, *(str(by_status.get(s, 0)) for s in outbox.STATUSES))
    if not counts:
        console.print("The outbox is empty.")
    else:
        console.print(table)
    errors = outbox.last_errors(engine)
    if errors:
        console.print("Last errors:")
        for delivery_id, key, kind, error in errors:
            console.print(f"  #{delivery_id} {key} [{kind}] {error}", markup=False)


@outbox_app.command("retry")
def retry_cmd(
    ctx: typer.Context,
    ids: list[int] = typer.Option(
        [], "--id", help="A failed delivery's id, as `outbox status` shows it (repeatable)."
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="Only deliveries to this webhook endpoint (its name)."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Only deliveries whose last try was at or after this: 2025-07-01, "
        "2025-07-01T08:00 (UTC unless an offset is given), or a duration back from now "
        "such as 90m, 12h, 7d.",
    ),
    kinds: list[str] = typer.Option(
        [], "--kind", help=f"Only deliveries of this kind: {', '.join(outbox.KINDS)} (repeatable)."
    ),
    everything: bool = typer.Option(
        False, "--all", help="Every failed delivery (needed when no other option is given)."
    ),
) -> None:
    """Queue failed deliveries again, due now; sent ones are never touched.

    The options combine (a delivery must match all given). A retried delivery gets a
    fresh set of tries; its earlier attempts stay in the history. An address on the
    suppression list is still not mailed: its delivery ends `suppressed`.
    """
    from newsletter.audience.endpoints import get_endpoint

    st = state(ctx)
    try:
        when = outbox.parse_since(since) if since is not None else None
        with st.session() as session:
            endpoint_id = get_endpoint(session=session, name=endpoint).id if endpoint else None
            got = outbox.retry(
                session,
                ids=ids,
                endpoint_id=endpoint_id,
                since=when,
                kinds=kinds,
                everything=everything,
            )
    except ValueError as exc:  # WebhookError too
        fail(str(exc))
    if not got.total:
        console.print("No failed deliveries match; nothing re-queued.")
        return
    held = f" ({got.held} held until their webhook endpoint is enabled)" if got.held else ""
    noun = "delivery" if got.total == 1 else "deliveries"
    console.print(f"Re-queued {got.total} failed {noun}{held}.")
