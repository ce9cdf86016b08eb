"""Chunked imports judge every row as the row-by-row path (add_subscriber, add_event) does.

Each test imports the same file twice into fresh databases: once as shipped, once with
every chunk sent down the row-by-row fallback, and compares reports and stored rows.
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience import subscribers
from newsletter.audience.subscribers import (
    FileReadError,
    file_lines,
    import_subscribers,
    subscriber_topics,
    suppress,
)
from newsletter.core.db import make_engine, upgrade
from newsletter.core.models import Event, EventTopic, Subscriber, Topic
from newsletter.ingest import files as importing
from newsletter.ingest.events import event_as_dict
from newsletter.ingest.files import import_file
from newsletter.topics.catalogue import ensure_default_topics
from tests.support.factories import event_record


def test_file_lines_split_and_fail_as_reading_the_whole_file_does(tmp_path):
    text = '\ufeffemail,name\r\na@x.com,Zoë 李\r\n"b@x.com","two\rlines"\n\nc@x.com,é\r'
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode("utf-8"))
    whole = io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="").readlines()
    for block in (1, 2, 3, 5, 7, 1 << 20):
        assert list(file_lines(path, block=block)) == whole
    for bad in (b"email\na@x.com\xff\n", b"\xef\xbb\xbfemail\n\xe6\x9d", b"email\n\xe6\x9dx\n"):
        path.write_bytes(bad)
        with pytest.raises(UnicodeDecodeError) as whole_error:
            bad.decode("utf-8-sig")
        for block in (1, 2, 4, 1 << 20):
            with pytest.raises(FileReadError) as ours:
                list(file_lines(path, block=block))
            assert str(ours.value) == str(whole_error.value)


def _fresh(tmp_path, db_url, name):
    if db_url.startswith("sqlite"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade(engine)
        return engine
    engine = make_engine(db_url)
    with engine.begin() as conn:  # the shared test database, emptied for the second run
        conn.exec_driver_sql(
            "TRUNCATE subscriber, subscription, suppression, event, eventtopic, topic, "
            "delivery, edition RESTART IDENTITY CASCADE"
        )
    return engine


SUBSCRIBERS_CSV = """email,name,language,timezone,frequency,topics
a@example.com,A,en,UTC,monthly,governance;capital
not an email,B,en,UTC,monthly,capital
c@example.com,C,zh,Asia/Shanghai,daily,hardware
A@Example.com,A again,en,UTC,monthly,capital
d@example.com,D,en,UTC,monthly,quantum
e@example.com,E,xx,UTC,monthly,capital
gone@example.com,G,en,UTC,monthly,capital
f@example.com,F,en,UTC,weekly,
jörg@bücher.example,J,en,UTC,monthly,capital
JÖRG@bücher.example,J2,en,UTC,monthly,capital
h@example.com,H,en,Mars/Olympus,monthly,capital
c@example.com,C twice,zh,UTC,daily,capital
i@example.com,"=HYPERLINK(""x"")",en,UTC,monthly,"capital,governance,capital"

j@example.com,J,en,UTC,monthly,open-source;governance
"""


def _import_subscribers(engine, text, default_topics=None):
    with Session(engine) as s:
        ensure_default_topics(session=s)
        suppress(session=s, email="gone@example.com", reason="bounced")
        s.commit()
        report = import_subscribers(
            session=s, text=io.StringIO(text, newline=""), default_topics=default_topics
        )
        s.commit()
        stored = [
            (
                sub.email,
                sub.name,
                sub.language,
                sub.timezone,
                sub.frequency,
                sub.status,
                sub.source,
                sub.confirmed_at is not None,
                sub.created_at is not None,
                [t.slug for t in subscriber_topics(session=s, subscriber=sub)],
            )
            for sub in s.execute(select(Subscriber).order_by(Subscriber.id)).scalars()
        ]
    return (report.added, report.duplicate, [(p.where, p.reason) for p in report.invalid]), stored


@pytest.mark.parametrize("default_topics", [None, ["open-source"]])
def test_subscriber_chunks_match_row_by_row(tmp_path, db_url, monkeypatch, default_topics):
    monkeypatch.setattr(subscribers, "IMPORT_CHUNK", 3)
    fast = _import_subscribers(_fresh(tmp_path, db_url, "a"), SUBSCRIBERS_CSV, default_topics)
    monkeypatch.setattr(
        subscribers._ImportBatch, "_write", subscribers._ImportBatch._write_one_by_one
    )
    slow = _import_subscribers(_fresh(tmp_path, db_url, "b"), SUBSCRIBERS_CSV, default_topics)
    assert fast == slow
    (added, duplicate, invalid), stored = fast
    assert (added, duplicate) == (7 if default_topics else 6, 2)
    assert [where for where, _ in invalid][:3] == ["line 3", "line 6", "line 7"]


def test_subscriber_import_twice_is_all_duplicates(engine):
    first, stored = _import_subscribers(engine, SUBSCRIBERS_CSV)
    with Session(engine) as s:
        report = import_subscribers(session=s, text=SUBSCRIBERS_CSV)
        s.commit()
    assert report.added == 0 and report.duplicate == first[0] + first[1]


def _events_file(tmp_path):
    records = [
        event_record(url="https://e.example/1", title={"en": "EU AI Act guidance published"}),
        event_record(url="https://e.example/2", topics=["hardware", "capital"]),
        event_record(url="https://e.example/1", title={"en": "Same URL, other title"}),
        {"title": "no date", "url": "https://e.example/3"},
        event_record(
            url="https://e.example/4",
            title={"en": "EU AI ACT guidance published!"},
            occurred_on="2025-07-10",
        ),
        event_record(url="https://e.example/5", topics=["quantum"]),
        event_record(url="https://e.example/6", title={"en": "Nothing to match here"}),
        event_record(url="ftp://e.example/7"),
        event_record(url="https://e.example/8", topics="governance; capital governance"),
        event_record(url="https://e.example/9", title={"zh": "芯片出口管制收紧"}, language="zh"),
    ]
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines.insert(3, "{not json")
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines * 2), encoding="utf-8")
    return path


def _import_events(engine, path):
    with Session(engine) as s:
        ensure_default_topics(session=s)
        s.commit()
        report = import_file(session=s, path=path)
        s.commit()
        stored = []
        for e in s.execute(select(Event).order_by(Event.id)).scalars():
            d = event_as_dict(session=s, event=e)
            d.pop("created_at")
            d["why"] = sorted(
                (slug, source, reason)
                for slug, source, reason in s.execute(
                    select(Topic.slug, EventTopic.source, EventTopic.reason)
                    .join(Topic, Topic.id == EventTopic.topic_id)
                    .where(EventTopic.event_id == e.id)
                )
            )
            d["title_key"] = e.title_key
            stored.append(d)
    summary = (report.new, report.duplicate, [(p.where, p.reason) for p in report.invalid])
    return summary, report.new_ids, stored


def test_event_chunks_match_record_by_record(tmp_path, db_url, monkeypatch):
    monkeypatch.setattr(importing, "IMPORT_CHUNK", 3)
    path = _events_file(tmp_path)
    fast = _import_events(_fresh(tmp_path, db_url, "a"), path)
    monkeypatch.setattr(importing._EventBatch, "_write", importing._EventBatch._write_one_by_one)
    slow = _import_events(_fresh(tmp_path, db_url, "b"), path)
    assert fast[0] == slow[0] and fast[2] == slow[2]
    (new, duplicate, invalid), new_ids, stored = fast
    assert (new, duplicate) == (5, 9)
    assert new_ids == [d["id"] for d in stored]
    assert [where for where, _ in invalid] == [
        "line 4",
        "line 5",
        "line 7",
        "line 9",
        "line 15",
        "line 16",
        "line 18",
        "line 20",
    ]
    assert any(w[1] == "manual" for d in stored for w in d["why"])
    assert any(w[1] == "rule" for d in stored for w in d["why"])


def test_event_files_are_read_line_by_line_as_when_read_whole():
    text = (
        "\ufeff{}\r\n{}\r{}\n\n{}\x0c{}\x85{}\u2028{}\u2029é李\r\n"
        '"a","b\rc"\r\n{}\x1c\x1d\x1e{}\x0b\r'
    )
    blocks_of = {n: [text[i : i + n] for i in range(0, len(text), n)] for n in (1, 2, 3, 7, 999)}
    for blocks in blocks_of.values():
        assert list(importing._split_lines(blocks)) == text.splitlines()
        assert list(importing._csv_lines(blocks)) == io.StringIO(text, newline="").readlines()


def test_streamed_event_file_fails_as_a_whole_file_does(tmp_path, session):
    from newsletter.ingest.files import ImportFileError

    ensure_default_topics(session=session)
    path = tmp_path / "bad.jsonl"
    good = json.dumps(event_record()) + "\n"
    path.write_bytes((good * 3).encode() + b"\xff\xfe\n")
    with pytest.raises(ImportFileError) as streamed:
        import_file(session=session, path=path)
    with pytest.raises(ImportFileError) as whole:
        importing.decode(path.read_bytes())
    assert str(streamed.value) == str(whole.value) and "not UTF-8" in str(whole.value)


def _rows_by_pydantic(rows, default_topics):
    """What validate_rows answered before its shortcut: SubscriberIn for every row."""
    from newsletter.core.errors import reason

    out = []
    for where, row in rows:
        data = {k: v for k, v in row.items() if v}
        if not data.get("topics") and default_topics:
            data["topics"] = default_topics
        try:
            out.append((where, subscribers.SubscriberIn.model_validate(data).model_dump()))
        except ValueError as exc:
            out.append(subscribers.RowProblem(where, reason(exc)))
    return out


CELLS = {
    "email": ["a@example.com", "A@Example.COM ", "jörg@bücher.example", "bad", "a@b.local", ""],
    "name": ["", "Ada", " two  spaces ", "tab\there", "x" * 200, "x" * 201, "😀" * 200, "😀" * 201]
    + ["\u202eevil", "=1+1", "line\u2028break"],
    "language": ["", "en", "EN", " zh ", "fr", "e n"],
    "timezone": ["", "UTC", "Asia/Shanghai", " Europe/Berlin", "utc", "Mars/Olympus", "../etc"],
    "frequency": ["", "monthly", "Daily", " weekly ", "hourly"],
    "topics": ["", "capital", "capital;hardware", " a , b ,", ";", "x;;y", "capital,capital"],
    "extra": ["", "ignored"],
}


@pytest.mark.parametrize("default_topics", [None, ["open-source"], [" "], ["a", " b "]])
def test_validate_rows_answers_as_subscriber_in_does(default_topics):
    import random

    rng = random.Random(7)
    rows = []
    for i in range(3000):
        row = {k: rng.choice(v) for k, v in CELLS.items() if rng.random() < 0.9}
        rows.append((f"line {i + 2}", row))
    assert subscribers.validate_rows(rows, default_topics) == _rows_by_pydantic(
        rows, default_topics
    )


def test_a_chunk_the_database_refuses_is_written_row_by_row(engine, monkeypatch):
    """An address another writer added after the chunk's duplicate check makes the bulk
    insert fail on the unique index: that chunk is then judged and written row by row."""
    with Session(engine) as s:
        ensure_default_topics(session=s)
        import_subscribers(session=s, text="email,topics\nb@example.com,capital\n")
        s.commit()
    monkeypatch.setattr(subscribers, "IMPORT_CHUNK", 2)
    monkeypatch.setattr(subscribers, "_existing_emails", lambda session, emails: set())
    text = "email,topics\na@example.com,capital\nB@example.com,hardware\nc@example.com,x\n"
    with Session(engine) as s:
        report = import_subscribers(session=s, text=text)
        s.commit()
        emails = list(s.execute(select(Subscriber.email).order_by(Subscriber.email)).scalars())
    assert (report.added, report.duplicate) == (1, 1)
    assert [(p.where, p.reason.split(":")[0]) for p in report.invalid] == [
        ("line 4", "unknown topic(s)")
    ]
    assert emails == ["a@example.com", "b@example.com"]
