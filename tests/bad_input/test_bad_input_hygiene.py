"""Bad input, hygiene: mixed alert fan-out, text cleaning, CSV exports, date windows,
deep nesting, rule caps and writes that survive a closed stdout."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.admin_tokens import create_token
from newsletter.core.models import Delivery, Event
from newsletter.pipeline.sample import load_sample
from newsletter.web.app import create_app
from tests.support.factories import event_record
from tests.support.web import api_client
from tests.support.workers import drain

# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def client(loopback_settings, engine, sample) -> TestClient:
    return api_client(loopback_settings, engine, name="hygiene")


@pytest.fixture
def cli_net(cli, monkeypatch):
    """The CLI, allowed to add webhooks on 127.0.0.1 over http."""
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_HTTP", "true")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["127.0.0.0/8"]')
    monkeypatch.setenv("NEWSLETTER_ALERT_BATCH_SECONDS", "0")
    return cli


def deliveries(engine) -> list[Delivery]:
    with Session(engine) as s:
        return list(s.execute(select(Delivery).order_by(Delivery.id)).scalars())


def event_titles(engine) -> list[str]:
    with Session(engine) as s:
        return [e.title.get("en", "") for e in s.execute(select(Event)).scalars()]


# --- item 4: instant readers and an instant webhook on one topic --------------------------------


def instant_reader_and_webhook(client, chat_receiver) -> None:
    r = client.post(
        "/api/v1/webhooks",
        json={
            "name": "team",
            "platform": "slack",
            "url": chat_receiver.url("/slack/team"),
            "topics": ["hardware"],
            "mode": "instant",
        },
    )
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/subscribers",
        json={"email": "now@example.com", "topics": ["hardware"], "frequency": "instant"},
    )
    assert r.status_code == 201, r.text


def chip_event(**extra) -> dict:
    fields = {"title": "Chipmaker ships a new AI accelerator", "summary": ""}
    return event_record(occurred_on="2025-08-01", **{**fields, **extra})


def assert_alerts_for_both(engine, n_events: int = 1) -> None:
    rows = [d for d in deliveries(engine) if d.kind == "alert"]
    assert sum(d.endpoint_id is not None for d in rows) == n_events
    assert sum(d.subscriber_id is not None for d in rows) == n_events


def test_api_event_alerts_instant_reader_and_webhook(
    client, engine, loopback_settings, chat_receiver, smtp_server
):
    instant_reader_and_webhook(client, chat_receiver)
    r = client.post("/api/v1/events", json=chip_event())
    assert r.status_code == 201, r.text
    assert r.json()["alerts_enqueued"] == 2
    assert "Chipmaker ships a new AI accelerator" in event_titles(engine)
    assert_alerts_for_both(engine)
    drain(engine, loopback_settings)
    assert len(chat_receiver.platforms.for_path("/slack/team")) == 1
    assert len(smtp_server.recorder.to("now@example.com")) == 1


def test_upload_keeps_records_and_alerts_instant_reader_and_webhook(client, engine, chat_receiver):
    instant_reader_and_webhook(client, chat_receiver)
    upload = json.dumps([chip_event(), {"title": "no url"}]).encode()
    r = client.post("/api/v1/events/import", files={"file": ("batch.json", upload)})
    assert r.status_code == 200, r.text
    assert (r.json()["new"], len(r.json()["invalid"]), r.json()["alerts_enqueued"]) == (1, 1, 2)
    assert "Chipmaker ships a new AI accelerator" in event_titles(engine)
    assert_alerts_for_both(engine)


def test_cli_import_alerts_instant_reader_and_webhook(
    cli_net, engine, sample, chat_receiver, tmp_path
):
    r = cli_net(
        "webhooks", "add", "team", "--platform", "slack", "--topics", "hardware",
        "--url", chat_receiver.url("/slack/team"),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = cli_net(
        "subscribers", "add", "now@example.com", "--topics", "hardware", "--frequency", "instant"
    )
    assert r.exit_code == 0, r.output
    path = tmp_path / "events.json"
    path.write_text(json.dumps([chip_event(), chip_event(title="Nvidia unveils a GPU")]))
    r = cli_net("events", "import", str(path))
    assert r.exit_code == 0, r.output
    assert "2 new" in r.output and "4 instant alert(s) queued" in r.output
    assert_alerts_for_both(engine, n_events=2)


def test_scheduler_alert_job_with_mixed_recipients(
    client, engine, loopback_settings, chat_receiver
):
    from newsletter.planning.alerts import enqueue_recent_alerts

    instant_reader_and_webhook(client, chat_receiver)
    with Session(engine) as s:
        from newsletter.ingest.events import EventIn, add_event

        add_event(session=s, event_in=EventIn.model_validate(chip_event()))
        s.commit()
    with Session(engine) as s:
        assert enqueue_recent_alerts(session=s, settings=loopback_settings) == 2
        s.commit()
    assert_alerts_for_both(engine)


def test_enqueue_widens_rows_of_different_shapes(engine, sample):
    from newsletter.delivery.outbox import enqueue

    with Session(engine) as s:
        reader = add_subscriber(
            session=s, sub_in=SubscriberIn(email="a@example.com", topics=["hardware"])
        )
        s.flush()
        reader_id = reader.id
        rows = [
            {"idempotency_key": "k1", "channel": "email", "kind": "alert",
             "subscriber_id": reader_id},
            {"idempotency_key": "k2", "channel": "email", "kind": "confirm", "period": "p",
             "status": "held"},
        ]  # fmt: skip
        assert enqueue(s, rows) == 2
        assert enqueue(s, rows) == 0
        s.commit()
    got = {d.idempotency_key: d for d in deliveries(engine)}
    assert got["k1"].subscriber_id == reader_id and got["k1"].status == "queued"
    assert got["k2"].subscriber_id is None and got["k2"].status == "held"
    assert got["k2"].period == "p" and got["k1"].period == ""


# --- item 7: one text cleaning for every source; slots no text can forge -----------------------

DIRTY_TITLE = (
    "Chip\r\nban\x00 \x07\x1b[31mred\u2028 line\u2029\x1eemail\x1e \u202eevil\u202c\x85end"
)
CLEAN_TITLE = "Chip ban [31mred line email evil end"
DIRTY_SUMMARY = "First\x00 para\x1b.\r\n\r\n\r\nSecond\u2028line\x1egreeting\x1e\tend"
CLEAN_SUMMARY = "First para.\n\nSecond\nlinegreeting end"


def stored_event(engine, url: str) -> Event:
    with Session(engine) as s:
        return s.execute(select(Event).where(Event.url == url)).scalar_one()


@pytest.mark.parametrize("fmt", ["json", "jsonl", "yaml", "csv", "dict-json"])
def test_plain_string_text_is_cleaned_on_import(cli, engine, tmp_path, fmt):
    import csv
    import io

    import yaml

    assert cli("sample", "load").exit_code == 0
    url = f"https://clean.example/{fmt}"
    title, summary = DIRTY_TITLE, DIRTY_SUMMARY
    if fmt == "dict-json":
        title, summary = {"en": title}, {"en": summary}
    record = {"title": title, "summary": summary, "url": url, "occurred_on": "2025-07-20",
              "source": "Wire\x1b[2J\x00"}  # fmt: skip
    path = tmp_path / f"events.{fmt.removeprefix('dict-')}"
    if fmt in ("json", "dict-json"):
        path.write_text(json.dumps([record]))
    elif fmt == "jsonl":
        path.write_text(json.dumps(record) + "\n")
    elif fmt == "yaml":
        # YAML cannot hold C0 controls unescaped: a double-quoted scalar spells them
        path.write_text(yaml.safe_dump([record], allow_unicode=True))
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(record))
        writer.writeheader()
        writer.writerow({k: v.replace("\x00", "") for k, v in record.items()})
        path.write_text(out.getvalue())
    r = cli("events", "import", str(path))
    assert r.exit_code == 0, r.output
    event = stored_event(engine, url)
    expected_title = CLEAN_TITLE
    assert event.title == {"en": expected_title}
    assert event.summary == {"en": CLEAN_SUMMARY}
    assert event.source == "Wire[2J"


def test_plain_string_text_is_cleaned_through_the_api(client, engine):
    body = {"title": DIRTY_TITLE, "summary": DIRTY_SUMMARY, "url": "https://clean.example/api",
            "occurred_on": "2025-07-21"}  # fmt: skip
    r = client.post("/api/v1/events", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["title"] == {"en": CLEAN_TITLE}
    assert r.json()["summary"] == {"en": CLEAN_SUMMARY}
    # a lone surrogate or a NUL would make the database refuse the row (PostgreSQL: JSON)
    raw = '{"title": "GPU \\ud800news\\u0000", "url": "https://clean.example/s", "occurred_on": "2025-07-21"}'
    r = client.post("/api/v1/events", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["title"] == {"en": "GPU news"}
    r = client.get("/api/v1/events", params={"month": "2025-07"})
    assert r.status_code == 200
    assert {"en": "GPU news"} in [e["title"] for e in r.json()["data"]]


@pytest.mark.parametrize("title", ["   ", "\r\n\t", "\x00\x07", {"en": " ", "zh": "\u2028"}])
def test_a_blank_title_is_refused(client, cli, tmp_path, title):
    body = {"title": title, "url": "https://blank.example/1", "occurred_on": "2025-07-21"}
    r = client.post("/api/v1/events", json=body)
    assert r.status_code == 422, r.text
    assert "title is blank" in r.text
    path = tmp_path / "blank.json"
    path.write_text(json.dumps([body]))
    r = cli("events", "import", str(path))
    assert r.exit_code == 1
    assert "record 1" in r.output and "title is blank" in r.output


def test_events_show_never_prints_terminal_escapes(cli, engine):
    assert cli("sample", "load").exit_code == 0
    with Session(engine) as s:  # a row stored before text was cleaned on every path
        event = Event(title={"en": "Evil \x1b]0;pwned\x07 \x1b[2J title"}, summary={"en": "s\x1b[31m"},
                      url="https://old.example/1", source="W\x1b[5m", region="global",
                      occurred_on=dt.date(2025, 7, 3), language="en", title_key="evil")  # fmt: skip
        s.add(event)
        s.commit()
        event_id = event.id
    r = cli("events", "show", str(event_id))
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "Evil \\x1b]0;pwned\\x07 \\x1b[2J title" in r.output
    r = cli("events", "list", "--month", "2025-07")
    assert r.exit_code == 0 and "\x1b" not in r.output


def test_markup_like_titles_list_without_error(cli, tmp_path):
    assert cli("sample", "load").exit_code == 0
    path = tmp_path / "m.json"
    path.write_text(json.dumps([event_record(title="[/red] chip [bold]ban :smile:")]))
    assert cli("events", "import", str(path)).exit_code == 0
    r = cli("events", "list", "--month", "2025-07")
    assert r.exit_code == 0, r.output
    assert "[/red]" in r.output and ":smile:" in r.output


def _bodies(received) -> str:
    msg = received.message
    return "\n".join(
        part.get_content() for part in msg.walk() if part.get_content_maintype() == "text"
    )


@pytest.mark.parametrize("how", ["stored-raw", "imported"])
def test_a_title_cannot_forge_per_reader_slots(engine, web_settings, smtp_server, tmp_path, how):
    from newsletter.ingest.events import tag_event
    from newsletter.ingest.files import import_records
    from newsletter.pipeline import plan_period
    from newsletter.pipeline.sample import add_demo_readers
    from newsletter.rendering.editions import SLOT, make_environment
    from newsletter.topics.catalogue import compiled_rules

    forged = "".join(f"{SLOT}{n}{SLOT}" for n in ("email", "unsubscribe_url", "greeting"))
    title = f"GPU export ban {forged} details"
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        if how == "stored-raw":  # as a row written before input cleaning would be
            raw = Event(title={"en": title, "zh": title}, summary={"en": f"chip {forged}"},
                        url="https://forge.example/1", source="W", region="global",
                        occurred_on=dt.date(2025, 7, 30), language="en", title_key="gpu forged")  # fmt: skip
            s.add(raw)
            s.flush()
            tag_event(session=s, event=raw, rules=compiled_rules(session=s))
        else:
            record = event_record(title=title, occurred_on="2025-07-30", summary=f"chip {forged}")
            report = import_records(session=s, records=iter([("1", record)]))
            assert report.new == 1
        s.flush()
        env = make_environment(web_settings.templates_dir)
        plan_period(session=s, env=env, settings=web_settings, frequency="monthly",
                    period_key="2025-07")  # fmt: skip
        s.commit()
    drain(engine, web_settings)
    for address in ("reader.en@example.com", "reader.zh@example.com"):
        (received,) = smtp_server.recorder.to(address)
        body = _bodies(received)
        assert "GPU export ban" in body
        assert address not in body
        assert SLOT not in body
        text = next(p for p in received.message.walk() if p.get_content_type() == "text/plain")
        assert text.get_content().count("/u/") == 1  # only the footer's own unsubscribe link


# --- item 15: caps on topic keywords and regex --------------------------------------------------


def test_rule_limits_through_the_api(client, engine):
    import time

    base = {"slug": "robots", "name_en": "Robots", "name_zh": "机器人"}
    started = time.monotonic()
    huge = client.post(
        "/api/v1/topics", json={**base, "rules": {"include": [f"kw{i}" for i in range(100_000)]}}
    )
    assert huge.status_code == 422, huge.text
    assert time.monotonic() - started < 10  # refused up front, not after compiling them all
    assert "rules.include" in huge.text and "500" in huge.text
    for rules, reason in [
        ({"include": [f"kw{i}" for i in range(501)]}, "500"),
        ({"exclude": ["x" * 101]}, "100 characters"),
        ({"include": ["robot"], "regex": "a" * 501}, "500 characters"),
        ({"include": ["robot"], "regex": "robot\x00"}, "control characters"),
    ]:
        r = client.post("/api/v1/topics", json={**base, "rules": rules})
        assert r.status_code == 422, r.text
        assert reason in r.text
        r = client.post("/api/v1/topics/match", json={"rules": rules})
        assert r.status_code == 422 and reason in r.text
        r = client.patch("/api/v1/topics/hardware", json={"rules": rules})
        assert r.status_code == 422 and reason in r.text
    assert client.get("/api/v1/topics/robots").status_code == 404
    ok = {"include": [f"kw{i}" for i in range(500)], "exclude": ["y" * 100], "regex": "b" * 500}
    r = client.post("/api/v1/topics", json={**base, "rules": ok})
    assert r.status_code == 201, r.text


def test_rule_limits_through_the_cli(cli, engine):
    assert cli("sample", "load").exit_code == 0
    many = ",".join(f"kw{i}" for i in range(501))
    for args, reason in [
        (["--include", many], "include has 501 keywords; at most 500 are allowed"),
        (["--exclude", "x" * 101], "is longer than 100 characters"),
        (["--include", "robot", "--regex", "a" * 501], "regex is longer than 500 characters"),
    ]:
        r = cli("topics", "add", "robots", "--name-en", "Robots", "--name-zh", "机器人", *args)
        assert r.exit_code == 1, r.output
        assert reason in r.output and "Traceback" not in r.output
    huge = ",".join(f"kw{i}" for i in range(100_000))
    r = cli("topics", "edit", "hardware", "--add-include", huge)
    assert r.exit_code == 1 and "keywords; at most 500 are allowed" in r.output
    assert "robots" not in cli("topics", "list").output


def test_rule_limits_in_the_admin_ui(engine, web_settings, sample):
    from newsletter.topics.catalogue import get_topic
    from tests.support.web import csrf_of

    with Session(engine) as s:
        _, token = create_token(session=s, name="editor")
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    form = client.get("/admin/login")
    client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    csrf = csrf_of(client.get("/admin/").text)
    with Session(engine) as s:
        before = get_topic(session=s, slug="hardware").rules
    names = {"csrf_token": csrf, "name_en": "Chips", "name_zh": "芯片", "description": ""}
    many = "\n".join(f"kw{i}" for i in range(20_000))
    for fields, reason in [
        ({"include": many}, "at most 500 are allowed"),
        ({"include": "chip", "exclude": "x" * 101}, "longer than 100 characters"),
        ({"include": "chip", "regex": "a" * 501}, "longer than 500 characters"),
    ]:
        r = client.post("/admin/topics/hardware", data=names | fields)
        assert r.status_code == 422 and reason in r.text
        r = client.post("/admin/topics/hardware/check", data={"csrf_token": csrf, **fields})
        assert r.status_code == 200 and reason in r.text
    with Session(engine) as s:
        assert get_topic(session=s, slug="hardware").rules == before


# --- item 10: dates outside a sane window --------------------------------------------------------

FAR_DATES = ["9999-12-31", "0001-01-01", "1989-12-31", "2999-01-01"]


@pytest.mark.parametrize("day", FAR_DATES)
def test_out_of_range_event_dates_are_refused_at_every_input(client, cli, tmp_path, engine, day):
    from newsletter.core.periods import date_window

    first, last = date_window()
    record = event_record(occurred_on=day)
    r = client.post("/api/v1/events", json=record)
    assert r.status_code == 422, r.text
    assert "occurred_on" in r.text and f"{first} to {last}" in r.text
    r = client.post("/api/v1/events/import", files={"file": ("e.json", json.dumps([record]))})
    assert r.status_code == 200 and r.json()["new"] == 0
    assert "outside the accepted dates" in r.json()["invalid"][0]["reason"]
    path = tmp_path / "far.csv"
    path.write_text(f"title,url,occurred_on\nFar chip,https://far.example/{day},{day}\n")
    r = cli("events", "import", str(path))
    assert r.exit_code == 1 and "line 2" in r.output and "outside the accepted dates" in r.output
    with Session(engine) as s:
        assert s.execute(select(Event).where(Event.url.like("%far.example%"))).first() is None


def test_the_date_window_edges_are_accepted(client):
    from newsletter.core.periods import date_window

    for day in date_window():
        r = client.post("/api/v1/events", json=event_record(occurred_on=day.isoformat()))
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("frequency", "period"),
    [("daily", "9999-12-31"), ("monthly", "9999-12"), ("weekly", "9999-W52"),
     ("monthly", "0000-01"), ("daily", "1989-12-31")],
)  # fmt: skip
def test_out_of_range_periods_get_a_clear_error(cli, client, frequency, period):
    r = cli("digest", "send", "--frequency", frequency, "--period", period)
    assert r.exit_code == 1
    assert "outside the accepted dates" in r.output and "Traceback" not in r.output
    r = cli("digest", "preview", "--frequency", frequency, "--period", period,
            "--email", "reader.en@example.com")  # fmt: skip
    assert r.exit_code == 1 and "outside the accepted dates" in r.output
    r = client.post("/api/v1/digests/send", json={"frequency": frequency, "period": period})
    assert r.status_code == 422 and "outside the accepted dates" in r.text
    if frequency == "monthly":
        assert cli("take", "set", period, "--language", "en", "--file", __file__).exit_code == 1
        assert cli("events", "list", "--month", period).exit_code == 1
        r = client.get("/api/v1/events", params={"month": period})
        assert r.status_code in (400, 422) and "outside the accepted dates" in r.text


def test_no_admin_page_fails_on_a_far_dated_stored_event(engine, web_settings, sample, cli):
    from newsletter.ingest.events import tag_event
    from newsletter.pipeline.sample import add_demo_readers
    from newsletter.topics.catalogue import compiled_rules
    from tests.support.web import ADMIN_PAGES, csrf_of

    with Session(engine) as s:  # rows stored before the window existed
        add_demo_readers(session=s)
        for day in (dt.date(9999, 12, 31), dt.date(1, 1, 1)):
            far = Event(title={"en": f"Chip export ban {day}"}, summary={}, region="global",
                        url=f"https://far.example/{day}", source="W", occurred_on=day,
                        language="en", title_key=f"far {day}")  # fmt: skip
            s.add(far)
            s.flush()
            tag_event(session=s, event=far, rules=compiled_rules(session=s))
        _, token = create_token(session=s, name="editor")
        s.commit()
    client = TestClient(
        create_app(settings=web_settings, engine=engine), raise_server_exceptions=False
    )
    form = client.get("/admin/login")
    client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    csrf = csrf_of(client.get("/admin/").text)
    pages = ADMIN_PAGES + [
        "/admin/take?period=9999-12",
        "/admin/events?month=all",
        "/admin/send?frequency=daily&period=9999-12-31",
        "/admin/send?frequency=weekly&period=9999-W52",
        "/admin/preview?frequency=monthly&period=9999-12&email=reader.en@example.com",
        "/archive",
    ]
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code)
    # a month outside the window is a bad filter, said as the other lists say one
    far = client.get("/admin/events?month=9999-12")
    assert far.status_code == 400 and 'role="alert"' in far.text
    # the default period is the newest month within the window, not 9999-12
    assert 'value="2025-07"' in client.get("/admin/take").text
    assert 'value="2025-07"' in client.get("/admin/send").text
    for data in (
        {"frequency": "daily", "period": "9999-12-31"},
        {"frequency": "monthly", "period": "9999-12"},
    ):
        r = client.post("/admin/send", data={"csrf_token": csrf, **data})
        assert r.status_code == 422 and "outside the accepted dates" in r.text
    r = client.post("/admin/take", data={"csrf_token": csrf, "period": "9999-12", "body": "x"})
    assert r.status_code == 422 and "outside the accepted dates" in r.text
    assert cli("events", "list").exit_code == 0
    r = client.get("/api/v1/events")  # no token: still no 500
    assert r.status_code == 401


# --- item 12: deeply nested JSON / YAML ----------------------------------------------------------


def test_deeply_nested_files_are_reported_not_a_traceback(cli, engine, tmp_path):
    assert cli("sample", "load").exit_code == 0
    deep = "[" * 5_000 + "]" * 5_000
    good = event_record(title="Nvidia ships a fine GPU", occurred_on="2025-07-02")
    line_ok = event_record(title="A good line beside a deep one", occurred_on="2025-07-02")
    files = {
        "deep.json": deep,
        "deep.yaml": deep,
        "deep.jsonl": json.dumps(line_ok) + "\n" + deep + "\n",
        "deeper.json": '[{"title": ' + '{"en": ' * 5_000 + '"x"' + "}" * 5_000 + "}]",
        "good.json": json.dumps([good]),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = cli("events", "import", *(str(tmp_path / n) for n in files))
    assert r.exit_code == 1
    assert "Traceback" not in r.output and "RecursionError" not in r.output
    for name in ("deep.json", "deeper.json"):
        assert f"{name}: invalid JSON: nested too deeply" in r.output
    assert re.search(r"deep\.yaml: invalid YAML.*(nesting depth|nested too deeply)", r.output)
    assert "invalid line 2: invalid JSON: nested too deeply" in r.output
    titles = event_titles(engine)
    assert "Nvidia ships a fine GPU" in titles and "A good line beside a deep one" in titles


def test_deeply_nested_upload_is_a_client_error(client):
    deep = ("[" * 5_000 + "]" * 5_000).encode()
    for name in ("deep.json", "deep.yaml"):
        r = client.post("/api/v1/events/import", files={"file": (name, deep)})
        assert r.status_code == 400 and re.search("nesting depth|nested too deeply", r.text)
    ok = json.dumps(event_record(title="Fine upload line", occurred_on="2025-07-02"))
    r = client.post(
        "/api/v1/events/import", files={"file": ("d.jsonl", f"{ok}\n{deep.decode()}\n")}
    )
    assert r.status_code == 200 and r.json()["new"] == 1
    assert "nested too deeply" in r.json()["invalid"][0]["reason"]


# --- item 8: CSV exports neutralise spreadsheet formulas ----------------------------------------

FORMULA_NAMES = ['=HYPERLINK("https://evil.example","click")', "+1+2", "-3+4", "@SUM(A1)"]


def test_subscriber_export_neutralises_formulas_and_round_trips(cli, tmp_path):
    import csv
    import io

    assert cli("sample", "load").exit_code == 0
    people = [(f"reader{i}@example.com", name) for i, name in enumerate(FORMULA_NAMES)]
    people += [("=sum@example.com", "Plain"), ("-dash@example.com", "Ada Lovelace")]
    for email, name in people:
        r = cli("subscribers", "add", "--topics", "hardware", f"--name={name}", "--", email)
        assert r.exit_code == 0, r.output
    r = cli("subscribers", "export")
    assert r.exit_code == 0
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    for name in FORMULA_NAMES:
        assert "'" + name in rows  # shown as text by every spreadsheet
    assert rows["Plain"]["email"] == "'=sum@example.com"
    assert rows["Ada Lovelace"]["email"] == "'-dash@example.com"
    for row in rows.values():
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    # the export is the import format: a fresh database gets the same people back
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert cli("--database-url", other, "db", "upgrade").exit_code == 0
    assert cli("--database-url", other, "sample", "load").exit_code == 0
    path = tmp_path / "people.csv"
    path.write_text(r.stdout)
    r = cli("--database-url", other, "subscribers", "import", str(path))
    assert r.exit_code == 0, r.output
    listed = json.loads(
        cli("--database-url", other, "subscribers", "list", "--format", "json").stdout
    )
    assert sorted((p["email"], p["name"]) for p in listed) == sorted(people)


# --- item 22: a reader that goes away never undoes a write ----------------------------------------


def test_webhooks_add_piped_to_head_is_stored(db_url, engine, sample, tmp_path):
    """The issue's own reproduction, as a real pipeline."""
    from newsletter.core.models import WebhookEndpoint

    env = {**os.environ, "NEWSLETTER_DATABASE_URL": db_url, "NEWSLETTER_WEBHOOK_ALLOW_HTTP": "true",
           "NEWSLETTER_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]'}  # fmt: skip
    cmd = (
        f"{sys.executable} -m newsletter webhooks add ops --platform generic "
        "--url http://127.0.0.1:9/hook --topics hardware | head -1"
    )
    proc = subprocess.run(
        ["bash", "-c", cmd], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert proc.stdout.decode().startswith("Added webhook ops (generic, instant).")
    assert b"Traceback" not in proc.stderr
    with Session(engine) as s:
        assert list(s.execute(select(WebhookEndpoint.name)).scalars()) == ["ops"]


class GoneReader:
    """A stdout whose reader went away: every write fails as a closed pipe does."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


WRITES = [
    (["webhooks", "add", "team", "--platform", "generic", "--topics", "hardware",
      "--url", "http://127.0.0.1:9/hook"],
     "SELECT count(*) FROM webhookendpoint WHERE name = 'team'"),
    (["subscribers", "add", "ada@example.com", "--topics", "hardware"],
     "SELECT count(*) FROM subscriber WHERE email = 'ada@example.com'"),
    (["topics", "add", "robots", "--name-en", "Robots", "--name-zh", "机器人", "--include", "robot"],
     "SELECT count(*) FROM topic WHERE slug = 'robots'"),
    (["topics", "edit", "hardware", "--name-en", "Silicon"],
     "SELECT count(*) FROM topic WHERE name_en = 'Silicon'"),
    (["topics", "remove", "open-source"],
     "SELECT 1 - count(*) FROM topic WHERE slug = 'open-source'"),
    (["take", "set", "2025-06", "--language", "en", "--file", "take.md"],
     "SELECT count(*) FROM sharptake WHERE period = '2025-06'"),
    (["feeds", "add", "http://127.0.0.1:9/feed.rss", "--name", "wire"],
     "SELECT count(*) FROM feed WHERE name = 'wire'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "check"), WRITES, ids=[" ".join(a[:2]) for a, _ in WRITES])
def test_a_write_survives_a_reader_that_went_away(
    cli_net, engine, sample, tmp_path, monkeypatch, args, check
):
    from sqlalchemy import text

    from newsletter.cli import common

    def gone(console=common.console):
        # rich's own answer to a broken pipe, less moving the real stdout to /dev/null
        # (the test runner's stdout has no file descriptor)
        console.quiet = True
        raise SystemExit(1)

    (tmp_path / "take.md").write_text("A quiet month.")
    monkeypatch.setattr(common.console, "_file", GoneReader())
    monkeypatch.setattr(common.console, "quiet", False)
    monkeypatch.setattr(common.console, "on_broken_pipe", gone)
    r = cli_net(*args)
    assert r.exit_code == 1
    with engine.connect() as conn:
        assert conn.execute(text(check)).scalar_one() == 1
