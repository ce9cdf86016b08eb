"""Taking back a reader that bounces disabled: `subscribers enable` and the API reset the
score, lift the bounce suppression and record who did it; `subscribers show` and the API
show the reader's bounce history."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.web.app import create_app
from tests.feedback.test_bounces import make_arf, make_dsn, reader, settings_for, suppressed


def test_cli_shows_the_history_and_enables_a_reader_disabled_by_a_bounce(
    sent, engine, cli, tmp_path
):
    (tmp_path / "ada.eml").write_bytes(make_dsn(sent["ada@example.com"], "ada@example.com"))
    assert cli("bounces", "import", str(tmp_path / "ada.eml")).exit_code == 0
    assert reader(engine, "ada@example.com").status == "disabled"

    shown = cli("subscribers", "show", "ada@example.com", "--format", "json")
    assert shown.exit_code == 0
    info = json.loads(shown.output)
    assert (info["status"], info["bounce_score"]) == ("disabled", 1.0)
    assert info["disabled_reason"].startswith("hard bounce: 550 5.1.1")
    assert [(b["kind"], b["source"]) for b in info["bounces"]] == [("hard", "import")]

    done = cli("subscribers", "enable", "ada@example.com")
    assert done.exit_code == 0, done.output
    assert "re-enabled by" in done.output and "bounce score 1 reset" in done.output
    assert "suppression (bounced) lifted" in done.output
    ada = reader(engine, "ada@example.com")
    assert (ada.status, ada.bounce_score, ada.disabled_reason) == ("active", 0.0, None)
    assert suppressed(engine, "ada@example.com") is None

    table = cli("subscribers", "show", "ada@example.com")
    assert "status: active" in table.output and "bounce history" in table.output
    history = json.loads(cli("subscribers", "show", "ada@example.com", "--format", "json").output)
    assert [b["kind"] for b in history["bounces"]] == ["enabled", "hard"]
    assert "(command line)" in history["bounces"][0]["action"]
    assert history["bounces"][0]["diagnostic"].startswith("was disabled: hard bounce")

    again = cli("subscribers", "enable", "ada@example.com")
    assert again.exit_code == 1 and "is active, not disabled" in again.output
    missing = cli("subscribers", "enable", "nobody@example.com")
    assert missing.exit_code == 1 and "no subscriber nobody@example.com" in missing.output
    assert cli("subscribers", "show", "nobody@example.com").exit_code == 1


def test_api_enables_a_complainer_only_when_forced(sent, engine, db_url, cli, tmp_path):
    (tmp_path / "zed.eml").write_bytes(make_arf(sent["zed@example.com"], "zed@example.com"))
    assert cli("bounces", "import", str(tmp_path / "zed.eml")).exit_code == 0
    with Session(engine) as s:
        _, token = create_token(session=s, name="support-desk")
        s.commit()
    app = create_app(settings=settings_for(db_url, outbox_dir=tmp_path / "out"), engine=engine)
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})

    refused = client.post("/api/v1/subscribers/zed@example.com/enable")
    assert refused.status_code == 409 and "spam" in refused.json()["detail"]
    assert suppressed(engine, "zed@example.com") == "complaint"
    forced = client.post("/api/v1/subscribers/zed@example.com/enable", json={"force": True})
    assert forced.status_code == 200, forced.text
    assert forced.json()["status"] == "active" and forced.json()["bounce_score"] == 0.0
    assert suppressed(engine, "zed@example.com") is None
    history = client.get("/api/v1/subscribers/zed@example.com/bounces").json()["data"]
    assert [b["kind"] for b in history] == ["enabled", "complaint"]
    assert "admin token 'support-desk'" in history[0]["action"]
    assert history[0]["source"] == "api"

    active = client.post("/api/v1/subscribers/li@example.com/enable")
    assert active.status_code == 409 and "not disabled" in active.json()["detail"]
    assert client.post("/api/v1/subscribers/nobody@example.com/enable").status_code == 404
    anonymous = TestClient(app).post("/api/v1/subscribers/li@example.com/enable")
    assert anonymous.status_code == 401
