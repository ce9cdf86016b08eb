"""Migrations on both databases, and the refusal to run on an out-of-date schema."""

import pytest
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

import newsletter.core.models  # noqa: F401 - the tables, also when this file runs alone
from newsletter.core.db import (
    SchemaOutOfDate,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
)


def test_upgrade_creates_every_model_table(engine):
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables


# SQLite's reflection cannot read expression indexes (lower(name)); core/db.py's
# DIALECT_INDEXES lists them and the comparison leaves them out
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_match_the_models(engine):
    """Autogenerate finds nothing to do: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from newsletter.core.db import include_object

    with engine.connect() as conn:
        # the scheduler's own table (as `serve` makes it) is not ours to compare; on
        # PostgreSQL it goes again with the transaction, SQLite's file is this test's own
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS apscheduler_jobs "
            "(id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT)"
        )
        conn.exec_driver_sql(
            "CREATE INDEX IF NOT EXISTS ix_apscheduler_jobs_next_run_time "
            "ON apscheduler_jobs (next_run_time)"
        )
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_downgrade_and_upgrade_round_trip(engine):
    downgrade(engine, "base")
    assert current_revision(engine) is None
    with pytest.raises(SchemaOutOfDate, match="newsletter db upgrade"):
        check_schema(engine)
    upgrade(engine)
    check_schema(engine)


def test_cli_refuses_out_of_date_schema(cli, engine):
    downgrade(engine, "base")
    result = cli("events", "list")
    assert result.exit_code == 1
    assert "Run: newsletter db upgrade" in result.stderr
    assert cli("db", "current").exit_code == 1
    assert cli("db", "upgrade").exit_code == 0
    assert cli("events", "list").exit_code == 0


def test_sqlite_uses_wal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


@pytest.mark.postgres
def test_postgres_has_partial_index_for_claims(pg_database):
    engine = make_engine(pg_database)
    upgrade(engine)
    with engine.connect() as conn:
        indexdef = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_delivery_due'")
        ).scalar()
    engine.dispose()
    assert "WHERE" in indexdef and "queued" in indexdef
