"""An operator's mistakes and odd files: bad settings, deep rosters, disguised webhook URLs.

Each gets one clear line on stderr and a non-zero exit, never a traceback, and nothing
stored changes.
"""

from __future__ import annotations

import pytest

from newsletter.topics import ensure_default_topics


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
