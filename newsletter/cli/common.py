"""What every command shares: settings, the database, console output and failing cleanly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:  # the database and settings libraries load when a command needs them
    from rich.progress import Progress, ProgressColumn
    from sqlalchemy import Engine
    from sqlmodel import Session

    from newsletter.core.settings import Settings

# stored text is printed as it is: no console markup ("[/red]" in a title would raise)
# and no emoji codes
console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def progress_bar(
    label: str,
    *columns: ProgressColumn | str,
    on: Console = console,
    quiet: bool = False,
) -> Progress:
    """A transient bar, only on a terminal (a pipe or a log gets the summary alone):
    the label, then `columns` (a bar with done/total when none are given), then the
    elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown = columns or (BarColumn(), MofNCompleteColumn())
    return Progress(
        TextColumn(label),
        *shown,
        TimeElapsedColumn(),
        console=on,
        transient=True,
        disable=quiet or not on.is_terminal,
    )


@dataclass
class State:
    settings: Settings
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def engine(self) -> Engine:
        """The database, which must exist: only `db upgrade` creates one."""
        from newsletter.core.db import make_engine

        if self._engine is None:
            self._engine = make_engine(self.settings.database_url, create=False)
        return self._engine

    def creating_engine(self) -> Engine:
        """For `db upgrade`: an SQLite file that does not exist yet is created."""
        from newsletter.core.db import make_engine

        return make_engine(self.settings.database_url)

    def checked_engine(self) -> Engine:
        """The engine, after making sure the schema matches this code."""
        from sqlalchemy.exc import OperationalError

        from newsletter.core.db import SchemaOutOfDate, check_schema

        try:
            check_schema(self.engine)
        except SchemaOutOfDate as exc:
            fail(str(exc))
        except OperationalError as exc:
            fail(database_problem(exc))
        return self.engine

    def require_secret_key(self) -> None:
        """Commands that serve the web app or send mail (signing links) need a strong key."""
        from newsletter.core.keys import SecretKeyError, check_secret_key

        try:
            check_secret_key(self.settings)
        except SecretKeyError as exc:
            fail(str(exc))

    @property
    def env(self):
        from newsletter.rendering.editions import make_environment

        return make_environment(self.settings.templates_dir)

    @contextmanager
    def session(self) -> Iterator[Session]:
        from newsletter.core.db import session_scope

        with session_scope(self.checked_engine()) as session:
            yield session


def load_state(database_url: str | None) -> State:
    from pydantic import ValidationError

    from newsletter.core.settings import load_settings

    overrides = {"database_url": database_url} if database_url else {}
    try:
        return State(settings=load_settings(**overrides))
    except ValidationError as exc:
        fail("invalid settings: " + settings_problems(exc))
        raise  # unreachable: fail() exits


def settings_problems(exc) -> str:
    """Name each bad setting as the operator wrote it (NEWSLETTER_...), with the reason."""
    return "; ".join(
        f"NEWSLETTER_{'_'.join(str(p) for p in e['loc'][:1]).upper()}: {e['msg']}"
        for e in exc.errors()
    )


def print_table(table) -> None:
    """A table whole: on a terminal it fits the screen (long cells wrap); in a pipe or a
    file, where nothing wraps lines, it is as wide as its content, so no cell is cut."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update(width=10_000), table).maximum
    wide = Console(
        file=console.file,
        width=max(console.width, needed),
        highlight=False,
        soft_wrap=True,
        markup=False,
        emoji=False,
    )
    wide.print(table)


def say_empty(what: str, first: str) -> None:
    """An empty list says how to add its first entry (rather than an empty table)."""
    console.print(f"No {what} yet. Add the first with:\n  {first}")


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"Error: {message}", markup=False)
    raise typer.Exit(code)


def database_problem(exc: Exception) -> str:
    """What an operator can do about a database error, in one sentence."""
    from newsletter.core.db import SchemaOutOfDate

    if isinstance(exc, SchemaOutOfDate):
        return str(exc)
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    low = detail.lower()
    if "readonly" in low or "read-only" in low or "read only" in low:
        return (
            f"the database is read-only ({detail}); check the permissions of the "
            "database file and its folder, or the server's read-only setting"
        )
    if "locked" in low:
        return f"the database is busy ({detail}); another process holds a lock, try again"
    if "unable to open" in low:
        return (
            f"cannot open the database ({detail}): the file or its folder does not exist "
            "or is not accessible; create it with: newsletter db upgrade"
        )
    if "no such table" in low or "no such column" in low or "does not exist" in low:
        return f"the database schema is out of date ({detail}); run: newsletter db upgrade"
    if "connection" in low or "connect" in low:
        return f"cannot connect to the database server ({detail})"
    return f"the database refused the operation ({type(orig).__name__}: {detail})"


def is_database_error(exc: BaseException) -> bool:
    """A database error (or a schema that does not match the code): reported in one line
    by the root command. The libraries are loaded already if the command used them."""
    dbapi = sys.modules.get("sqlalchemy.exc")
    core_db = sys.modules.get("newsletter.core.db")
    return bool(
        (dbapi is not None and isinstance(exc, dbapi.DBAPIError))
        or (core_db is not None and isinstance(exc, core_db.SchemaOutOfDate))
    )


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj


def is_terminal() -> bool:
    return sys.stdout.isatty()
