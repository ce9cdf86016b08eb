"""`newsletter admin token ...`: bearer tokens for the admin API and UI."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, fail, state
from newsletter.cli.groups import command_group
from newsletter.core.admin_tokens import TokenAdminError, create_token, list_tokens, revoke_token

app = command_group("Administration of the service: API tokens.")
token_app = command_group("Admin API tokens.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def create_cmd(
    ctx: typer.Context, name: str = typer.Argument(..., help="Who or what uses it.")
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    with state(ctx).session() as session:
        try:
            _row, token = create_token(session=session, name=name)
        except TokenAdminError as exc:
            fail(str(exc))
    console.print(f"Token for {name} (shown once):", markup=False)
    print(token)


@token_app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Tokens with their state (never the tokens themselves)."""
    with state(ctx).session() as session:
        table = Table("name", "created", "last used", "revoked")
        for t in list_tokens(session=session):
            table.add_row(
                t.name,
                str(t.created_at)[:19],
                str(t.last_used_at or "-")[:19],
                str(t.revoked_at or "-")[:19],
            )
    console.print(table)


@token_app.command("revoke")
def revoke_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Revoke a token at once."""
    with state(ctx).session() as session:
        try:
            revoke_token(session=session, name=name)
        except TokenAdminError as exc:
            fail(str(exc))
    console.print(f"Revoked token {name}.")
