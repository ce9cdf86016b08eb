"""`newsletter digest ...`: preview and send email digests."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import func, select

from newsletter.audience.subscribers import SubscriberError
from newsletter.cli.common import console, fail, progress_bar, state
from newsletter.cli.groups import command_group
from newsletter.core.models import Subscriber
from newsletter.pipeline import plan_period
from newsletter.planning.digests import DigestError, preview_digest

app = command_group(
    "Email digests: preview what someone would get, plan and enqueue a send.",
)


@app.command("preview")
def preview_cmd(
    ctx: typer.Context,
    frequency: str = typer.Option(..., "--frequency", help="daily, weekly or monthly."),
    period: str = typer.Option(..., "--period", help="2025-07, 2025-W31 or 2025-07-31."),
    email: str = typer.Option(..., "--email", help="Whose digest to show."),
    out: Path | None = typer.Option(
        None, "--out", help="Write the HTML here (and the text beside it)."
    ),
) -> None:
    """Render exactly what one subscriber would receive, without sending or storing it."""
    st = state(ctx)
    with st.session() as session:
        try:
            p = preview_digest(
                session=session,
                env=st.env,
                settings=st.settings,
                frequency=frequency,
                period_key=period,
                email=email,
            )
        except (DigestError, SubscriberError) as exc:
            fail(str(exc))
    if out:
        out.write_text(p.html, encoding="utf-8")
        out.with_suffix(".txt").write_text(p.text, encoding="utf-8")
        out.with_suffix(".eml").write_bytes(p.message)
        console.print(
            f"Subject: {p.subject}\n{p.event_count} events. Wrote {out}, {out.with_suffix('.txt')} and {out.with_suffix('.eml')}.",
            markup=False,
        )
    else:
        console.print(f"Subject: {p.subject}\n", markup=False)
        print(p.text)


@app.command("proof")
def proof_cmd(
    ctx: typer.Context,
    period: str = typer.Option(..., "--period", help="2025-07, 2025-W31 or 2025-07-31."),
    to: str = typer.Option(..., "--to", help="Editors' addresses, comma-separated."),
    frequency: str = typer.Option("monthly", "--frequency", help="daily, weekly or monthly."),
    email: str | None = typer.Option(None, "--email", help="Whose digest (a subscriber)."),
    topics: str = typer.Option(
        "", "--topics", help="Without --email: these topics, comma-separated (default all)."
    ),
    language: str = typer.Option("en", "--language", help="Without --email: zh or en."),
) -> None:
    """Send a proof of a digest to editors' addresses now, subject marked "[Proof]"."""
    from newsletter.planning.proofs import send_proof

    st = state(ctx)
    with st.session() as session:
        try:
            sent = send_proof(
                session=session,
                env=st.env,
                settings=st.settings,
                frequency=frequency,
                period_key=period,
                to=to,
                email=email,
                topics=[t.strip() for t in topics.split(",") if t.strip()],
                language=language,
            )
        except ValueError as exc:  # ProofError, DigestError, SubscriberError
            fail(str(exc))
    console.print(
        f"Proof of {sent.view} sent to {', '.join(sent.to)}: {sent.subject}", markup=False
    )


@app.command("send")
def send_cmd(
    ctx: typer.Context,
    frequency: str = typer.Option(..., "--frequency", help="daily, weekly or monthly."),
    period: str = typer.Option(..., "--period", help="2025-07, 2025-W31 or 2025-07-31."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only say what would be sent."),
) -> None:
    """Plan the digest for every subscriber and enqueue it (run `newsletter worker` to send)."""
    st = state(ctx)
    with st.session() as session:
        total = session.execute(
            select(func.count())
            .select_from(Subscriber)
            .where(Subscriber.frequency == frequency, Subscriber.status == "active")
        ).scalar_one()
        with progress_bar("planning") as bar:
            task = bar.add_task("plan", total=total)
            try:
                summary = plan_period(
                    session=session,
                    env=st.env,
                    settings=st.settings,
                    frequency=frequency,
                    period_key=period,
                    dry_run=dry_run,
                    progress=lambda n: bar.advance(task, n),
                )
            except DigestError as exc:
                fail(str(exc))
    events = sorted(set(summary.segments.values()))
    span = f"{events[0]}-{events[-1]}" if len(events) > 1 else (str(events[0]) if events else "0")
    head = "Dry run: would send" if dry_run else "Planned"
    console.print(
        f"{head} the {frequency} digest for {summary.period} to {summary.recipients} recipient(s) "
        f"in {len(summary.segments)} segment(s), {span} event(s) each; "
        f"{summary.skipped_empty} subscriber(s) have no events and get nothing."
    )
    if dry_run:
        for key, n in sorted(summary.segments.items()):
            console.print(
                f"  {key}: {summary.segment_recipients[key]} recipient(s), {n} event(s)",
                markup=False,
            )
    else:
        console.print(
            f"Enqueued {summary.enqueued} new message(s); {summary.already_enqueued} were already queued or sent."
        )
