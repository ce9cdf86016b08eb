"""A subscribers CSV that is all wrong, or of countless tiny rows, within the 5 MB cap:
the web process must answer with a bounded page, not build one row of report per line
(a 5 MB file of two-byte lines is 2.6 million rows: gigabytes of report)."""

from __future__ import annotations

from newsletter.audience.imports import MAX_ROWS
from newsletter.web.admin.subscriber_import import REFUSED_LISTED
from tests.support.web import api_client
from tests.web.test_admin_people_ui import client_as, reader, sampled  # noqa: F401


def test_the_import_report_lists_a_bounded_number_of_refused_rows(web_settings, sampled):  # noqa: F811
    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    bad = REFUSED_LISTED + 250
    body = b"email,topics\nok@example.org,hardware\n" + b"not-an-address,hardware\n" * bad
    got = editor.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("mixed.csv", body, "text/csv")},
    )
    assert got.status_code == 200, got.text[:300]
    assert f'<dd id="count-refused">{bad}</dd>' in got.text
    assert got.text.count('data-outcome="refused"') == REFUSED_LISTED
    assert "250 more refused rows are not listed" in got.text
    assert got.text.count('data-outcome="added"') == 1
    assert reader(sampled, "ok@example.org") is not None


def test_a_file_of_more_rows_than_the_import_takes_is_refused_whole(web_settings, sampled):  # noqa: F811
    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    body = b"email,topics\nfirst@example.org,hardware\n" + b"x\n" * MAX_ROWS
    page = editor.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("tiny-rows.csv", body, "text/csv")},
    )
    assert page.status_code == 422
    assert f"more than {MAX_ROWS:,} rows" in page.text
    api = api_client(web_settings, sampled, name="robot", role="editor")
    answer = api.post(
        "/api/v1/subscribers/import", content=body, headers={"Content-Type": "text/csv"}
    )
    assert answer.status_code == 400 and f"more than {MAX_ROWS:,} rows" in answer.json()["detail"]
    assert reader(sampled, "first@example.org") is None


def test_no_route_reads_a_body_beyond_the_app_limit(web_settings, sampled):  # noqa: F811
    """Forms are parsed before the login and CSRF checks run: without a ceiling on the
    whole app, anyone could make a form route spool gigabytes to disk first."""
    from fastapi.testclient import TestClient

    from newsletter.web.app import MAX_BODY_BYTES, create_app

    anyone = TestClient(create_app(settings=web_settings, engine=sampled))
    big = b"x" * (MAX_BODY_BYTES + 1)
    for path in ("/admin/events/import", "/admin/subscribers/import", "/admin/topics"):
        got = anyone.post(path, files={"file": ("big.json", big, "application/json")},
                          follow_redirects=False)  # fmt: skip
        assert got.status_code == 413, (path, got.status_code)
    for path in ("/admin/login", "/subscribe", "/api/v1/events"):
        got = anyone.post(path, data={"email": big.decode()}, follow_redirects=False)
        assert got.status_code == 413, (path, got.status_code)
    # a file within the events import's own limit is still taken (and judged)
    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    small = editor.post("/admin/events/import", data={"csrf_token": csrf},
                        files={"file": ("e.json", b"[]", "application/json")})  # fmt: skip
    assert small.status_code in (200, 400) and "Content Too Large" not in small.text


def test_the_events_import_page_lists_a_bounded_number_of_refused_records(web_settings, sampled):  # noqa: F811
    from newsletter.web.admin.events import REFUSED_LISTED as EVENTS_LISTED

    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    body = b'{"title": "no date, no link"}\n' * (EVENTS_LISTED + 40)
    got = editor.post("/admin/events/import", data={"csrf_token": csrf, "format": "jsonl"},
                      files={"file": ("bad.jsonl", body, "application/x-ndjson")})  # fmt: skip
    assert got.status_code == 200, got.text[:300]
    assert f"{EVENTS_LISTED + 40} refused" in got.text
    assert got.text.count('class="err"') == EVENTS_LISTED
    assert "40 more refused records are not listed" in got.text
