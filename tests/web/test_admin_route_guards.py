"""Every form route of the admin UI, found in the app itself (so a new route is covered
the day it is added): a viewer changes nothing, an editor reaches no owner-only action,
and no form is taken without the session's CSRF token."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session, SQLModel, select

from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Event, Feed, Subscriber
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.web import ADMIN_PAGES
from tests.web.test_roles import ui_login

# forms that only read: logging out, the take's preview, the live checks of topic rules
READ_ONLY_FORMS = {
    "/admin/logout",
    "/admin/take/preview",
    "/admin/topics/_new/check",
    "/admin/topics/{slug}/check",
}
OWNER_ONLY_FORMS = {
    "/admin/tokens",
    "/admin/tokens/role",
    "/admin/tokens/revoke",
    "/admin/subscribers/{subscriber_id}/erase",
    "/admin/clicks/per-reader",
}
NO_SESSION = {"/admin/login"}


@pytest.fixture
def sampled(engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return engine


def admin_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every admin UI route other than GET."""
    found = []
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, APIRoute) or not ctx.path.startswith("/admin"):
            continue
        found += [(m, ctx.path) for m in sorted(ctx.methods or ()) if m not in ("GET", "HEAD")]
    return found


def concrete(path: str, engine) -> str:
    with Session(engine) as s:
        reader = s.exec(select(Subscriber.id).order_by(Subscriber.id)).first()
        event = s.exec(select(Event.id).order_by(Event.id)).first()
        feed = s.exec(select(Feed.id).order_by(Feed.id)).first()
    return (
        path.replace("{subscriber_id}", str(reader))
        .replace("{event_id}", str(event))
        .replace("{feed_id}", str(feed or 1))
        .replace("{slug}", "hardware")
        .replace("{name}", "ops")
        .replace("{delivery_id}", "1")
    )


def session_of(web_settings, engine, name: str, role: str) -> tuple[TestClient, str]:
    with Session(engine) as s:
        _, token = create_token(session=s, name=name, role=role)
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    return client, ui_login(client, token)


def counts(engine) -> tuple[int, int]:
    with Session(engine) as s:
        return (
            len(s.exec(select(Subscriber.id)).all()),
            len(s.exec(select(AdminAudit.id)).all()),
        )


def test_the_admin_ui_has_only_post_forms(web_settings, engine):
    app = create_app(settings=web_settings, engine=engine)
    routes = admin_routes(app)
    assert len(routes) > 40
    assert {m for m, _ in routes} == {"POST"}, routes
    paths = {p for _, p in routes}
    assert paths >= READ_ONLY_FORMS | OWNER_ONLY_FORMS


def test_a_viewer_session_is_refused_every_changing_form(web_settings, sampled):
    client, csrf = session_of(web_settings, sampled, "analyst", "viewer")
    before = counts(sampled)
    refused = 0
    for method, path in admin_routes(client.app):
        if path in READ_ONLY_FORMS | NO_SESSION:
            continue
        response = client.request(
            method, concrete(path, sampled), data={"csrf_token": csrf}, follow_redirects=False
        )
        assert response.status_code == 403, (path, response.status_code)
        assert "viewer token" in response.text, path
        refused += 1
    assert refused > 35
    assert counts(sampled) == before  # no reader gone, nothing audited
    # the session still works: it was refused, not logged out
    assert client.get("/admin/", follow_redirects=False).status_code == 200


def test_an_editor_session_is_refused_every_owner_form(web_settings, sampled):
    client, csrf = session_of(web_settings, sampled, "desk", "editor")
    before = counts(sampled)
    owner_paths = set()
    for method, path in admin_routes(client.app):
        if path in NO_SESSION | {"/admin/logout"}:
            continue
        response = client.request(
            method,
            concrete(path, sampled),
            data={"csrf_token": csrf, "name": "desk", "role": "owner", "on": "1"},
            follow_redirects=False,
        )
        if response.status_code == 403 and "needs an owner token" in response.text:
            owner_paths.add(path)
    assert owner_paths == OWNER_ONLY_FORMS
    assert counts(sampled)[0] == before[0]
    assert client.get("/admin/tokens").status_code == 403
    # the editor did not make itself an owner
    assert 'id="admin-role">editor<' in client.get("/admin/").text


def test_no_admin_form_is_taken_without_the_csrf_token(web_settings, sampled):
    client, csrf = session_of(web_settings, sampled, "boss", "owner")
    before = counts(sampled)
    for method, path in admin_routes(client.app):
        if path in NO_SESSION:
            continue
        for data in ({}, {"csrf_token": csrf[:-1] + ("0" if csrf[-1] != "0" else "1")}):
            response = client.request(
                method, concrete(path, sampled), data=data, follow_redirects=False
            )
            assert response.status_code == 403, (path, response.status_code)
            assert "security token" in response.text, path
    assert counts(sampled) == before


def snapshot(engine) -> dict[str, list]:
    """Every row of every table, but for what a login itself writes."""
    got = {}
    with engine.connect() as conn:
        for name, table in SQLModel.metadata.tables.items():
            if name == "adminwebsession":
                continue
            cols = [c for c in table.columns if c.name != "last_used_at"]
            got[name] = sorted(map(repr, conn.execute(select(*cols)).all()))
    return got


def test_a_viewer_changes_nothing_by_opening_pages(web_settings, sampled):
    client, _ = session_of(web_settings, sampled, "analyst", "viewer")
    with Session(sampled) as s:
        email = s.exec(select(Subscriber.email).order_by(Subscriber.id)).first()
    before = snapshot(sampled)
    pages = [p for p in ADMIN_PAGES] + [
        concrete(p, sampled)
        for p in (
            "/admin/events/{event_id}",
            "/admin/subscribers/{subscriber_id}",
            "/admin/tokens",
            "/admin/events/new",
            "/admin/events/import",
        )  # fmt: skip
    ]
    pages += [
        f"/admin/preview?frequency=monthly&period=2025-07&email={email}",
        "/admin/preview?frequency=weekly&period=2025-W28&email=" + email,
        "/admin/send?frequency=monthly&period=2025-07",
        "/admin/send?frequency=weekly&period=2025-W28",
        "/admin/take?period=2025-07",
        "/admin/subscribers/export.csv",
        "/admin/?clicks_saved=on",
    ]
    for path in pages:
        assert client.get(path).status_code in (200, 403), path
    preview = client.get(pages[-7]).text
    assert "Stay ahead" in preview or "preview" in preview.lower()
    assert len(before["event"]) > 5 and len(before["subscriber"]) >= 2
    assert snapshot(sampled) == before


def test_a_nul_byte_in_any_admin_input_is_bad_input_not_a_fault(web_settings, sampled):
    """PostgreSQL refuses NUL in text: a query or form holding one must answer 4xx."""
    client, csrf = session_of(web_settings, sampled, "boss", "owner")
    gets = ["/admin/events?topic=%00&q=%00", "/admin/events?region=%00&source=%00",
            "/admin/topics/%00", "/admin/subscribers?q=%00", "/admin/outbox?recipient=%00",
            "/admin/tokens?done=role&name=%00"]  # fmt: skip
    posts = {"/admin/tokens": {"name": "a\x00b", "role": "viewer"},
             "/admin/tokens/role": {"name": "\x00", "role": "viewer"},
             "/admin/tokens/revoke": {"name": "\x00"},
             "/admin/events/new": {"title_en": "a\x00", "url": "https://x.example/\x00",
                                   "occurred_on": "2025-07-01", "region": "\x00"},
             "/admin/topics": {"slug": "a\x00", "name_en": "\x00"},
             "/admin/webhooks": {"name": "\x00", "url": "\x00"},
             "/admin/feeds": {"url": "https://x.example/\x00", "name": "\x00"}}  # fmt: skip
    for path in gets:
        got = client.get(path, follow_redirects=False)
        assert got.status_code < 500, (path, got.status_code)
    for path, data in posts.items():
        got = client.post(path, data={"csrf_token": csrf, **data}, follow_redirects=False)
        assert got.status_code < 500, (path, got.status_code)
    # still signed in and working afterwards
    assert client.get("/admin/", follow_redirects=False).status_code == 200
