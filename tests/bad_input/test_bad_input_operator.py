"""An operator's mistakes and odd files: bad settings, deep rosters, disguised webhook URLs.

Each gets one clear line on stderr and a non-zero exit, never a traceback, and nothing
stored changes.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Subscriber
from newsletter.topics.catalogue import ensure_default_topics


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("NEWSLETTER_SMTP_CONNECTIONS", "0", "NEWSLETTER_SMTP_CONNECTIONS"),
        ("NEWSLETTER_TRUSTED_PROXIES", "not-an-address", "NEWSLETTER_TRUSTED_PROXIES"),
        ("NEWSLETTER_DIGEST_SEND_TIME", "25:99", "NEWSLETTER_DIGEST_SEND_TIME"),
    ],
)
def test_an_invalid_setting_is_named_not_a_traceback(cli, monkeypatch, variable, value, named):
    monkeypatch.setenv(variable, value)
    r = cli("topics", "list")
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert f"invalid settings: {named}" in r.stderr


def test_a_deeply_nested_roster_is_reported_not_a_traceback(cli, tmp_path):
    rosters = tmp_path / "rosters"
    rosters.mkdir()
    (rosters / "deep.yaml").write_text("subscribers: " + "[" * 5000 + "]" * 5000)
    (rosters / "ok.yaml").write_text(
        "subscribers:\n  - email: ada@example.com\n    topics: [capital]\n"
    )
    r = cli("subscribers", "sync", str(rosters))
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert "deep.yaml" in r.stderr and ("nested too deeply" in r.stderr or "YAML" in r.stderr)


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\u2028", "\x85"])
def test_webhook_urls_with_hidden_characters_are_refused(cli, session, char):
    ensure_default_topics(session=session)
    session.commit()
    url = f"https://hooks.example.com/a{char}b"
    r = cli("webhooks", "add", "team", "--platform", "slack", "--url", url, "--topics", "capital")
    assert r.exit_code != 0
    assert "url contains" in r.stderr
    assert "Traceback" not in r.output
    assert "team" not in cli("webhooks", "list").stdout


@pytest.mark.parametrize("period", ["２０２５-07", "2025-٠7", "2025-W٣1", "２０２５-07-01"])
def test_periods_take_ascii_digits_only(cli, session, period):
    """Another spelling of a period would be a second idempotency key: a second send."""
    ensure_default_topics(session=session)
    session.commit()
    frequency = "weekly" if "W" in period else "daily" if period.count("-") == 2 else "monthly"
    r = cli("digest", "send", "--frequency", frequency, "--period", period)
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    assert "Enqueued" not in r.output


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not an address", "needs an address"),
        ("Brief <用户@example.com>", "ASCII local part"),
        ("Brief <brief@example.com>\r\nBcc: x@example.com", "one line"),
    ],
)
def test_a_bad_from_address_stops_at_start_not_at_every_message(cli, monkeypatch, value, reason):
    monkeypatch.setenv("NEWSLETTER_MAIL_FROM", value)
    r = cli("worker", "--until-empty")
    assert r.exit_code == 1
    assert "NEWSLETTER_MAIL_FROM" in r.stderr and reason in r.stderr
    assert "Traceback" not in r.output


def test_webhook_allow_networks_must_be_networks(cli, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", '["garbage"]')
    r = cli("webhooks", "list")
    assert r.exit_code == 1
    assert "NEWSLETTER_WEBHOOK_ALLOW_NETWORKS" in r.stderr and "garbage" in r.stderr


def test_a_one_off_worker_on_a_read_only_database_stops_and_says_why(
    cli, db_url, engine, monkeypatch
):
    from newsletter.delivery.outbox import enqueue
    from newsletter.pipeline.sample import add_demo_readers, load_sample

    if not db_url.startswith("sqlite"):
        pytest.skip("an SQLite file opened read-only")
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
        reader = s.execute(select(Subscriber)).scalars().first()
        enqueue(
            s,
            [
                {
                    "idempotency_key": f"subscriber:{reader.id}|confirm|x",
                    "channel": "email",
                    "kind": "confirm",
                    "period": "x",
                    "subscriber_id": reader.id,
                }
            ],
        )
        s.commit()
    path = db_url.removeprefix("sqlite:///")
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///file:{path}?mode=ro&uri=true")
    r = cli("worker", "--until-empty")
    assert r.exit_code == 1
    assert "read-only" in r.stderr
    assert "Traceback" not in r.output


def test_a_huge_archive_id_is_not_found(client_app):
    assert client_app.get("/archive/99999999999999999999").status_code == 404
    assert client_app.get("/archive/9223372036854775808").status_code == 404


@pytest.fixture
def client_app(web_settings, engine):
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app

    return TestClient(create_app(settings=web_settings, engine=engine))
