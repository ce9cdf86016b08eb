"""The admin console for people: owners manage tokens (/admin/tokens) and erase a reader's
personal data; editors import a subscribers CSV with a report per row. TestClient for
access, CSRF and bad input; Chromium for the user's path and the screenshots."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlmodel import Session, select

from newsletter.core.addresses import address_hash
from newsletter.core.admin_tokens import create_token, verify_token
from newsletter.core.models import AdminAudit, AdminToken, Subscriber, Suppression
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.web.test_admin_lists_ui import shoot
from tests.web.test_admin_ui import browser_login, login


@pytest.fixture
def sampled(engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return engine


def token_for(engine, name: str, role: str) -> str:
    with Session(engine) as s:
        _, token = create_token(session=s, name=name, role=role)
        s.commit()
    return token


def client_as(web_settings, engine, name: str, role: str) -> tuple[TestClient, str]:
    client = TestClient(create_app(settings=web_settings, engine=engine))
    return client, login(client, token_for(engine, name, role))


def reader(engine, email: str) -> Subscriber | None:
    with Session(engine) as s:
        return s.exec(select(Subscriber).where(Subscriber.email == email)).first()


def fits(page) -> None:
    """The page fits 390 and 1200 px without scrolling sideways."""
    for width in (390, 1200):
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width, width


def shoot_fitting(page, name: str, folder) -> None:
    fits(page)
    shoot(page, name, folder)


def audit_actions(engine) -> list[tuple[str, str]]:
    with Session(engine) as s:
        return [
            (a.token_name, a.action) for a in s.exec(select(AdminAudit).order_by(AdminAudit.id))
        ]


# --- tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_the_tokens_page_is_for_owners_only(web_settings, sampled, role):
    token_for(sampled, "boss", "owner")
    client, csrf = client_as(web_settings, sampled, "someone", role)
    assert "/admin/tokens" not in client.get("/admin/").text  # no nav link
    page = client.get("/admin/tokens")
    assert page.status_code == 403 and "needs an owner token" in page.text
    for url, data in [
        ("/admin/tokens", {"name": "mine", "role": "owner"}),
        ("/admin/tokens/role", {"name": "someone", "role": "owner"}),
        ("/admin/tokens/revoke", {"name": "boss"}),
    ]:
        refused = client.post(url, data={"csrf_token": csrf, **data})
        assert refused.status_code == 403, url
    with Session(sampled) as s:
        rows = s.exec(select(AdminToken).order_by(AdminToken.id)).all()
        assert [(r.name, r.role, r.revoked_at) for r in rows] == [
            ("boss", "owner", None),
            ("someone", role, None),
        ]


def test_an_owner_manages_tokens_in_the_ui(web_settings, sampled):
    client, csrf = client_as(web_settings, sampled, "boss", "owner")
    home = client.get("/admin/").text
    assert 'href="/admin/tokens"' in home
    # bad input: a message by the field, nothing stored
    dup = client.post("/admin/tokens", data={"csrf_token": csrf, "name": "boss", "role": "viewer"})
    assert dup.status_code == 422 and "exists already" in dup.text
    no_csrf = client.post("/admin/tokens", data={"name": "x", "role": "viewer"})
    assert no_csrf.status_code == 403
    bad_role = client.post("/admin/tokens", data={"csrf_token": csrf, "name": "x", "role": "root"})
    assert bad_role.status_code == 422 and "unknown role" in bad_role.text

    made = client.post("/admin/tokens", data={"csrf_token": csrf, "name": "ci", "role": "editor"})
    assert made.status_code == 201
    token = re.search(r'id="new-token" class="mono" value="(nla_[^"]+)"', made.text).group(1)
    assert "only time it is shown" in made.text
    listing = client.get("/admin/tokens").text
    assert token not in listing and "ci" in listing

    # the last owner can neither step down nor be revoked
    demote = client.post(
        "/admin/tokens/role", data={"csrf_token": csrf, "name": "boss", "role": "viewer"}
    )
    assert demote.status_code == 409 and "last owner" in demote.text
    revoke = client.post("/admin/tokens/revoke", data={"csrf_token": csrf, "name": "boss"})
    assert revoke.status_code == 409 and "last owner" in revoke.text

    client.post("/admin/tokens/role", data={"csrf_token": csrf, "name": "ci", "role": "viewer"})
    done = client.post("/admin/tokens/revoke", data={"csrf_token": csrf, "name": "ci"})
    assert "is revoked" in done.text
    with Session(sampled) as s:
        assert verify_token(session=s, token=token) is None
    assert audit_actions(sampled) == [
        ("boss", "token.create"),
        ("boss", "token.role"),
        ("boss", "token.revoke"),
    ]

    # with a second owner, the first may step down: then the page is closed to them
    client.post("/admin/tokens", data={"csrf_token": csrf, "name": "heir", "role": "owner"})
    down = client.post(
        "/admin/tokens/role", data={"csrf_token": csrf, "name": "boss", "role": "editor"}
    )
    assert down.status_code == 200 and "/admin/tokens" not in down.text  # the dashboard
    assert client.get("/admin/tokens").status_code == 403


# --- erasure --------------------------------------------------------------------------------


def test_only_owners_see_and_use_the_erasure(web_settings, sampled):
    sub = reader(sampled, "reader.en@example.com")
    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    page = editor.get(f"/admin/subscribers/{sub.id}").text
    assert "Delete personal data" not in page
    refused = editor.post(
        f"/admin/subscribers/{sub.id}/erase", data={"csrf_token": csrf, "confirm_email": sub.email}
    )
    assert refused.status_code == 403 and "needs an owner token" in refused.text
    assert reader(sampled, sub.email) is not None

    owner, csrf = client_as(web_settings, sampled, "boss", "owner")
    wrong = owner.post(
        f"/admin/subscribers/{sub.id}/erase",
        data={"csrf_token": csrf, "confirm_email": "someone@example.com"},
    )
    assert wrong.status_code == 422 and "Type the reader" in wrong.text
    assert reader(sampled, sub.email) is not None


# --- CSV import -----------------------------------------------------------------------------


def test_import_page_refuses_what_it_cannot_read(web_settings, sampled):
    editor, csrf = client_as(web_settings, sampled, "desk", "editor")
    assert 'href="/admin/subscribers/import"' in editor.get("/admin/subscribers").text
    no_file = editor.post("/admin/subscribers/import", data={"csrf_token": csrf})
    assert no_file.status_code == 422 and "Choose a CSV file" in no_file.text
    no_email = editor.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("x.csv", b"name\nAda\n", "text/csv")},
    )
    assert no_email.status_code == 422 and "email column" in no_email.text
    big = b"email,topics\n" + b"x@example.org,hardware\n" * (6 * 2**20 // 23)
    too_big = editor.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("big.csv", big, "text/csv")},
    )
    assert too_big.status_code == 413 and "larger than 5 MB" in too_big.text
    assert reader(sampled, "x@example.org") is None

    viewer, csrf = client_as(web_settings, sampled, "analyst", "viewer")
    refused = viewer.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("v.csv", b"email,topics\nv@example.org,hardware\n", "text/csv")},
    )
    assert refused.status_code == 403
    assert reader(sampled, "v@example.org") is None


# --- in Chromium ----------------------------------------------------------------------------


def test_browser_owner_creates_a_viewer_token_sees_it_once_and_revokes_it(
    page, live_server, sampled, screenshot_dir
):
    browser_login(page, live_server, token_for(sampled, "boss", "owner"))
    page.get_by_role("link", name="Tokens").click()
    expect(page.get_by_role("heading", name="Tokens", exact=True)).to_be_visible()
    # by keyboard: the name, the role (viewer), the button
    page.get_by_label("Name").focus()
    page.keyboard.type("analyst")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Role", exact=True)).to_be_focused()
    expect(page.get_by_label("Role", exact=True)).to_have_value("viewer")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Create token")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Token created")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("only time it is shown")
    token = page.get_by_label("Token").input_value()
    assert token.startswith("nla_")
    with Session(sampled) as s:
        row = verify_token(session=s, token=token)
        assert row is not None and (row.name, row.role) == ("analyst", "viewer")

    page.get_by_role("link", name="← All tokens").click()
    expect(page.locator("body")).not_to_contain_text(token)  # shown once
    row = page.locator('#tokens tr[data-token="analyst"]')
    expect(row.locator(".badge.role-viewer")).to_have_text("viewer")
    row.get_by_text("Revoke…").click()
    expect(row.get_by_text("its sessions end at once")).to_be_visible()
    shoot_fitting(page, "tokens", screenshot_dir)
    row.get_by_role("button", name="Yes, revoke analyst").click()
    expect(page.get_by_role("status")).to_contain_text("'analyst' is revoked")
    expect(page.locator('#tokens tr[data-token="analyst"]')).to_contain_text("revoked")
    with Session(sampled) as s:
        assert verify_token(session=s, token=token) is None


def test_browser_owner_erases_a_reader(page, live_server, sampled):
    sub = reader(sampled, "reader.en@example.com")
    browser_login(page, live_server, token_for(sampled, "boss", "owner"))
    page.goto(f"{live_server.url}/admin/subscribers/{sub.id}")
    page.get_by_text("Delete personal data…").click()
    expect(page.get_by_text("kept only as a one-way hash on the suppression list")).to_be_visible()
    fits(page)
    page.get_by_label("to confirm").fill("reader.zh@example.com")  # not this reader
    page.get_by_role("button", name="Delete personal data").click()
    expect(page.get_by_role("alert")).to_have_text("Type the reader's address exactly to confirm.")
    page.get_by_label("to confirm").fill(sub.email)
    page.get_by_role("button", name="Delete personal data").click()
    page.wait_for_url(re.compile(r".*/admin/subscribers\?done=erased$"))
    expect(page.get_by_role("status")).to_contain_text("personal data is deleted")
    expect(page.locator("#subscribers")).not_to_contain_text(sub.email)
    assert reader(sampled, sub.email) is None
    with Session(sampled) as s:
        kept = s.exec(
            select(Suppression).where(Suppression.address_hash == address_hash(sub.email))
        ).one()
        assert kept.reason == "removed"
    assert ("boss", "subscriber.remove") in audit_actions(sampled)


MIXED = (
    "\ufeffemail,name,topics,frequency,language,timezone\r\n"
    "new.one@example.org,New One,hardware,weekly,en,Europe/Berlin\r\n"
    "not-an-address,Bad,hardware,weekly,en,UTC\r\n"
    "reader.en@example.com,,capital,,,\r\n"
    "new.two@example.org,Two,,,zh,\r\n"
    "new.three@example.org,Three,no-such-topic,,,\r\n"
)


def test_browser_editor_imports_a_mixed_file_and_reads_the_report(
    page, live_server, sampled, screenshot_dir, tmp_path
):
    upload = tmp_path / "readers.csv"
    upload.write_text(MIXED, encoding="utf-8")
    browser_login(page, live_server, token_for(sampled, "desk", "editor"))
    page.get_by_role("link", name="Subscribers").click()
    page.get_by_role("link", name="Import CSV").click()
    expect(page.get_by_role("heading", name="Import subscribers")).to_be_visible()
    page.get_by_label("CSV file", exact=True).set_input_files(str(upload))
    page.get_by_label("Governance").check()  # for the row that names no topic
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_role("status")).to_have_text("2 added, 1 updated, 0 unchanged, 2 refused.")
    rows = page.locator("#import-rows tbody tr")
    expect(rows).to_have_count(5)
    bad = page.locator('#import-rows tr[data-line="3"]')
    expect(bad).to_contain_text("refused")
    expect(bad).to_contain_text("invalid email address")
    expect(page.locator('#import-rows tr[data-line="6"]')).to_contain_text(
        "unknown topic(s): no-such-topic"
    )
    expect(page.locator('#import-rows tr[data-line="4"]')).to_contain_text("updated")
    shoot_fitting(page, "import", screenshot_dir)
    added = reader(sampled, "new.two@example.org")
    assert added is not None and added.status == "active" and added.language == "zh"
    page.goto(f"{live_server.url}/admin/subscribers/{added.id}")
    expect(page.locator("#sub-topics")).to_have_text("governance")
    assert reader(sampled, "new.three@example.org") is None
