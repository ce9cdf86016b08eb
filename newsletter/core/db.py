"""Database engine, sessions and schema migrations (Alembic)."""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import (
    Date,
    DateTime,
    Engine,
    any_,
    bindparam,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlmodel import Session, create_engine

if TYPE_CHECKING:  # Alembic loads only to migrate: a command's start-up does not pay for it
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database is not at the newest migration."""


def make_engine(url: str | URL, *, create: bool = True, **kwargs) -> Engine:
    """An engine with SQLite tuned for a single-file service (WAL, foreign keys).

    With `create=False` (the running service and every command but `db upgrade`) an
    SQLite file is opened read-write only if it exists, and a connection whose file was
    deleted or replaced is dropped: a write then fails instead of landing in a new empty
    database or in an unlinked file that vanishes with the process.
    """
    if str(url).startswith("sqlite"):
        path = sqlite_file(url)
        if path is not None and not create:
            url = existing_file_url(url, path)
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 30})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            # planning leaves out suppressed addresses by their hash, computed in SQL
            from newsletter.core.addresses import address_hash

            dbapi_conn.create_function("nl_address_hash", 1, address_hash, deterministic=True)
            if path is not None:
                record.info["sqlite_file"] = _identity(path)

        if path is not None and not create:

            @event.listens_for(engine, "checkout")
            def _same_file(_dbapi_conn, record, _proxy):
                if _identity(path) != record.info.get("sqlite_file"):
                    # reconnect; mode=rw then fails if the file is gone
                    raise DisconnectionError(f"the database file {path} was removed or replaced")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **kwargs)
    if engine.dialect.driver == "psycopg":

        @event.listens_for(engine, "connect")
        def _binary_arrays(dbapi_conn, _record):
            # lists (ANY(array), unnest() batches) go in binary: psycopg writes the text
            # form element by element in Python, about four times the CPU
            from psycopg.types.array import ListBinaryDumper

            dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    return engine


def sqlite_file(url: str | URL) -> str | None:
    """The file of an SQLite URL, None for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.abspath(database)


def existing_file_url(url: str | URL, path: str) -> URL:
    """The same database as an SQLite URI that opens the file only if it exists."""
    parsed = make_url(url)
    query = {**parsed.query, "mode": "rw", "uri": "true"}
    return parsed.set(database=f"file:{quote(path)}", query=query)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


FOREIGN_TABLES = {"apscheduler_jobs"}  # APScheduler's job store makes its own table


# expression and operator-class indexes that differ per dialect: defined by their
# migration (0010) only, so the models' comparison with the database leaves them alone
DIALECT_INDEXES = frozenset({"ix_subscriber_name_lower", "ix_subscriber_email_pattern"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Migrations (and their comparison with the models) leave foreign tables alone,
    indexes included, and the per-dialect indexes of DIALECT_INDEXES."""
    if type_ == "index" and name in DIALECT_INDEXES:
        return False
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in FOREIGN_TABLES


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.M)


def head_revision() -> str:
    """The newest migration. Read from the `revision` / `down_revision` lines of the
    version files, since every command checks it and Alembic's script machinery takes a
    good part of a second to import; anything unusual (several heads, no file) is left
    to Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    try:
        for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
            found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
            revisions.add(ast.literal_eval(found["revision"]))
            down = ast.literal_eval(found["down_revision"])
            parents.update(down if isinstance(down, tuple | list) else [down] if down else [])
    except (KeyError, ValueError, SyntaxError):
        revisions = set()
    heads = revisions - parents
    if len(heads) == 1:
        return heads.pop()
    return _alembic_head()


def _alembic_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's revision, None for a database without a schema."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        if len(rows) <= 1:
            return rows[0] if rows else None
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(conn).get_current_revision()  # raises: several heads


def check_schema(engine: Engine) -> None:
    """Refuse to work on a database that is behind (or ahead of) this code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}"
        raise SchemaOutOfDate(
            f"The database {state}; this version needs {head}. Run: newsletter db upgrade"
        )


def bulk_insert(session: Session, table, columns: list[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert many rows in the session's transaction, the fastest way each database has:
    COPY on PostgreSQL, the driver's executemany on SQLite, values converted as SQLAlchemy
    converts them (timestamps, JSON). No defaults are applied: give every column needed."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    dbapi = conn.connection.driver_connection
    assert dbapi is not None, "the session's connection is open"
    names = ", ".join(columns)
    convert = [
        (i, p) for i, name in enumerate(columns) if (p := _processor(table.c[name].type, dialect))
    ]
    if convert:
        converted = [list(row) for row in rows]
        seen: dict = {}  # e.g. one timestamp for every row: converted once
        for row in converted:
            for i, process in convert:
                value = row[i]
                try:
                    row[i] = seen[(i, value)]
                except KeyError:
                    row[i] = seen[(i, value)] = process(value)
                except TypeError:  # not hashable (a JSON mapping)
                    row[i] = process(value)
            if len(seen) > 10_000:
                seen.clear()
        rows = converted
    if dialect.name == "postgresql":
        with dbapi.cursor() as cur, cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for values in rows:
                copy.write_row(values)
        return
    marks = ", ".join("?" * len(columns))
    cur = dbapi.cursor()
    try:
        cur.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)
    finally:
        cur.close()


def _processor(type_, dialect):
    """How bulk_insert converts a column's values: as SQLAlchemy binds them, and on
    PostgreSQL timestamps and dates as ISO text (COPY's text format reads it; psycopg
    takes microseconds to write each one, and a chunk's rows mostly share one)."""
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    if dialect.name != "postgresql":
        return process
    if process is None:
        return _iso_text if isinstance(type_, Date | DateTime) else None
    return lambda value: _iso_text(process(value))


def _iso_text(value):
    return value.isoformat() if isinstance(value, dt.date) else value


def reserve_ids(session: Session, table, n: int) -> list[int]:
    """n ids for new rows of a table with an integer primary key `id`, for bulk_insert.

    PostgreSQL takes them from the table's sequence. SQLite has none: the ids after the
    highest one are used, and a writer that takes them first makes the insert fail on
    the primary key (the caller then falls back to inserting row by row)."""
    if session.get_bind().dialect.name == "postgresql":
        # one array, and the sequence looked up once (OFFSET 0 keeps the planner from
        # calling pg_get_serial_sequence for every id): several times quicker than rows
        ids = session.execute(
            text(
                "SELECT array_agg(nextval(s.seq)) FROM (SELECT pg_get_serial_sequence(:t, 'id')"
                "::regclass AS seq OFFSET 0) s, generate_series(1, :n)"
            ),
            {"t": table.name, "n": n},
        ).scalar_one()
        return list(ids or [])
    top = session.execute(text(f"SELECT coalesce(max(id), 0) FROM {table.name}")).scalar_one()
    return list(range(top + 1, top + 1 + n))


def among(dialect: str, column, values: Iterable[Any]):
    """`column IN (values)` for a batch's worth of values. On PostgreSQL it is written
    `column = ANY(array)`, one parameter: the statement's text is then the same however
    many values there are, so neither SQLAlchemy nor the driver renders and parses it
    again for each batch (for an IN list of 250 ids that cost more than the rows)."""
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def values_in(session: Session, column, values: list, *, chunk: int = 1000) -> set:
    """The values of `column` (a model attribute of a plain type: text, a number) that
    equal one of `values`: one `= ANY(array)` query on PostgreSQL (a thousand-parameter
    IN list costs more to parse than to run), IN lists of `chunk` on SQLite."""
    found: set = set()
    if not values:
        return found
    table = column.class_.__table__.name
    name = column.key
    if session.get_bind().dialect.name == "postgresql":
        if session.autoflush:
            session.flush()  # as session.execute would: pending rows are seen
        # the array goes in binary (%b): psycopg writes the text form element by
        # element in Python, four times the CPU for an import's 5,000 addresses
        driver = session.connection().connection.driver_connection
        assert driver is not None, "a live connection has its driver's connection"
        with driver.cursor() as cur:
            cur.execute(f"SELECT {name} FROM {table} WHERE {name} = ANY(%b)", [list(values)])
            found.update(value for (value,) in cur)
        return found
    for i in range(0, len(values), chunk):
        found.update(
            session.execute(select(column).where(column.in_(list(values[i : i + chunk])))).scalars()
        )
    return found
