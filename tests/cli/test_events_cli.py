"""`newsletter events ...` as an admin uses it: import report, exit codes, list, show, retag."""

import json
import subprocess
import sys

from tests.support.factories import event_record


def test_import_prints_counts_and_exits_nonzero_on_invalid(cli, tmp_path):
    cli("sample", "load")
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(event_record()), "[1,", json.dumps(event_record(occurred_on="soon"))]
    path.write_text("\n".join(lines), encoding="utf-8")
    result = cli("events", "import", str(path))
    assert result.exit_code == 1
    assert "1 new, 0 duplicate, 2 invalid" in result.output
    assert "invalid line 2: invalid JSON" in result.stderr
    assert "invalid line 3: occurred_on" in result.stderr
    again = cli("events", "import", str(path))
    assert "0 new, 1 duplicate, 2 invalid" in again.output


def test_import_clean_file_exits_zero(cli, tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps([event_record()]), encoding="utf-8")
    result = cli("events", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "1 new, 0 duplicate, 0 invalid" in result.output


def test_import_missing_file_is_an_error(cli, tmp_path):
    result = cli("events", "import", str(tmp_path / "nope.json"))
    assert result.exit_code == 1
    assert "cannot read" in result.stderr


def test_list_json_has_every_field_and_filters(cli):
    cli("sample", "load")
    rows = json.loads(cli("events", "list", "--format", "json").output)
    assert len(rows) >= 20
    assert set(rows[0]) >= {
        "id",
        "title",
        "summary",
        "url",
        "source",
        "region",
        "occurred_on",
        "language",
        "importance",
        "topics",
    }
    china = json.loads(cli("events", "list", "--region", "china", "--format", "json").output)
    assert china and all(r["region"] == "china" for r in china)
    hardware = json.loads(cli("events", "list", "--topic", "hardware", "--format", "json").output)
    assert hardware and all("hardware" in r["topics"] for r in hardware)
    assert json.loads(cli("events", "list", "--month", "2025-08", "--format", "json").output) == []
    assert cli("events", "list", "--month", "2025-13").exit_code == 1
    assert cli("events", "list", "--topic", "nope").exit_code == 1


def test_show_explains_each_topic(cli, tmp_path):
    cli("sample", "load")
    path = tmp_path / "e.json"
    rec = event_record(
        title={"en": "Chipmaker raises $1B"}, summary={}, url="https://e.com/show", topics=None
    )
    manual = event_record(
        title={"en": "Something else"}, url="https://e.com/m", topics=["governance"]
    )
    path.write_text(json.dumps([rec, manual]), encoding="utf-8")
    cli("events", "import", str(path))
    rows = json.loads(cli("events", "list", "--format", "json").output)
    by_url = {r["url"]: r["id"] for r in rows}
    out = cli("events", "show", str(by_url["https://e.com/show"])).output
    assert 'topic capital: keyword "raises" in title.en' in out
    assert 'topic hardware: keyword "chipmaker*" in title.en' in out
    out = cli("events", "show", str(by_url["https://e.com/m"])).output
    assert "topic governance: manual" in out
    result = cli("events", "show", "99999")
    assert result.exit_code == 1 and "no event with id 99999" in result.stderr


def test_retag_applies_rule_changes_and_keeps_manual(cli, tmp_path):
    path = tmp_path / "e.json"
    path.write_text(
        json.dumps(
            [
                event_record(
                    title={"en": "Unitree shows a new humanoid"}, summary={}, url="https://e.com/u"
                ),
                event_record(
                    title={"en": "Unitree wins award"},
                    summary={},
                    url="https://e.com/w",
                    topics=["governance"],
                ),
            ]
        ),
        encoding="utf-8",
    )
    cli("sample", "load")
    cli("events", "import", str(path))
    cli(
        "topics",
        "add",
        "robotics",
        "--name-en",
        "Robotics",
        "--name-zh",
        "机器人",
        "--include",
        "unitree",
    )
    result = cli("events", "retag")
    assert result.exit_code == 0
    assert "1 with manual topics kept" in result.output
    rows = {
        r["url"]: r["topics"] for r in json.loads(cli("events", "list", "--format", "json").output)
    }
    assert "robotics" in rows["https://e.com/u"]
    assert rows["https://e.com/w"] == ["governance"]
    cli("events", "retag", "--all")
    rows = {
        r["url"]: r["topics"] for r in json.loads(cli("events", "list", "--format", "json").output)
    }
    assert rows["https://e.com/w"] == ["robotics"]


def test_real_process_exit_codes(db_url, tmp_path):
    """The installed entry point, as a shell user runs it."""
    env = {"NEWSLETTER_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "newsletter", *a],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run("sample", "load").returncode == 0
    bad = run("events", "show", "abc")
    assert bad.returncode == 2 and "valid integer" in bad.stderr
    assert run("events", "list", "--format", "xml").returncode == 1
    ok = run("events", "list", "--month", "2025-07", "--by-topic")
    assert ok.returncode == 0 and "Capital" in ok.stdout
