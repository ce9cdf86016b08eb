"""`newsletter bounces import|serve|poll|list`: returned mail in, and what it did."""

from __future__ import annotations

import json
import sys

import typer
from rich.table import Table

from newsletter.cli.common import console, err_console, fail, state
from newsletter.cli.groups import command_group
from newsletter.core.logs import setup_logging
from newsletter.delivery.outbox import parse_since

app = command_group(
    "Bounces, complaints and unsubscribe mails: import, receive over SMTP, poll IMAP, list.",
)


def _read_inputs(files: list[str], max_bytes: int):
    """(name, raw message, None) for each message of each file (`-` = standard input),
    read one at a time; (name, None, problem) for a file that cannot be read."""
    from newsletter.feedback.sources import read_messages

    for name in files:
        try:
            stream = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as exc:
            yield name, None, f"cannot read: {exc.strerror or exc}"
            continue
        try:
            for i, (raw, mbox) in enumerate(read_messages(stream, max_bytes), 1):
                yield (f"{name}#{i}" if mbox else name), raw, None
        except OSError as exc:
            yield name, None, f"cannot read: {exc.strerror or exc}"
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    files: list[str] = typer.Argument(
        ..., help="Raw messages or mbox files to read; - reads standard input."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each message."),
) -> None:
    """Process bounces, complaints and unsubscribe mails, one report line per message.
    Exits 1 if any message could not be read (the others are processed all the same)."""
    from newsletter.feedback.process import Result
    from newsletter.feedback.sources import process_all

    st = state(ctx)
    st.require_secret_key()
    setup_logging(verbose)
    engine = st.checked_engine()
    failed = 0
    counts: dict[str, int] = {}
    unread: list[tuple[str, Result]] = []

    def readable():
        for name, raw, problem in _read_inputs(files, st.settings.bounce_max_bytes):
            if raw is None:
                unread.append((name, Result("unreadable", problem or "cannot read")))
                continue
            yield name, raw

    for name, result in process_all(engine, st.settings, readable()):
        console.print(f"{name}: {result.line()}")
        counts[result.kind] = counts.get(result.kind, 0) + 1
        failed += not result.ok
    for name, result in unread:
        err_console.print(f"{name}: {result.line()}")
        counts[result.kind] = counts.get(result.kind, 0) + 1
        failed += 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no messages"
    console.print(f"Processed: {summary}.")
    if failed:
        raise typer.Exit(1)


@app.command("serve")
def serve_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(2525, "--port", min=1, max=65535, help="Port to listen on."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each message."),
) -> None:
    """Receive bounces and unsubscribe mails over SMTP (for a relay to forward to).
    Only bounces+...@ and unsubscribe...@ at our domains are accepted. Stops on SIGTERM."""
    import signal
    import threading

    from newsletter.feedback.inbound import start

    st = state(ctx)
    st.require_secret_key()
    setup_logging(verbose)
    engine = st.checked_engine()
    try:
        controller = start(engine, st.settings, host, port)
    except (OSError, RuntimeError) as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    err_console.print(f"Receiving bounces on {host}:{port}.")
    try:
        stop.wait()
    finally:
        controller.stop()
    err_console.print("Stopped.")


@app.command("poll")
def poll_cmd(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each message."),
) -> None:
    """Read the bounce mailbox (NEWSLETTER_BOUNCE_IMAP_*) once now and print the counts.
    Processed messages are moved or flagged. Exits 1 if the mailbox could not be read."""
    from newsletter.feedback.mailbox import describe, poll

    st = state(ctx)
    if not st.settings.bounce_imap_host:
        fail(
            "no bounce mailbox is configured: set NEWSLETTER_BOUNCE_IMAP_HOST, "
            "NEWSLETTER_BOUNCE_IMAP_USER and NEWSLETTER_BOUNCE_IMAP_PASSWORD"
        )
    st.require_secret_key()
    setup_logging(verbose)
    engine = st.checked_engine()
    report = poll(engine, st.settings)
    where = describe(st.settings)
    if report.error:
        summary = f" (before that: {report.summary()})" if report.read else ""
        fail(f"bounce mailbox {where}: {report.error}{summary}")
    console.print(
        f"Polled {where}: {report.summary()}; {report.marked} marked as processed.", markup=False
    )


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    since: str = typer.Option("7d", "--since", help="ISO date or time, or a duration (7d)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    limit: int = typer.Option(1000, "--limit", min=1, max=100_000, help="Rows at most."),
) -> None:
    """Recent bounces and complaints: reader, kind, diagnostic code and action taken."""
    from newsletter.feedback.sources import recent

    if fmt not in ("table", "json"):
        fail("--format must be table or json")
    try:
        when = parse_since(since)
    except ValueError as exc:
        fail(str(exc))
        return
    with state(ctx).session() as session:
        rows = recent(session, when, limit=limit)
    if fmt == "json":
        print(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        console.print(f"No bounces or complaints since {when:%Y-%m-%d %H:%M} UTC.")
        return
    table = Table()
    table.add_column("received (UTC)", no_wrap=True)
    table.add_column("reader", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("diagnostic", overflow="fold")
    table.add_column("action", overflow="fold")
    for r in rows:
        diagnostic = r.diagnostic if len(r.diagnostic) <= 80 else r.diagnostic[:79] + "…"
        table.add_row(
            f"{r.received_at:%Y-%m-%d %H:%M}", r.email or "-", r.kind, diagnostic, r.action
        )
    console.print(table)
