"""The API for people: owners manage admin tokens (/api/v1/tokens), editors import a
subscribers CSV with a report per row (/api/v1/subscribers/import)."""

from __future__ import annotations

import codecs

import pytest
from sqlmodel import Session, select

from newsletter.core.models import AdminAudit, AdminToken, Subscriber, Suppression
from newsletter.pipeline.sample import add_demo_readers, load_sample
from tests.support.web import api_client


@pytest.fixture
def sampled(engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return engine


def audit_actions(engine) -> list[tuple[str, str, str]]:
    with Session(engine) as s:
        rows = s.exec(select(AdminAudit).order_by(AdminAudit.id)).all()
        return [(r.token_name, r.action, r.target) for r in rows]


# --- tokens --------------------------------------------------------------------------------


def test_an_owner_lists_creates_changes_and_revokes_tokens(web_settings, sampled):
    owner = api_client(web_settings, sampled, name="boss", role="owner")
    created = owner.post("/api/v1/tokens", json={"name": "analyst", "role": "viewer"})
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("nla_") and created.json()["role"] == "viewer"

    listed = owner.get("/api/v1/tokens").json()["data"]
    assert [(t["name"], t["role"], t["revoked"]) for t in listed] == [
        ("boss", "owner", False),
        ("analyst", "viewer", False),
    ]
    assert token not in str(listed) and "hash" not in str(listed)

    # the new token works, as a viewer
    analyst = api_client(web_settings, sampled, name="unused", role="viewer")
    analyst.headers["Authorization"] = f"Bearer {token}"
    assert analyst.get("/api/v1/topics").status_code == 200
    assert analyst.get("/api/v1/tokens").status_code == 403

    promoted = owner.patch("/api/v1/tokens/analyst", json={"role": "editor"})
    assert promoted.status_code == 200 and promoted.json()["role"] == "editor"
    assert owner.delete("/api/v1/tokens/analyst").status_code == 204
    assert analyst.get("/api/v1/topics").status_code == 403  # revoked at once
    again = owner.delete("/api/v1/tokens/analyst")
    assert again.status_code == 204  # nothing more to do
    gone = next(t for t in owner.get("/api/v1/tokens").json()["data"] if t["name"] == "analyst")
    assert gone["revoked"] and gone["revoked_at"]
    assert [a[1] for a in audit_actions(sampled) if a[0] == "boss"] == [
        "token.create",
        "token.role",
        "token.revoke",
    ]


def test_token_requests_refused_with_a_reason(web_settings, sampled):
    owner = api_client(web_settings, sampled, name="boss", role="owner")
    assert owner.post("/api/v1/tokens", json={"name": "boss", "role": "viewer"}).status_code == 409
    bad_role = owner.post("/api/v1/tokens", json={"name": "x", "role": "admin"})
    assert bad_role.status_code == 422
    control = owner.post("/api/v1/tokens", json={"name": "a\tb", "role": "viewer"})
    assert control.status_code == 400 and "printable" in control.json()["detail"]
    assert owner.delete("/api/v1/tokens/nobody").status_code == 404
    assert owner.patch("/api/v1/tokens/nobody", json={"role": "viewer"}).status_code == 404


def test_the_last_owner_can_neither_leave_nor_step_down(web_settings, sampled):
    owner = api_client(web_settings, sampled, name="boss", role="owner")
    demote = owner.patch("/api/v1/tokens/boss", json={"role": "editor"})
    assert demote.status_code == 409 and "last owner" in demote.json()["detail"]
    revoke = owner.delete("/api/v1/tokens/boss")
    assert revoke.status_code == 409 and "last owner" in revoke.json()["detail"]
    assert owner.get("/api/v1/tokens").status_code == 200  # still an owner

    # with a second owner, the first may step down (and then manages tokens no more)
    assert owner.post("/api/v1/tokens", json={"name": "heir", "role": "owner"}).status_code == 201
    assert owner.patch("/api/v1/tokens/boss", json={"role": "editor"}).status_code == 200
    assert owner.get("/api/v1/tokens").status_code == 403


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_only_owners_manage_tokens(web_settings, sampled, role):
    api_client(web_settings, sampled, name="boss", role="owner")
    client = api_client(web_settings, sampled, name="someone", role=role)
    for method, url, body in [
        ("GET", "/api/v1/tokens", None),
        ("POST", "/api/v1/tokens", {"name": "mine", "role": "owner"}),
        ("PATCH", "/api/v1/tokens/someone", {"role": "owner"}),
        ("DELETE", "/api/v1/tokens/boss", None),
    ]:
        response = client.request(method, url, json=body)
        assert response.status_code == 403, (method, url)
        assert "needs an owner token" in response.json()["detail"]
    with Session(sampled) as s:
        rows = s.exec(select(AdminToken).order_by(AdminToken.id)).all()
        assert [(r.name, r.role, r.revoked_at) for r in rows] == [
            ("boss", "owner", None),
            ("someone", role, None),
        ]


# --- CSV import ----------------------------------------------------------------------------

MIXED = (
    "email,name,topics,frequency,language,timezone\n"
    "new.one@example.org,New One,hardware,weekly,en,Europe/Berlin\n"
    "not-an-address,Bad,hardware,weekly,en,UTC\n"
    "reader.en@example.com,,capital,,,\n"
    'new.two@example.org,\'=HYPERLINK("x"),governance;capital,,zh,\n'
    "new.three@example.org,Three,no-such-topic,,,\n"
    "new.one@example.org,Again,hardware,,,\n"
    "reader.zh@example.com,,,,,\n"
    "gone@example.org,Gone,hardware,,,\n"
)


def suppress(engine, email: str, reason: str) -> None:
    from newsletter.audience.subscribers import suppress as put

    with Session(engine) as s:
        put(session=s, email=email, reason=reason)
        s.commit()


def test_an_editor_imports_a_mixed_file_row_by_row(web_settings, sampled):
    suppress(sampled, "gone@example.org", "removed")
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    before = editor.get("/api/v1/subscribers/reader.en@example.com").json()
    response = editor.post(
        "/api/v1/subscribers/import",
        content=codecs.BOM_UTF8 + MIXED.encode(),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    rows = [(r["line"], r["email"], r["action"]) for r in report["rows"]]
    assert rows == [
        (2, "new.one@example.org", "added"),
        (3, "not-an-address", "refused"),
        (4, "reader.en@example.com", "updated"),
        (5, "new.two@example.org", "added"),
        (6, "new.three@example.org", "refused"),
        (7, "new.one@example.org", "refused"),
        (8, "reader.zh@example.com", "unchanged"),
        (9, "gone@example.org", "refused"),
    ]
    reasons = {r["line"]: r["reason"] for r in report["rows"]}
    assert "invalid email address" in reasons[3]
    assert "unknown topic(s): no-such-topic" in reasons[6]
    assert "also on line 2" in reasons[7]
    assert "removed" in reasons[9]
    assert (report["added"], report["updated"], report["unchanged"], report["refused"]) == (
        2,
        1,
        1,
        4,
    )
    assert report["encoding"] == "UTF-8"

    new = editor.get("/api/v1/subscribers/new.one@example.org").json()
    assert (new["status"], new["frequency"], new["timezone"]) == (
        "active",
        "weekly",
        "Europe/Berlin",
    )
    # the export's formula quote is read back as the value it was
    assert editor.get("/api/v1/subscribers/new.two@example.org").json()["name"] == (
        '=HYPERLINK("x")'
    )
    # an update changes only the cells the row fills
    after = editor.get("/api/v1/subscribers/reader.en@example.com").json()
    assert after["topics"] == ["capital"]
    assert (after["name"], after["frequency"], after["language"]) == (
        before["name"],
        before["frequency"],
        before["language"],
    )
    assert ("desk", "subscribers.import", "csv") in audit_actions(sampled)


def test_import_as_a_form_upload_in_windows_1252(web_settings, sampled):
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    data = "email,name,topics\nzoe@example.org,Zoë Müller,hardware\n".encode("cp1252")
    response = editor.post(
        "/api/v1/subscribers/import", files={"file": ("readers.csv", data, "text/csv")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["encoding"] == "Windows-1252"
    assert editor.get("/api/v1/subscribers/zoe@example.org").json()["name"] == "Zoë Müller"


def test_a_file_that_cannot_be_read_imports_nothing(web_settings, sampled):
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    no_email = editor.post(
        "/api/v1/subscribers/import",
        content=b"name,topics\nAda,hardware\n",
        headers={"Content-Type": "text/csv"},
    )
    assert no_email.status_code == 400 and "email column" in no_email.json()["detail"]
    big = b"email,topics\n" + b"x@example.org,hardware\n" * (5 * 2**20 // 20)
    too_big = editor.post(
        "/api/v1/subscribers/import", content=big, headers={"Content-Type": "text/csv"}
    )
    assert too_big.status_code == 400 and "larger than 5 MB" in too_big.json()["detail"]
    json_body = editor.post("/api/v1/subscribers/import", json={"email": "a@example.org"})
    assert json_body.status_code == 415
    with Session(sampled) as s:
        assert s.exec(select(Subscriber).where(Subscriber.email == "x@example.org")).first() is None
        assert s.exec(select(Suppression)).first() is None


def test_a_viewer_cannot_import(web_settings, sampled):
    viewer = api_client(web_settings, sampled, name="analyst", role="viewer")
    response = viewer.post(
        "/api/v1/subscribers/import",
        content=b"email,topics\nv@example.org,hardware\n",
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 403
    with Session(sampled) as s:
        assert s.exec(select(Subscriber).where(Subscriber.email == "v@example.org")).first() is None


def test_import_reads_utf16_and_leaves_readers_who_are_not_active_alone(web_settings, sampled):
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    with Session(sampled) as s:
        sub = s.exec(select(Subscriber).where(Subscriber.email == "reader.zh@example.com")).one()
        sub.status = "pending"
        s.add(sub)
        s.commit()
    text = "email,name,topics\nreader.zh@example.com,Changed,capital\nli@example.org,李雷,capital\n"
    response = editor.post(
        "/api/v1/subscribers/import",
        content=text.encode("utf-16"),  # with its byte-order mark
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["encoding"] == "UTF-16"
    pending, added = report["rows"]
    assert pending["action"] == "refused" and "has not confirmed" in pending["reason"]
    assert (added["email"], added["action"]) == ("li@example.org", "added")
    assert editor.get("/api/v1/subscribers/li@example.org").json()["name"] == "李雷"
    kept = editor.get("/api/v1/subscribers/reader.zh@example.com").json()
    assert kept["name"] != "Changed" and kept["status"] == "pending"
    garbage = editor.post(
        "/api/v1/subscribers/import",
        content=b"email\n\x81\x8d\x8f\x90\x9d@example.org\n",
        headers={"Content-Type": "text/csv"},
    )
    assert garbage.status_code == 400 and "CSV UTF-8" in garbage.json()["detail"]


def test_import_reads_semicolon_and_tab_separated_files(web_settings, sampled):
    """Spreadsheets in European locales save CSV with semicolons; some tools use tabs."""
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    semicolon = "\r\n".join(
        [
            "email;name;language;topics",
            'semi@example.org;"Müller; Anna";en;"governance,capital"',
            "",
        ]
    )
    response = editor.post(
        "/api/v1/subscribers/import",
        content=semicolon.encode("cp1252"),
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert [(r["email"], r["action"]) for r in response.json()["rows"]] == [
        ("semi@example.org", "added")
    ]
    semi = editor.get("/api/v1/subscribers/semi@example.org").json()
    assert (semi["name"], semi["topics"]) == ("Müller; Anna", ["governance", "capital"])

    tab = "email\tname\ttopics\ntab@example.org\tTab, Reader\thardware\n"
    response = editor.post(
        "/api/v1/subscribers/import", content=tab.encode(), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    assert editor.get("/api/v1/subscribers/tab@example.org").json()["name"] == "Tab, Reader"

    # a header that names no email column is still refused as a whole, whatever it uses
    no_email = editor.post(
        "/api/v1/subscribers/import",
        content=b"name;topics\nAda;hardware\n",
        headers={"Content-Type": "text/csv"},
    )
    assert no_email.status_code == 400 and "email column" in no_email.json()["detail"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("ops/night", "cannot contain '/'"),
        ("what?", "cannot contain '?'"),
        ("team#2", "cannot contain '#'"),
        ("100%", "cannot contain '%'"),
        ("back\\slash", "cannot contain '\\'"),
        ("ana\u200blyst", "U+200B ZERO WIDTH SPACE"),
        ("ad\u202emin", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("be\u0085ll", "invisible or control characters"),
    ],
)
def test_a_token_name_that_breaks_its_address_or_hides_characters_is_refused(
    web_settings, sampled, name, says
):
    owner = api_client(web_settings, sampled, name="boss", role="owner")
    response = owner.post("/api/v1/tokens", json={"name": name, "role": "viewer"})
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    with Session(sampled) as s:
        assert s.exec(select(AdminToken).where(AdminToken.name == name)).first() is None
    # a name with spaces, dots and letters of any script is fine, and reachable by its address
    fine = owner.post("/api/v1/tokens", json={"name": "Zoë night.ops 值班", "role": "viewer"})
    assert fine.status_code == 201, fine.text
    changed = owner.patch("/api/v1/tokens/Zoë night.ops 值班", json={"role": "editor"})
    assert changed.status_code == 200 and changed.json()["role"] == "editor", changed.text
