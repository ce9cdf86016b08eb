"""`newsletter sample load`: the July 2025 sample events and sharp take."""

from __future__ import annotations

import typer

from newsletter.cli.common import State, console, state
from newsletter.cli.groups import command_group
from newsletter.pipeline import plan_period
from newsletter.pipeline.sample import SAMPLE_PERIOD, add_demo_readers, load_sample

app = command_group("Sample data for a first look.")


@app.command("load")
def load_cmd(
    ctx: typer.Context,
    with_readers: bool = typer.Option(
        False,
        "--with-readers",
        help="Also add two demo subscribers and queue their July 2025 digest.",
    ),
) -> None:
    """Create the default topics and load the sample events (safe to run again)."""
    for line in load_sample_data(state(ctx), with_readers=with_readers):
        console.print(line)


def load_sample_data(st: State, *, with_readers: bool) -> list[str]:
    """The sample (and demo readers with their July digest queued); what was done, in lines."""
    with st.session() as session:
        result = load_sample(session=session)
        readers = add_demo_readers(session=session) if with_readers else 0
        if with_readers:
            summary = plan_period(
                session=session,
                env=st.env,
                settings=st.settings,
                frequency="monthly",
                period_key=SAMPLE_PERIOD,
            )
    lines = [
        f"Sample data: {result.topics_created} topic(s) created, "
        f"{result.report.new} new event(s), {result.report.duplicate} already present, "
        f"{result.takes} sharp take(s) stored."
    ]
    if with_readers:
        lines.append(
            f"Demo readers: {readers} added; {summary.enqueued} July 2025 digest(s) queued."
        )
    return lines
