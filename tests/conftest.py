"""Shared fixtures: a migrated database per test (SQLite file, or PostgreSQL when given)."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel
from typer.testing import CliRunner

from newsletter.core.db import current_revision, head_revision, make_engine, upgrade
from tests.support.env import BACKEND, PG_URL, ROOT, TEST_SECRET_KEY


def pytest_report_header(config):
    return f"database backend: {BACKEND}" + (f" ({PG_URL})" if BACKEND == "postgres" else "")


BROWSER_FIXTURES = frozenset({"browser", "page"})


def pytest_collection_modifyitems(config, items):
    # `pytest -m bad_input` runs the bad-input suite: every test_bad_input*.py (all in tests/bad_input/)
    for item in items:
        if item.path.name.startswith("test_bad_input"):
            item.add_marker(pytest.mark.bad_input)
    # Chromium tests run last in each process, so the one browser it starts (`browser`,
    # session-scoped) never holds Playwright's event loop while a later test calls
    # asyncio.run(). The sort is stable: every xdist worker sees the same order.
    items.sort(key=lambda item: bool(BROWSER_FIXTURES & set(item.fixturenames)))
    if BACKEND == "postgres":
        # the PostgreSQL pass repeats what depends on the database, not the rest
        independent = pytest.mark.skip(
            reason="does not use the database: runs in the SQLite pass only"
        )
        in_browser = pytest.mark.skip(
            reason="Chromium checks what a page shows: SQLite pass only (the pages' "
            "queries run on PostgreSQL in the TestClient and API tests)"
        )
        for item in items:
            if "postgres" in item.keywords:
                continue
            if BROWSER_FIXTURES & set(item.fixturenames):
                item.add_marker(in_browser)
            elif "db_url" not in item.fixturenames:
                item.add_marker(independent)
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def secret_key_env(monkeypatch):
    """Commands, workers and subprocesses of every test find a valid key in the environment."""
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY_FILE", raising=False)


@pytest.fixture(autouse=True)
def restore_logging():
    """Commands run in-process (`serve`, `worker`) point the root logger at the stderr of
    the moment; put pytest's handlers back so later tests never log to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _admin_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/postgres"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, dropped afterwards."""
    if not PG_URL:
        pytest.skip("needs PostgreSQL: set NEWSLETTER_TEST_POSTGRES_URL")
    name = f"newsletter_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(_admin_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def db_url(request, tmp_path) -> str:
    """URL of an empty, migrated database for one test."""
    if BACKEND == "postgres":
        url = request.getfixturevalue("pg_database")
        engine = make_engine(url)
        if current_revision(engine) != head_revision():  # Alembic only when needed
            upgrade(engine)
        tables = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
        with engine.begin() as conn:
            # a connection an earlier test leaked must not block the reset (nor hang the run)
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            # the scheduler's job store is not one of our models: an earlier test's jobs
            # would make this database look like one a scheduler already ran on
            conn.execute(text("DROP TABLE IF EXISTS apscheduler_jobs"))
        engine.dispose()
        return url
    path = tmp_path / "test.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def sample(engine):
    """The database with the default topics and the July 2025 sample events."""
    from newsletter.pipeline.sample import load_sample

    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    return engine


@pytest.fixture
def cli(db_url, monkeypatch, tmp_path):
    """Run `newsletter ...` in-process against the test database; returns the result."""
    from newsletter.cli import app

    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return run


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1 recording every message it accepts."""
    from tests.support.smtp_server import SmtpServer

    with SmtpServer() as server:
        yield server


@pytest.fixture
def chat_receiver():
    """A real HTTP receiver on 127.0.0.1 playing every chat platform."""
    from tests.support.chat_receiver import ChatReceiver

    with ChatReceiver() as receiver:
        yield receiver


@pytest.fixture
def web_settings(db_url, tmp_path, smtp_server):
    """Settings for a web app under test: mail goes to the local SMTP server."""
    from newsletter.core.settings import Settings

    return Settings(
        database_url=db_url,
        smtp_url=smtp_server.url,
        secret_key=TEST_SECRET_KEY,
        base_url="http://127.0.0.1",
        outbox_dir=tmp_path / "outbox",
        retry_base_seconds=0.02,
    )


@pytest.fixture
def loopback_settings(web_settings):
    """Web settings that also let webhooks and feeds reach servers on 127.0.0.1."""
    return web_settings.model_copy(
        update={
            "webhook_allow_http": True,
            "webhook_allow_networks": ["127.0.0.0/8"],
            "alert_batch_seconds": 0,
            "webhook_timeout": 3,
        }
    )


@pytest.fixture
def live_server(web_settings, engine):
    """The app served by uvicorn on 127.0.0.1 (a real HTTP server, in a thread)."""
    from newsletter.web.app import create_app
    from tests.support.smtp_server import free_port
    from tests.support.web import serving

    port = free_port()
    settings = web_settings.model_copy(update={"base_url": f"http://127.0.0.1:{port}"})
    with serving(create_app(settings=settings, engine=engine), port) as server:
        server.settings = settings
        yield server


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download), one per test
    process: each test gets a fresh context (`page`), so no cookies or storage are shared.

    Playwright's sync API holds an event loop in this thread while it runs, which would
    break asyncio.run() in the tests that follow: pytest_collection_modifyitems runs the
    browser tests last.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium (scripts/setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot_dir(tmp_path):
    """Where browser tests save screenshots: the README's folder when
    NEWSLETTER_UPDATE_SCREENSHOTS=1, otherwise a temporary one (the tree stays clean)."""

    if os.environ.get("NEWSLETTER_UPDATE_SCREENSHOTS") == "1":
        folder = ROOT / "docs" / "screenshots"
    else:
        folder = tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
