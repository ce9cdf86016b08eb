"""`newsletter admin token ...`: bearer tokens for the admin API and UI."""

from __future__ import annotations

import typer
from rich.table import Table

from newsletter.cli.common import console, fail, state
from newsletter.cli.groups import command_group
from newsletter.core.admin_tokens import (
    ROLE_WORDS,
    TokenAdminError,
    create_token,
    has_live_owner,
    list_tokens,
    revoke_token,
    set_role,
)

app = command_group("Administration of the service: API tokens.")
token_app = command_group("Admin API tokens.")
app.add_typer(token_app, name="token")


@token_app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Who or what uses it."),
    role: str = typer.Option(
        None,
        "--role",
        help="viewer (reads only), editor (runs the newsletter) or owner (also tokens and "
        "personal data). Default: owner for the first token, editor after that.",
    ),
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    with state(ctx).session() as session:
        try:
            if role is None:
                role = "editor" if has_live_owner(session=session) else "owner"
            row, token = create_token(session=session, name=name, role=role)
        except TokenAdminError as exc:
            fail(str(exc))
    console.print(
        f"Token for {name}, role {row.role} ({ROLE_WORDS[row.role]}), shown once:",
        markup=False,
    )
    print(token)


@token_app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """Tokens with their state (never the tokens themselves)."""
    with state(ctx).session() as session:
        table = Table("name", "role", "created", "last used", "revoked")
        for t in list_tokens(session=session):
            table.add_row(
                t.name,
                t.role,
                str(t.created_at)[:19],
                str(t.last_used_at or "-")[:19],
                str(t.revoked_at or "-")[:19],
            )
    console.print(table)


@token_app.command("role")
def role_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    role: str = typer.Argument(..., help="viewer, editor or owner."),
) -> None:
    """Change what a token may do; its open admin sessions follow at once."""
    with state(ctx).session() as session:
        try:
            row = set_role(session=session, name=name, role=role)
        except TokenAdminError as exc:
            fail(str(exc))
    console.print(f"Token {name} is now {row.role} ({ROLE_WORDS[row.role]}).", markup=False)


@token_app.command("revoke")
def revoke_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Revoke a token at once."""
    with state(ctx).session() as session:
        try:
            revoke_token(session=session, name=name)
        except TokenAdminError as exc:
            fail(str(exc))
    console.print(f"Revoked token {name}.")
