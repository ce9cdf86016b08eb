"""What every command shares: settings, the database, console output and failing cleanly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from ..db import SchemaOutOfDate, check_schema, make_engine, session_scope
from ..settings import Settings, load_settings

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class State:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def checked_engine(self) -> Engine:
        """The engine, after making sure the schema matches this code."""
        try:
            check_schema(self.engine)
        except SchemaOutOfDate as exc:
            fail(str(exc))
        except OperationalError as exc:
            fail(f"cannot open the database: {exc.orig}")
        return self.engine

    def require_secret_key(self) -> None:
        """Commands that serve the web app or send mail (signing links) need a strong key."""
        from ..keys import SecretKeyError, check_secret_key

        try:
            check_secret_key(self.settings)
        except SecretKeyError as exc:
            fail(str(exc))

    @property
    def env(self):
        from ..rendering import make_environment

        return make_environment(self.settings.templates_dir)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.checked_engine()) as session:
            yield session


def load_state(database_url: str | None) -> State:
    overrides = {"database_url": database_url} if database_url else {}
    return State(settings=load_settings(**overrides))


def fail(message: str, code: int = 1) -> None:
    err_console.print(f"Error: {message}", markup=False)
    raise typer.Exit(code)


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj


def is_terminal() -> bool:
    return sys.stdout.isatty()
