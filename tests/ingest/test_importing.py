"""Event import: every format, bad records reported by position, duplicates, plain text."""

import json

import pytest
from sqlmodel import select

from newsletter.core.models import Event
from newsletter.ingest.events import event_as_dict
from newsletter.ingest.files import ImportFileError, import_file
from newsletter.topics.catalogue import ensure_default_topics
from tests.support.factories import event_record


@pytest.fixture
def db(session):
    ensure_default_topics(session=session)
    session.commit()
    return session


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def stored(session):
    return session.exec(select(Event).order_by(Event.id)).all()


def test_json_array(db, tmp_path):
    path = write(tmp_path, "e.json", json.dumps([event_record(), event_record()]))
    report = import_file(session=db, path=path)
    assert (report.new, report.duplicate, report.invalid) == (2, 0, [])
    assert len(stored(db)) == 2


def test_json_lines_reports_bad_line_and_keeps_good(db, tmp_path):
    lines = [json.dumps(event_record()), "{not json", json.dumps(event_record(url="ftp://x/y"))]
    lines.append(json.dumps(event_record()))
    report = import_file(session=db, path=write(tmp_path, "e.jsonl", "\n".join(lines)))
    assert report.new == 2
    assert [p.where for p in report.invalid] == ["line 2", "line 3"]
    assert "invalid JSON" in report.invalid[0].reason
    assert "http or https" in report.invalid[1].reason


def test_yaml_with_plain_string_title_uses_event_language(db, tmp_path):
    content = """
- title: 欧盟发布通用人工智能模型指南
  summary: 指南明确了提供商的合规义务。
  url: https://example.com/eu-gpai
  occurred_on: 2025-07-18
  language: zh
  region: global
  topics: governance
"""
    report = import_file(session=db, path=write(tmp_path, "e.yaml", content))
    assert report.new == 1, report.invalid
    (event,) = stored(db)
    assert event.title == {"zh": "欧盟发布通用人工智能模型指南"}
    assert event.manual_topics is True
    assert event_as_dict(session=db, event=event)["topics"] == ["governance"]


def test_csv_with_language_columns_and_bad_rows(db, tmp_path):
    content = (
        "title_en,title_zh,summary_en,url,occurred_on,region,language,importance,topics\n"
        "Nvidia H20 sales curbed,英伟达H20限售,Export rules tighten,https://e.com/h20,2025-07-15,global,en,4,\n"
        "No date here,,,https://e.com/nodate,,global,en,,\n"
        "Bad importance,,,https://e.com/imp,2025-07-02,global,en,9,\n"
        "Unknown topic,,,https://e.com/t,2025-07-02,global,en,,robotics\n"
    )
    report = import_file(session=db, path=write(tmp_path, "e.csv", content))
    assert report.new == 1
    where = {p.where: p.reason for p in report.invalid}
    assert set(where) == {"line 3", "line 4", "line 5"}
    assert "occurred_on" in where["line 3"]
    assert "importance" in where["line 4"]
    assert "unknown topic(s): robotics" in where["line 5"]
    (event,) = stored(db)
    assert event.title == {"en": "Nvidia H20 sales curbed", "zh": "英伟达H20限售"}
    assert set(event_as_dict(session=db, event=event)["topics"]) == {"governance", "hardware"}


def test_reimport_changes_nothing(db, tmp_path):
    path = write(tmp_path, "e.json", json.dumps([event_record(), event_record()]))
    import_file(session=db, path=path)
    db.commit()
    before = [(e.id, e.title, e.url) for e in stored(db)]
    report = import_file(session=db, path=path)
    assert (report.new, report.duplicate) == (0, 2)
    assert [(e.id, e.title, e.url) for e in stored(db)] == before


def test_duplicate_by_normalised_title_and_date(db, tmp_path):
    a = event_record(title={"en": "OpenAI enters  consumer HARDWARE!"}, occurred_on="2025-07-09")
    b = event_record(title={"en": "openai enters consumer hardware"}, occurred_on="2025-07-09")
    c = event_record(title={"en": "openai enters consumer hardware"}, occurred_on="2025-07-10")
    report = import_file(session=db, path=write(tmp_path, "e.json", json.dumps([a, b, c])))
    assert (report.new, report.duplicate) == (2, 1)


def test_duplicate_by_url_ignores_fragment_and_host_case(db, tmp_path):
    a = event_record(url="https://News.Example.com/story#top")
    b = event_record(url="https://news.example.com/story")
    report = import_file(session=db, path=write(tmp_path, "e.json", json.dumps([a, b])))
    assert (report.new, report.duplicate) == (1, 1)


def test_markup_is_stored_as_text_and_newlines_collapse_in_titles(db, tmp_path):
    record = event_record(
        title={"en": "<script>alert(1)</script>\r\nBcc: victim@example.com"},
        summary={"en": "line one\r\nline two"},
    )
    import_file(session=db, path=write(tmp_path, "e.json", json.dumps([record])))
    (event,) = stored(db)
    assert event.title["en"] == "<script>alert(1)</script> Bcc: victim@example.com"
    assert event.summary["en"] == "line one\nline two"


@pytest.mark.parametrize(
    "override, reason",
    [
        ({"url": "javascript:alert(1)"}, "http or https"),
        ({"url": "https://user:pw@example.com/"}, "user name or password"),
        ({"title": ""}, "title is required"),
        ({"title": {"en": "x" * 600}}, "longer than 500"),
        ({"region": "Not A Code"}, "region"),
        ({"occurred_on": "2025-13-40"}, "occurred_on"),
        ({"title": {"english": "x"}}, "invalid language code"),
        ({"title": ["a", "b"]}, "string or a mapping"),
    ],
)
def test_invalid_fields_have_reasons(db, tmp_path, override, reason):
    record = event_record(**override)
    report = import_file(session=db, path=write(tmp_path, "e.json", json.dumps([record])))
    assert report.new == 0
    assert len(report.invalid) == 1 and reason in report.invalid[0].reason


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("e.json", "[{", "invalid JSON"),
        ("e.json", '{"a": 1}', "list of events"),
        ("e.yaml", "- a: [", "invalid YAML"),
        ("e.csv", "url,source\nhttps://x.com,y\n", "title column"),
        ("e.txt", "hello", "cannot tell the format"),
    ],
)
def test_unreadable_files_fail_as_a_whole(db, tmp_path, name, content, message):
    with pytest.raises(ImportFileError, match=message):
        import_file(session=db, path=write(tmp_path, name, content))


def test_non_utf8_file_is_rejected(db, tmp_path):
    path = tmp_path / "e.json"
    path.write_bytes('[{"title": "café"}]'.encode("latin-1"))
    with pytest.raises(ImportFileError, match="not UTF-8"):
        import_file(session=db, path=path)
