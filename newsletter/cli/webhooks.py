"""`newsletter webhooks ...`: team chat endpoints."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from pydantic import ValidationError
from rich.table import Table

from newsletter.audience.endpoints import (
    EndpointIn,
    WebhookError,
    add_endpoint,
    endpoint_topics,
    get_endpoint,
    list_endpoints,
    mask,
    mask_url,
    update_endpoint,
)
from newsletter.cli.common import console, fail, print_table, say_empty, state
from newsletter.cli.groups import command_group
from newsletter.cli.topics import validation_message
from newsletter.core import platforms
from newsletter.pipeline import disable_endpoint, enable_endpoint, remove_endpoint
from newsletter.topics.catalogue import TopicError

app = command_group(
    "Team chat webhooks: add, list, test, enable, disable, edit, remove.\n\n"
    f"Platforms: {platforms.labels_text()}."
)


@app.command("add")
def add_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="A name for this endpoint."),
    platform: str = typer.Option(..., "--platform", help=platforms.names_text() + "."),
    url: str = typer.Option(..., "--url", help="The webhook URL (https)."),
    secret: str | None = typer.Option(None, "--secret", help=platforms.secret_help()),
    topics: str = typer.Option(..., "--topics", help="Comma-separated topic slugs."),
    mode: str = typer.Option("instant", "--mode", help="instant, daily, weekly or monthly."),
    language: str = typer.Option("en", "--language", help="zh or en."),
) -> None:
    """Add an endpoint; its URL must resolve to public addresses only."""
    st = state(ctx)
    try:
        ep_in = EndpointIn(
            name=name,
            platform=platform,
            url=url,
            secret=secret,
            topics=topics,
            mode=mode,
            language=language,
        )
    except ValidationError as exc:
        fail(validation_message(exc))
    with st.session() as session:
        try:
            ep = add_endpoint(session=session, settings=st.settings, ep_in=ep_in)
        except (WebhookError, TopicError) as exc:
            fail(str(exc))
    # printed once committed: a reader that goes away (`| head -1`) cannot undo the add
    console.print(f"Added webhook {ep.name} ({ep.platform}, {ep.mode}).", markup=False)
    if platforms.get(ep.platform).new_secret and not secret:
        console.print(
            f"Signing secret (shown once; give it to the receiver): {ep.secret}", markup=False
        )


@app.command("list")
def list_cmd(
    ctx: typer.Context, fmt: str = typer.Option("table", "--format", help="table or json.")
) -> None:
    """Every endpoint, with its state; secrets are masked."""
    with state(ctx).session() as session:
        rows: list[dict[str, Any]] = [
            {
                "name": e.name,
                "platform": e.platform,
                "mode": e.mode,
                "language": e.language,
                "topics": [t.slug for t in endpoint_topics(session=session, endpoint=e)],
                "enabled": e.enabled,
                "disabled_reason": e.disabled_reason,
                "consecutive_failures": e.consecutive_failures,
                "secret": mask(e.secret) if not e.secret_env else f"${e.secret_env}",
                "url": mask_url(e.url),
            }
            for e in list_endpoints(session=session)
        ]
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        say_empty(
            "webhooks",
            "newsletter webhooks add infra --platform slack "
            "--url https://hooks.slack.com/services/... --topics hardware",
        )
        return
    table = Table(title=f"{len(rows)} webhook(s)", title_justify="left")
    for column in ("name", "platform", "mode", "lang", "url", "topics", "state", "failures"):
        table.add_column(column, overflow="fold")  # wrapped on a narrow screen, never cut
    table.add_column("secret", overflow="fold", min_width=8)
    for r in rows:
        state_text = "enabled" if r["enabled"] else f"DISABLED: {r['disabled_reason']}"
        table.add_row(
            r["name"],
            r["platform"],
            r["mode"],
            r["language"],
            r["url"],
            ", ".join(r["topics"]),
            state_text,
            str(r["consecutive_failures"]),
            r["secret"],
        )
    print_table(table)


@app.command("edit")
def edit_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    url: str | None = typer.Option(None, "--url"),
    secret: str | None = typer.Option(None, "--secret"),
    topics: str | None = typer.Option(None, "--topics"),
    mode: str | None = typer.Option(None, "--mode"),
    language: str | None = typer.Option(None, "--language"),
) -> None:
    """Change an endpoint."""
    st = state(ctx)
    changes = {"url": url, "secret": secret, "topics": topics, "mode": mode, "language": language}
    with st.session() as session:
        try:
            update_endpoint(
                session=session,
                settings=st.settings,
                endpoint=get_endpoint(session=session, name=name),
                changes=changes,
            )
        except ValidationError as exc:
            fail(validation_message(exc))
        except (WebhookError, TopicError) as exc:
            fail(str(exc))
    console.print(f"Updated webhook {name}.")


@app.command("remove")
def remove_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete an endpoint (its queued messages are cancelled)."""
    with state(ctx).session() as session:
        try:
            cancelled = remove_endpoint(
                session=session, endpoint=get_endpoint(session=session, name=name)
            )
        except WebhookError as exc:
            fail(str(exc))
    console.print(f"Removed webhook {name}; {cancelled} waiting message(s) cancelled.")


@app.command("disable")
def disable_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    reason: str = typer.Option("disabled by an admin", "--reason"),
) -> None:
    """Stop sending to an endpoint; queued messages wait until it is enabled."""
    with state(ctx).session() as session:
        try:
            disable_endpoint(
                session=session, endpoint=get_endpoint(session=session, name=name), reason=reason
            )
        except WebhookError as exc:
            fail(str(exc))
    console.print(f"Disabled webhook {name}.")


@app.command("enable")
def enable_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Resume an endpoint; held messages are sent."""
    with state(ctx).session() as session:
        try:
            n = enable_endpoint(session=session, endpoint=get_endpoint(session=session, name=name))
        except WebhookError as exc:
            fail(str(exc))
    console.print(f"Enabled webhook {name}; {n} held message(s) queued again.")


@app.command("test")
def test_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Send a sample card now and print the platform's answer."""
    from newsletter.delivery.chat_check import send_test

    st = state(ctx)
    with st.session() as session:
        try:
            answer = asyncio.run(
                send_test(session=session, settings=st.settings, env=st.env, name=name)
            )
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the admin
            fail(f"test message to {name} failed: {exc}")
    console.print(f"Sent. The platform answered: {answer}", markup=False)
