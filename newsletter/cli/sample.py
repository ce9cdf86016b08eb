"""`newsletter sample load`: the July 2025 sample events and sharp take."""

from __future__ import annotations

import typer

from ..sample import load_sample
from .common import console, state

app = typer.Typer(help="Sample data for a first look.", no_args_is_help=True)


@app.command("load")
def load_cmd(ctx: typer.Context) -> None:
    """Create the default topics and load the sample events (safe to run again)."""
    with state(ctx).session() as session:
        result = load_sample(session=session)
    console.print(
        f"Sample data: {result.topics_created} topic(s) created, "
        f"{result.report.new} new event(s), {result.report.duplicate} already present, "
        f"{result.takes} sharp take(s) stored."
    )
