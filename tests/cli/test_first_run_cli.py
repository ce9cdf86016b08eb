"""What a newcomer meets in the CLI: a new database with the default topics, empty lists
that say how to begin, `schedule show` in plain words, webhooks with their language and
a masked URL, and links that follow the port `serve` listens on."""

import datetime as dt
import json
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from newsletter.cli.service import links_follow
from newsletter.core.settings import Settings

DEFAULT_TOPICS = ["governance", "capital", "hardware", "open-source"]


def newsletter(*args: str, db: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "--database-url", db, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_db_upgrade_on_a_new_database_creates_the_default_topics_once(tmp_path):
    db = f"sqlite:///{tmp_path / 'new.db'}"
    first = newsletter("db", "upgrade", db=db)
    assert first.returncode == 0, first.stderr
    assert "Created the default topics: governance, capital, hardware, open-source" in first.stdout

    def slugs():
        listed = newsletter("topics", "list", "--format", "json", db=db)
        return [t["slug"] for t in json.loads(listed.stdout)]

    assert slugs() == DEFAULT_TOPICS
    events = newsletter("events", "list", "--format", "json", db=db)
    assert json.loads(events.stdout) == []  # topics only: the sample stays `sample load`
    assert newsletter("topics", "remove", "capital", db=db).returncode == 0
    again = newsletter("db", "upgrade", db=db)
    assert again.returncode == 0 and "already at" in again.stdout
    assert "Created" not in again.stdout
    assert slugs() == ["governance", "hardware", "open-source"]  # deleted stays deleted


@pytest.mark.parametrize(
    ("group", "hint"),
    [
        ("topics", "newsletter topics add"),
        ("events", "newsletter events import"),
        ("subscribers", "newsletter subscribers add"),
        ("webhooks", "newsletter webhooks add"),
        ("feeds", "newsletter feeds add"),
    ],
)
def test_an_empty_list_says_how_to_add_the_first_entry(cli, group, hint):
    r = cli(group, "list")
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"No {group} yet. Add the first with:")
    assert hint in r.output and "┏" not in r.output  # no empty table


def test_filtered_lists_that_match_nothing_say_so(cli):
    cli("sample", "load")
    assert cli("events", "list", "--month", "2024-01").output == "No events match these filters.\n"
    assert cli("subscribers", "list", "--status", "pending").output == "No pending subscribers.\n"
    assert json.loads(cli("subscribers", "list", "--format", "json").output) == []


def test_webhooks_list_shows_language_and_a_masked_url(cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    cli("sample", "load")
    token = "T000/B000/XXXXXXXXXXXXsecretpart"
    r = cli(
        "webhooks", "add", "cn-team", "--platform", "slack", "--language", "zh",
        "--url", f"http://127.0.0.1:9/services/{token}", "--topics", "capital",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    (row,) = json.loads(cli("webhooks", "list", "--format", "json").output)
    assert row["language"] == "zh" and row["url"].startswith("http://127.0.0.1:9/")
    assert "secretpart" not in row["url"] and row["url"].endswith("••••part")
    listed = cli("webhooks", "list").output  # in a pipe: as wide as it needs, nothing cut
    assert "lang" in listed and " zh " in listed and "…" not in listed
    assert row["url"] in listed and "secretpart" not in listed


def next_first_of_month_eight(zone: str) -> str:
    now = dt.datetime.now(ZoneInfo(zone))
    year, month = (now.year, now.month + 1) if now.month < 12 else (now.year + 1, 1)
    if now.day == 1 and now.hour < 8:
        year, month = now.year, now.month
    label = f"1 {dt.date(year, month, 1):%b}" + ("" if year == now.year else f" {year}")
    return f"next monthly digest: {label} 08:00 {zone}"


def test_schedule_show_names_the_next_digest_in_local_time(cli):
    cli("sample", "load")
    empty = cli("schedule", "show").output
    assert "no daily, weekly or monthly digest is due" in empty
    assert "newsletter subscribers add" in empty
    assert "newsletter serve" in empty  # the scheduler has not run yet: how to start it
    for email, zone in (("ada@example.com", "Asia/Shanghai"), ("bo@example.com", "Europe/London")):
        r = cli(
            "subscribers", "add", email, "--topics", "capital", "--frequency", "monthly",
            "--timezone", zone,
        )  # fmt: skip
        assert r.exit_code == 0, r.output
    shown = cli("schedule", "show").output
    assert next_first_of_month_eight("Asia/Shanghai") in shown, shown
    assert next_first_of_month_eight("Europe/London") in shown, shown
    assert "no daily or weekly digest is due" in shown
    assert "interval[" not in shown and "trigger" not in shown


def test_links_follow_the_address_serve_listens_on():
    settings = Settings(secret_key="x" * 40)
    assert links_follow(settings, "127.0.0.1", 9000)[0].base_url == "http://127.0.0.1:9000"
    assert links_follow(settings, "::1", 9000)[0].base_url == "http://[::1]:9000"
    every, warning = links_follow(settings, "0.0.0.0", 9000)
    assert every.base_url == "http://127.0.0.1:9000"
    assert warning and "NEWSLETTER_BASE_URL" in warning and "every interface" in warning
    chosen = Settings(secret_key="x" * 40, base_url="https://news.example.com")
    assert links_follow(chosen, "0.0.0.0", 9000) == (chosen, None)  # set: kept, no warning
