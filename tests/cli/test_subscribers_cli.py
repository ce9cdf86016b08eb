"""`newsletter subscribers / take / digest / outbox` as an admin uses them."""

import csv
import io
import json
import shutil

from sqlmodel import Session

from newsletter.audience.subscribers import get_subscriber, unsubscribe
from tests.support.env import ROOT


def subs(cli):
    return {
        s["email"]: s for s in json.loads(cli("subscribers", "list", "--format", "json").output)
    }


def test_add_validates_normalises_and_rejects_duplicates(cli):
    cli("sample", "load")
    r = cli(
        "subscribers",
        "add",
        "Ada@Example.COM",
        "--topics",
        "governance,capital",
        "--language",
        "zh",
        "--frequency",
        "weekly",
        "--timezone",
        "Asia/Shanghai",
        "--name",
        "Ada",
    )
    assert r.exit_code == 0, r.output
    s = subs(cli)["ada@example.com"]
    assert (s["language"], s["frequency"], s["timezone"], s["topics"]) == (
        "zh",
        "weekly",
        "Asia/Shanghai",
        ["governance", "capital"],
    )
    dup = cli("subscribers", "add", "ada@example.com", "--topics", "capital")
    assert dup.exit_code == 1 and "already subscribed" in dup.stderr
    for args, message in [
        (["not-an-email", "--topics", "capital"], "invalid email address"),
        (["x@example.com", "--topics", "nope"], "unknown topic(s): nope"),
        (["x@example.com", "--topics", "capital", "--timezone", "Mars/Base"], "unknown time zone"),
        (["x@example.com", "--topics", "capital", "--frequency", "hourly"], "frequency must be"),
        (["x@example.com", "--topics", "capital", "--language", "fr"], "language must be"),
    ]:
        r = cli("subscribers", "add", *args)
        assert r.exit_code == 1 and message in r.stderr, (args, r.stderr)
    assert list(subs(cli)) == ["ada@example.com"]


def test_import_reports_rows_and_export_round_trips(cli, tmp_path):
    cli("sample", "load")
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,language,frequency,topics\n"
        'a@example.com,A,en,monthly,"governance,capital"\n'
        "not an email,B,en,monthly,capital\n"
        "c@example.com,C,zh,daily,hardware\n"
        "A@example.com,A again,en,monthly,capital\n"
        "d@example.com,D,en,monthly,quantum\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "import", str(path))
    assert r.exit_code == 1
    assert "2 added, 1 duplicate, 2 invalid" in r.output
    assert (
        "invalid line 3: email" in r.stderr
        and "invalid line 6: unknown topic(s): quantum" in r.stderr
    )
    exported = list(csv.DictReader(io.StringIO(cli("subscribers", "export").output)))
    assert [(e["email"], e["topics"]) for e in exported] == [
        ("a@example.com", "governance,capital"),
        ("c@example.com", "hardware"),
    ]


def test_import_reads_a_semicolon_separated_file(cli, tmp_path):
    """As spreadsheets in European locales save it (semicolons, CRLF, a BOM)."""
    cli("sample", "load")
    path = tmp_path / "people.csv"
    path.write_bytes(
        "\ufeffemail;name;frequency;topics\r\n"
        'a@example.com;"Dupont; A";weekly;"governance,capital"\r\n'
        "b@example.com;B;daily;hardware\r\n".encode()
    )
    r = cli("subscribers", "import", str(path))
    assert r.exit_code == 0, r.stderr
    assert "2 added, 0 duplicate, 0 invalid" in r.output
    readers = subs(cli)
    assert (readers["a@example.com"]["name"], readers["a@example.com"]["frequency"]) == (
        "Dupont; A",
        "weekly",
    )
    assert readers["b@example.com"]["topics"] == ["hardware"]


def test_remove_deletes_and_suppresses_forever(cli):
    cli("sample", "load")
    cli("subscribers", "add", "gone@example.com", "--topics", "capital")
    r = cli("subscribers", "remove", "gone@example.com")
    assert r.exit_code == 0 and "suppressed" in r.output
    assert "gone@example.com" not in subs(cli)
    again = cli("subscribers", "add", "gone@example.com", "--topics", "capital")
    assert again.exit_code == 1 and "was removed" in again.stderr
    assert cli("subscribers", "remove", "nobody@example.com").exit_code == 1


def test_roster_sync_is_an_idempotent_upsert(cli, tmp_path):
    cli("sample", "load")
    rosters = tmp_path / "rosters"
    rosters.mkdir()
    shutil.copy(ROOT / "subscribers" / "example.yaml", rosters / "example.yaml")
    (rosters / "team.yaml").write_text(
        "subscribers:\n  - email: bad\n    topics: [capital]\n  - email: ADA@example.com\n    topics: [capital]\n",
        encoding="utf-8",
    )
    first = cli("subscribers", "sync", str(rosters))
    assert first.exit_code == 1
    assert "2 created, 0 updated, 0 unchanged, 0 skipped, 2 invalid" in first.output
    assert "also listed at example.yaml subscribers[1]" in first.stderr
    (rosters / "team.yaml").unlink()
    second = cli("subscribers", "sync", str(rosters))
    assert second.exit_code == 0 and "0 created, 0 updated, 2 unchanged" in second.output
    text = (
        (rosters / "example.yaml")
        .read_text(encoding="utf-8")
        .replace("frequency: weekly", "frequency: daily")
    )
    (rosters / "example.yaml").write_text(text, encoding="utf-8")
    third = cli("subscribers", "sync", str(rosters))
    assert "1 updated, 1 unchanged" in third.output
    assert subs(cli)["lei.li@example.com"]["frequency"] == "daily"
    (rosters / "broken.yaml").write_text("subscribers: {", encoding="utf-8")
    r = cli("subscribers", "sync", str(rosters))
    assert r.exit_code == 1 and "invalid YAML" in r.stderr


def test_take_set_show_and_fallback(cli, tmp_path):
    take = tmp_path / "take.md"
    take.write_text("Chips are *policy* now.\n\n<script>alert(1)</script>", encoding="utf-8")
    assert cli("take", "set", "2025-08", "--language", "en", "--file", str(take)).exit_code == 0
    assert "Chips are *policy* now." in cli("take", "show", "2025-08").output
    zh = cli("take", "show", "2025-08", "--language", "zh")
    assert "no zh version; showing en" in zh.output
    assert cli("take", "set", "2025-8", "--language", "en", "--file", str(take)).exit_code == 1
    assert cli("take", "show", "2024-01").exit_code == 1


def test_preview_and_dry_run_send_nothing(cli, tmp_path):
    cli("sample", "load")
    cli("subscribers", "add", "ada@example.com", "--topics", "governance", "--name", "Ada")
    cli("subscribers", "add", "li@example.com", "--topics", "hardware", "--language", "zh")
    out = tmp_path / "ada.html"
    r = cli(
        "digest",
        "preview",
        "--frequency",
        "monthly",
        "--period",
        "2025-07",
        "--email",
        "ada@example.com",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    html = out.read_text(encoding="utf-8")
    assert "Hi Ada," in html and "Sharp take" in html and "<script>" not in html
    assert "Hi Ada," in out.with_suffix(".txt").read_text(encoding="utf-8")
    dry = cli("digest", "send", "--frequency", "monthly", "--period", "2025-07", "--dry-run")
    assert (
        dry.exit_code == 0
        and "would send the monthly digest for 2025-07 to 2 recipient(s) in 2 segment(s)"
        in dry.output
    )
    assert "The outbox is empty." in cli("outbox", "status").output
    bad = cli("digest", "send", "--frequency", "monthly", "--period", "2025-W31")
    assert bad.exit_code == 1 and "YYYY-MM" in bad.stderr
    nobody = cli(
        "digest",
        "preview",
        "--frequency",
        "monthly",
        "--period",
        "2025-07",
        "--email",
        "x@example.com",
    )
    assert nobody.exit_code == 1 and "no subscriber" in nobody.stderr
    real = cli("digest", "send", "--frequency", "monthly", "--period", "2025-07")
    assert "Enqueued 2 new message(s)" in real.output
    assert cli("worker", "--until-empty").exit_code == 0
    status = cli("outbox", "status").output
    assert "email" in status and "2" in status
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_adding_an_unsubscribed_reader_says_only_they_can_come_back(cli, engine):
    cli("sample", "load")
    cli("subscribers", "add", "left@example.com", "--topics", "capital")
    with Session(engine) as s:
        unsubscribe(session=s, subscriber=get_subscriber(session=s, email="left@example.com"))
        s.commit()
    r = cli("subscribers", "add", "left@example.com", "--topics", "capital")
    assert r.exit_code == 1 and "already subscribed" not in r.stderr
    assert "left@example.com unsubscribed" in r.stderr
    assert "signing up again on the site and confirming" in r.stderr
    assert subs(cli)["left@example.com"]["status"] == "unsubscribed"  # nothing changed
