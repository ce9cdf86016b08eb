"""`newsletter --help` and the command lists: fast to start (nothing heavy imported up
front) and every summary whole, in real subprocesses as a user runs them."""

import json
import os
import subprocess
import sys

import pytest

from newsletter.cli import Root, app
from newsletter.cli.groups import load, summary
from newsletter.core.db import _alembic_head, head_revision

HEAVY = ("sqlalchemy", "sqlmodel", "fastapi", "jinja2", "feedparser", "alembic", "httpx", "rich")

# runs the CLI as the `newsletter` script does, then reports which heavy libraries it loaded
PROBE = """
import json, sys
from newsletter.cli import app
try:
    app(prog_name="newsletter", args=sys.argv[1:])
except SystemExit:
    pass
heavy = {heavy!r}
sys.stderr.write("\\nLOADED " + json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def loaded_by(*args: str, env: dict | None = None) -> tuple[list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    shown, _, loaded = done.stderr.rpartition("\nLOADED ")
    return json.loads(loaded), done.stdout + shown


@pytest.mark.parametrize("args", [["--help"], [], ["--version"]])
def test_help_and_version_import_no_database_web_or_template_library(args):
    loaded, out = loaded_by(*args)
    assert loaded == [], f"`newsletter {' '.join(args)}` imported {loaded}"
    assert "newsletter" in out and "Traceback" not in out


def test_a_short_command_loads_the_database_but_not_migrations_web_or_templates(db_url):
    loaded, out = loaded_by("topics", "list", env={"NEWSLETTER_DATABASE_URL": db_url})
    assert "sqlalchemy" in loaded  # it did read the database...
    assert not {"fastapi", "jinja2", "feedparser", "alembic", "httpx"} & set(loaded), loaded


def test_the_console_script_runs_and_shows_the_version():
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("newsletter ")


def test_root_summaries_match_the_commands_they_stand_for():
    for name, entry in Root.lazy.items():
        assert summary(load(entry.target, name)) == entry.summary, name


def every_group_help():
    """`--help` of the root and every group and command, as a terminal shows it."""
    from typer.main import get_command
    from typer.testing import CliRunner

    runner = CliRunner()
    root = get_command(app)
    pages = {"": runner.invoke(app, ["--help"], terminal_width=80).output}
    for name in Root.lazy:
        cmd = root.get_command(None, name)  # type: ignore[arg-type]
        pages[name] = runner.invoke(app, [name, "--help"], terminal_width=80).output
        for sub in getattr(cmd, "commands", {}):
            pages[f"{name} {sub}"] = runner.invoke(
                app, [name, sub, "--help"], terminal_width=80
            ).output
    return pages


def test_no_summary_is_cut_off():
    pages = every_group_help()
    assert len(pages) > 40
    for name, page in pages.items():
        assert "Usage:" in page, name
        commands = page.split("Commands:", 1)[1] if "Commands:" in page else ""
        assert "..." not in commands, f"newsletter {name} --help:\n{page}"
    # the long ones are wrapped onto a second line, whole
    root = " ".join(pages[""].split())
    assert "export, list, show, enable, remove, sync rosters." in root


def test_the_head_revision_read_from_the_files_is_alembics():
    assert head_revision() == _alembic_head()
