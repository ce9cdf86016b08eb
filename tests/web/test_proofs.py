"""Digest proofs to editors and the sharp take's approval: the API, the admin pages (in
TestClient and in Chromium), the CLI, with a real SMTP server receiving the proofs."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from sqlalchemy import func, select, update
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.core.models import AdminAudit, Delivery, Subscriber, utcnow
from newsletter.core.periods import previous_period
from newsletter.ingest.takes import get_take, set_take
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.planning.send_times import send_moments
from newsletter.web.app import create_app
from tests.support.web import api_client
from tests.web.test_admin_ui import browser_login, login

EDITOR = "editor@example.org"
WIDTHS = (390, 1200)


@pytest.fixture
def token(engine) -> str:
    """Sample topics and July 2025 events and takes, the two demo readers, an editor token."""
    with Session(engine, expire_on_commit=False) as session:
        load_sample(session=session)
        add_demo_readers(session=session)
        _, token = create_token(session=session, name="editor", role="editor")
        session.commit()
    return token


@pytest.fixture
def api(web_settings, engine, token) -> TestClient:
    return api_client(web_settings, engine, name="desk", role="editor")


def deliveries(engine) -> int:
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(Delivery)).scalar_one()


def parts(message) -> tuple[str, str]:
    return message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content()


# --- proofs through the API -----------------------------------------------------------------


def test_api_proof_is_the_readers_digest_sent_only_to_the_editor(api, engine, smtp_server):
    preview = api.get(
        "/api/v1/digests/preview",
        params={"frequency": "monthly", "period": "2025-07", "email": "reader.en@example.com"},
    ).json()
    r = api.post(
        "/api/v1/digests/proof",
        json={"period": "2025-07", "email": "reader.en@example.com", "to": [EDITOR]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["to"] == [EDITOR]
    assert r.json()["subject"] == "[Proof] " + preview["subject"]
    (received,) = smtp_server.recorder.received
    assert received.rcpt_tos == [EDITOR]
    message = received.message
    assert message["Subject"] == "[Proof] " + preview["subject"]
    assert message["To"] == "Ada <editor@example.org>"  # the reader's greeting, the editor's box
    html, text = parts(message)
    assert "Ada" in text and preview["event_count"] == r.json()["event_count"]
    # the reader's own links are nowhere in it: they would unsubscribe them
    assert "/u/proof" in html and "/u/proof" in message["List-Unsubscribe"]
    reader_link = re.search(r"/u/[A-Za-z0-9._-]{20,}", preview["html"]).group(0)
    assert reader_link not in html and reader_link not in text
    assert "mailto:" not in message["List-Unsubscribe"]
    assert deliveries(engine) == 0  # nobody's delivery, nothing counted
    # the proof's one-click unsubscribe unsubscribes nobody
    one_click = api.post("/u/proof", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code >= 400
    with Session(engine) as s:
        statuses = set(s.execute(select(Subscriber.status)).scalars())
    assert statuses == {"active"}
    with Session(engine) as s:
        audit = s.execute(
            select(AdminAudit).where(AdminAudit.action == "digest.proof")
        ).scalar_one()
    assert audit.token_name == "desk" and EDITOR in audit.detail


def test_api_proof_of_a_topic_set_and_language_to_an_idn_address(api, engine, smtp_server):
    r = api.post(
        "/api/v1/digests/proof",
        json={
            "period": "2025-07",
            "topics": ["hardware"],
            "language": "zh",
            "to": ["Editor@Bücher.example", "desk@example.org"],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["to"] == ["editor@bücher.example", "desk@example.org"]
    got = sorted(tuple(m.rcpt_tos) for m in smtp_server.recorder.received)
    assert got == [("desk@example.org",), ("editor@xn--bcher-kva.example",)]
    message = smtp_server.recorder.received[0].message
    assert message["Subject"].startswith("[Proof] ")
    assert message["Content-Language"] == "zh"
    assert deliveries(engine) == 0


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"to": ["ed\t@example.org"]}, 400, "control characters"),
        ({"to": ["ed@example.org\r\nBcc: x@example.org"]}, 400, "control characters"),
        ({"to": ["not-an-address"]}, 400, "invalid proof address"),
        ({"to": [EDITOR], "email": "nobody@example.com"}, 404, "no subscriber"),
        ({"to": [EDITOR], "period": "2024-01"}, 409, "nothing would be sent"),
        ({"to": [EDITOR], "email": None, "topics": ["no-such-topic"]}, 400, "unknown topic"),
        ({"to": []}, 422, "invalid input"),
    ],
)
def test_api_proof_refuses_bad_input_and_sends_nothing(api, smtp_server, body, status, reason):
    request = {"period": "2025-07", "email": "reader.en@example.com"} | body
    r = api.post("/api/v1/digests/proof", json=request)
    assert r.status_code == status, r.text
    assert reason in r.text
    assert smtp_server.recorder.received == []


def test_api_proof_when_the_relay_refuses_it_is_a_502(api, smtp_server):
    smtp_server.recorder.script[EDITOR] = ["554 5.7.1 no proofs today"]
    r = api.post(
        "/api/v1/digests/proof",
        json={"period": "2025-07", "email": "reader.en@example.com", "to": [EDITOR]},
    )
    assert r.status_code == 502 and "no proofs today" in r.json()["detail"]


# --- the take's state through the API and the CLI -------------------------------------------


def test_api_take_is_a_draft_until_approved_and_an_edit_makes_it_one_again(api, engine):
    r = api.put("/api/v1/takes/2025-08/en", json={"body_markdown": "First words."})
    assert r.json()["state"] == "draft" and r.json()["approved_by"] is None
    r = api.post("/api/v1/takes/2025-08/en/approve")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["approved_by"]) == ("approved", "desk")
    assert api.get("/api/v1/takes/2025-08/en").json()["state"] == "approved"
    # the same text again changes nothing; another text is a draft again
    assert (
        api.put("/api/v1/takes/2025-08/en", json={"body_markdown": "First words."}).json()["state"]
        == "approved"
    )
    r = api.put("/api/v1/takes/2025-08/en", json={"body_markdown": "Second words."})
    assert (r.json()["state"], r.json()["approved_at"]) == ("draft", None)
    assert api.post("/api/v1/takes/2025-08/zh/approve").status_code == 404
    assert api.post("/api/v1/takes/2025-13/en/approve").status_code == 422
    with Session(engine) as s:
        actions = s.execute(select(AdminAudit.action).order_by(AdminAudit.id)).scalars().all()
    assert actions == ["take.edit", "take.approve", "take.edit"]


def test_viewer_cannot_approve_or_send_a_proof(web_settings, engine, token, smtp_server):
    viewer = api_client(web_settings, engine, name="reader-only", role="viewer")
    assert viewer.post("/api/v1/takes/2025-07/en/approve").status_code == 403
    r = viewer.post(
        "/api/v1/digests/proof",
        json={"period": "2025-07", "email": "reader.en@example.com", "to": [EDITOR]},
    )
    assert r.status_code == 403
    assert smtp_server.recorder.received == []


def test_cli_take_approve_and_show_state(cli, tmp_path):
    take = tmp_path / "take.md"
    take.write_text("Chips are *policy* now.", encoding="utf-8")
    assert (
        "as a draft"
        in cli("take", "set", "2025-08", "--language", "en", "--file", str(take)).output
    )
    assert "State: draft" in cli("take", "show", "2025-08").output
    r = cli("take", "approve", "2025-08", "en")
    assert r.exit_code == 0 and "Approved the en sharp take for 2025-08" in r.output
    assert "State: approved by cli" in cli("take", "show", "2025-08").output
    r = cli("take", "approve", "2025-08", "zh")
    assert r.exit_code == 1 and "no zh sharp take for 2025-08" in r.stderr


# --- admin pages (TestClient) ---------------------------------------------------------------


@pytest.fixture
def client(web_settings, engine) -> TestClient:
    return TestClient(create_app(settings=web_settings, engine=engine))


def test_admin_proof_errors_show_next_to_the_field(client, token, smtp_server):
    csrf = login(client, token)
    form = {
        "csrf_token": csrf,
        "frequency": "monthly",
        "period": "2025-07",
        "email": "reader.en@example.com",
        "to": "ed@example.org\x01",
    }
    r = client.post("/admin/preview/proof", data=form)
    assert r.status_code == 422
    assert 'id="proof-error"' in r.text and "control characters" in r.text
    assert smtp_server.recorder.received == []
    r = client.post("/admin/preview/proof", data=form | {"to": "editor@例子.广告"})
    assert r.status_code == 200, r.text
    assert "Proof sent to editor@例子.广告" in r.text
    assert smtp_server.recorder.received[0].rcpt_tos == ["editor@xn--fsqu00a.xn--4rr70v"]


def latest_monthly_due(tz: str) -> tuple[dt.datetime, str]:
    now = utcnow()
    moments = send_moments("monthly", tz, dt.time(8), now - dt.timedelta(days=40), now)
    return moments[-1].due_at, moments[-1].period.key


def test_dashboard_and_send_page_show_a_send_waiting_for_its_take(
    web_settings, engine, token, smtp_server
):
    due, period = latest_monthly_due("Europe/London")
    hours = (utcnow() - due).total_seconds() / 3600 + 48  # its deadline two days ahead
    settings = web_settings.model_copy(update={"take_deadline_hours": hours})
    with Session(engine) as s:
        s.execute(update(Subscriber).values(created_at=due - dt.timedelta(days=60)))
        set_take(session=s, period=period, language="en", body="Not approved yet.")
        s.commit()
    client = TestClient(create_app(settings=settings, engine=engine))
    login(client, token)
    deadline = due + dt.timedelta(hours=hours)
    for path in ("/admin/", "/admin/send"):
        page = client.get(path).text
        assert f"The monthly digest for {period} (Europe/London) is waiting" in page
        assert f"it goes out at {deadline:%Y-%m-%d %H:%M} UTC without it" in page
    assert previous_period("monthly", due.date()).key == period


# --- in Chromium ----------------------------------------------------------------------------


def shoot(page, name: str, folder) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        shot = folder / f"admin-{name}-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 5_000
    page.set_viewport_size({"width": 1200, "height": 900})


def test_browser_edit_approve_and_send_a_proof(
    page, live_server, engine, token, smtp_server, screenshot_dir
):
    browser_login(page, live_server, token)
    page.get_by_role("link", name="Sharp take").click()
    page.fill("#load-period", "2025-07")
    page.get_by_role("button", name="Open").click()
    expect(page.locator("#take-badge")).to_have_text("approved")  # the sample's
    page.fill("#body", "## Chips everywhere\n\nThe month of **export licences**.")
    page.get_by_role("button", name="Save take").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the en take for 2025-07 as a draft")
    expect(page.locator("#take-badge")).to_have_text("draft")
    shoot(page, "take", screenshot_dir)  # a draft, and the button that approves it
    page.get_by_role("button", name="Approve the saved take").click()
    expect(page.get_by_role("status")).to_contain_text("Approved the en take for 2025-07")
    expect(page.locator("#take-badge")).to_have_text("approved")
    expect(page.locator("#take-state")).to_contain_text("Approved by editor")
    expect(page.get_by_role("button", name="Approve the saved take")).to_have_count(0)
    with Session(engine) as s:
        take = get_take(session=s, period="2025-07", language="en")
        assert (take.state, take.approved_by) == ("approved", "editor")

    page.get_by_role("link", name="Preview").click()
    page.fill("#period", "2025-07")
    page.fill("#email", "reader.en@example.com")
    page.get_by_role("button", name="Preview", exact=True).click()
    expect(page.locator("#preview-subject")).not_to_be_empty()
    page.fill("#proof-to", EDITOR)
    page.get_by_role("button", name="Send proof").click()
    expect(page.locator("#proof-sent")).to_contain_text(f"Proof sent to {EDITOR}")
    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.set_viewport_size({"width": 1200, "height": 900})
    (received,) = smtp_server.recorder.received
    assert received.rcpt_tos == [EDITOR]
    assert received.message["Subject"].startswith("[Proof] ")
    assert "export licences" in parts(received.message)[1]
    assert deliveries(engine) == 0


def test_a_viewer_sees_no_approve_or_proof_controls_and_a_post_is_refused(
    web_settings, engine, token, smtp_server
):
    with Session(engine) as s:
        set_take(session=s, period="2025-07", language="en", body="A draft to approve.")
        _, viewer = create_token(session=s, name="analyst", role="viewer")
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    csrf = login(client, viewer)
    take = client.get("/admin/take?period=2025-07&language=en").text
    assert 'id="take-badge">draft<' in take and "Approve the saved take" not in take
    preview = client.get("/admin/preview?period=2025-07&email=reader.en@example.com").text
    assert 'id="preview-subject"' in preview and "Send proof" not in preview
    for path, data in (
        ("/admin/take/approve", {"period": "2025-07", "language": "en"}),
        (
            "/admin/preview/proof",
            {"period": "2025-07", "email": "reader.en@example.com", "to": EDITOR},
        ),
    ):
        refused = client.post(path, data={"csrf_token": csrf, **data}, follow_redirects=False)
        assert refused.status_code == 403, path
    with Session(engine) as s:
        assert get_take(session=s, period="2025-07", language="en").state == "draft"
    assert smtp_server.recorder.received == []


def test_cli_digest_proof(cli, smtp_server, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url)
    cli("sample", "load", "--with-readers")
    r = cli("digest", "proof", "--period", "2025-07", "--topics", "hardware", "--to", EDITOR)
    assert r.exit_code == 0, r.output + r.stderr
    assert f"sent to {EDITOR}: [Proof] " in r.output
    (received,) = smtp_server.recorder.received
    assert received.rcpt_tos == [EDITOR]
    r = cli("digest", "proof", "--period", "2025-07", "--to", "bad\x07@example.org")
    assert r.exit_code == 1 and "control characters" in r.stderr


def test_a_proof_with_click_counting_on_links_to_the_events_themselves(
    web_settings, engine, token, smtp_server
):
    settings = web_settings.model_copy(update={"click_tracking": True})
    api = api_client(settings, engine, name="desk", role="editor")
    preview = api.get(
        "/api/v1/digests/preview",
        params={"frequency": "monthly", "period": "2025-07", "email": "reader.en@example.com"},
    ).json()
    assert "/r/" in preview["html"]  # what the reader gets: counted redirects
    r = api.post(
        "/api/v1/digests/proof",
        json={"period": "2025-07", "email": "reader.en@example.com", "to": [EDITOR]},
    )
    assert r.status_code == 200, r.text
    html, text = parts(smtp_server.recorder.received[0].message)
    assert "/r/" not in html and "/r/" not in text  # an editor's clicks count for nobody
    assert "https://" in html


def test_cli_schedule_show_names_a_send_waiting_for_its_take(cli, monkeypatch, tmp_path):
    due, period = latest_monthly_due("Europe/London")
    hours = (utcnow() - due).total_seconds() / 3600 + 48
    monkeypatch.setenv("NEWSLETTER_TAKE_DEADLINE_HOURS", str(hours))
    cli("sample", "load", "--with-readers")
    take = tmp_path / "take.md"
    take.write_text("Not approved yet.", encoding="utf-8")
    cli("take", "set", period, "--language", "en", "--file", str(take))
    shown = cli("schedule", "show").output
    assert (
        f"the monthly digest {period} (Europe/London) is waiting for the sharp take (en)" in shown
    )
    assert f"newsletter take approve {period} LANGUAGE" in shown
    cli("take", "approve", period, "en")
    assert "is waiting" not in cli("schedule", "show").output
