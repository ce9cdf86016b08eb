"""What came back in the last 30 days, counted on the admin dashboard and in /metrics:
bounces, complaints, readers disabled and addresses suppressed."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.web.app import create_app
from tests.feedback.test_bounces import make_arf, make_dsn, settings_for
from tests.support.web import csrf_of


def dashboard_counts(client: TestClient) -> dict[str, int]:
    html = client.get("/admin/").text
    return {
        key: int(value.replace(",", ""))
        for key, value in re.findall(r'data-feedback="(\w+)">([\d,]+)<', html)
    }


def metric_counts(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        what: float(n)
        for what, n in re.findall(r'newsletter_feedback_last_30_days\{what="(\w+)"\} (\S+)', text)
    }


def test_dashboard_and_metrics_count_what_came_back(sent, engine, db_url, cli, tmp_path):
    with Session(engine) as s:
        _, token = create_token(session=s, name="dashboard")
        s.commit()
    app = create_app(settings=settings_for(db_url, outbox_dir=tmp_path / "out"), engine=engine)
    client = TestClient(app, base_url="https://news.example.org")
    form = client.get("/admin/login")
    client.post("/admin/login", data={"token": token, "csrf_token": csrf_of(form.text)})
    nothing = {"bounces": 0, "complaints": 0, "disabled": 0, "suppressed": 0}
    assert dashboard_counts(client) == nothing
    assert metric_counts(client) == {k: float(v) for k, v in nothing.items()}

    reports = {
        "ada.eml": make_dsn(sent["ada@example.com"], "ada@example.com"),
        "bo.eml": make_dsn(sent["bo@example.com"], "bo@example.com", status="4.2.2"),
        "zed.eml": make_arf(sent["zed@example.com"], "zed@example.com"),
        "delayed.eml": make_dsn(sent["li@example.com"], "li@example.com", action="delayed"),
    }
    for name, raw in reports.items():
        (tmp_path / name).write_bytes(raw)
    assert cli("bounces", "import", *[str(tmp_path / n) for n in reports]).exit_code == 0
    came_back = {"bounces": 2, "complaints": 1, "disabled": 2, "suppressed": 2}
    assert dashboard_counts(client) == came_back
    assert metric_counts(client) == {k: float(v) for k, v in came_back.items()}
    assert "Bounces and complaints" in client.get("/admin/").text

    # a reader taken back is no longer counted as disabled, nor their address as suppressed
    assert cli("subscribers", "enable", "ada@example.com").exit_code == 0
    assert dashboard_counts(client) == {**came_back, "disabled": 1, "suppressed": 1}
