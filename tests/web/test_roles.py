"""Token roles: viewers read, editors run the newsletter, owners also manage tokens and
erase personal data. Checked through the API, the admin UI and the CLI."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminToken, Subscriber
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.web import api_client, csrf_of

READ_ONLY_POSTS = {"/api/v1/topics/match"}
OWNER_ONLY = {
    ("delete", "/api/v1/subscribers/{email}"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("patch", "/api/v1/tokens/{name}"),
    ("delete", "/api/v1/tokens/{name}"),
    ("put", "/api/v1/clicks/per-reader"),
    ("get", "/api/v1/clicks/readers"),
}


@pytest.fixture
def sampled(engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return engine


def a_reader(engine) -> str:
    with Session(engine) as s:
        return s.exec(select(Subscriber.email).order_by(Subscriber.id)).first()


def test_every_api_operation_states_its_role(web_settings, engine):
    spec = TestClient(create_app(settings=web_settings, engine=engine)).get("/openapi.json").json()
    seen = 0
    for path, item in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, op in item.items():
            seen += 1
            expected = "viewer" if method == "get" or path in READ_ONLY_POSTS else "editor"
            if (method, path) in OWNER_ONLY:
                expected = "owner"
            assert op.get("x-role") == expected, (method, path, op.get("x-role"))
    assert seen > 30


def test_a_viewer_token_reads_but_every_change_is_refused(web_settings, sampled):
    viewer = api_client(web_settings, sampled, name="analyst", role="viewer")
    assert viewer.get("/api/v1/topics").status_code == 200
    assert viewer.get("/api/v1/subscribers").status_code == 200
    check = viewer.post("/api/v1/topics/match", json={"rules": {"include": ["chip"]}})
    assert check.status_code == 200, check.text

    spec = viewer.get("/openapi.json").json()
    email = a_reader(sampled)
    refused = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not path.startswith("/api/v1/") or op["x-role"] == "viewer":
                continue
            url = (
                path.replace("{email}", email)
                .replace("{slug}", "hardware")
                .replace("{name}", "x")
                .replace("{event_id}", "1")
                .replace("{period}", "2025-07")
                .replace("{language}", "zh")
            )
            response = viewer.request(method.upper(), url, json={})
            assert response.status_code == 403, (method, path, response.status_code)
            assert "analyst" in response.json()["detail"]
            assert "viewer token" in response.json()["detail"]
            refused += 1
    assert refused > 20
    # nothing changed: the reader is still there
    assert viewer.get(f"/api/v1/subscribers/{email}").status_code == 200


def test_only_an_owner_erases_personal_data(web_settings, sampled):
    email = a_reader(sampled)
    editor = api_client(web_settings, sampled, name="desk", role="editor")
    refused = editor.delete(f"/api/v1/subscribers/{email}")
    assert refused.status_code == 403
    assert "needs an owner token" in refused.json()["detail"]
    assert editor.get(f"/api/v1/subscribers/{email}").status_code == 200

    owner = api_client(web_settings, sampled, name="boss", role="owner")
    assert owner.delete(f"/api/v1/subscribers/{email}").status_code == 204
    assert owner.get(f"/api/v1/subscribers/{email}").status_code == 404


def test_a_token_with_an_unknown_role_may_do_nothing(web_settings, sampled):
    client = api_client(web_settings, sampled, name="odd", role="viewer")
    with Session(sampled) as s:
        row = s.exec(select(AdminToken).where(AdminToken.name == "odd")).one()
        row.role = "superuser"  # e.g. written by hand into the database
        s.add(row)
        s.commit()
    assert client.get("/api/v1/topics").status_code == 403
    assert client.post("/api/v1/events/retag", json={}).status_code == 403


# --- the admin UI ----------------------------------------------------------------------------


def ui_login(client: TestClient, token: str) -> str:
    form = client.get("/admin/login")
    done = client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    return csrf_of(client.get("/admin/").text)


def test_a_viewer_in_the_admin_ui_sees_pages_without_their_controls(web_settings, sampled):
    with Session(sampled) as s:
        _, token = create_token(session=s, name="analyst", role="viewer")
        s.commit()
        reader = s.exec(select(Subscriber).order_by(Subscriber.id)).first()
    client = TestClient(create_app(settings=web_settings, engine=sampled))
    csrf = ui_login(client, token)

    home = client.get("/admin/").text
    assert "viewer token" in home and 'id="admin-role">viewer<' in home
    topic = client.get("/admin/topics/hardware").text
    assert "Save topic" not in topic and "Retag" not in topic
    page = client.get(f"/admin/subscribers/{reader.id}").text
    assert "Save preferences" not in page and "Yes, unsubscribe" not in page
    assert "A viewer token cannot change readers" in page

    # a form posted anyway is refused and changes nothing
    refused = client.post(
        f"/admin/subscribers/{reader.id}/unsubscribe",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert "needs an editor token" in refused.text
    with Session(sampled) as s:
        assert s.get(Subscriber, reader.id).status == reader.status

    # reading forms still work: the live rule check, and logging out
    check = client.post(
        "/admin/topics/hardware/check", data={"csrf_token": csrf, "include": "chip"}
    )
    assert check.status_code == 200
    out = client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303


def test_an_editor_in_the_admin_ui_keeps_every_control(web_settings, sampled):
    with Session(sampled) as s:
        _, token = create_token(session=s, name="desk", role="editor")
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=sampled))
    ui_login(client, token)
    home = client.get("/admin/").text
    assert "viewer token" not in home and 'id="admin-role">editor<' in home
    assert "Save topic" in client.get("/admin/topics/hardware").text


# --- the CLI -----------------------------------------------------------------------------


def test_the_first_token_is_an_owner_and_later_ones_editors(cli):
    first = cli("admin", "token", "create", "founder")
    assert first.exit_code == 0 and "role owner" in first.output
    second = cli("admin", "token", "create", "desk")
    assert second.exit_code == 0 and "role editor" in second.output
    third = cli("admin", "token", "create", "analyst", "--role", "Viewer")
    assert third.exit_code == 0 and "role viewer" in third.output
    bad = cli("admin", "token", "create", "x", "--role", "admin")
    assert bad.exit_code != 0 and "unknown role 'admin'" in bad.output
    listed = cli("admin", "token", "list").output
    assert "viewer" in listed and "owner" in listed


def test_the_last_owner_cannot_step_down(cli):
    cli("admin", "token", "create", "founder")
    cli("admin", "token", "create", "desk")
    refused = cli("admin", "token", "role", "founder", "editor")
    assert refused.exit_code != 0 and "last owner" in refused.output
    assert cli("admin", "token", "role", "desk", "owner").exit_code == 0
    moved = cli("admin", "token", "role", "founder", "viewer")
    assert moved.exit_code == 0 and "now viewer" in moved.output
    unknown = cli("admin", "token", "role", "nobody", "viewer")
    assert unknown.exit_code != 0 and "no live token named 'nobody'" in unknown.output
