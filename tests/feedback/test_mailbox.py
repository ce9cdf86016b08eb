"""The bounce mailbox, polled over IMAP from a real Dovecot on 127.0.0.1: real DSNs, ARF
reports and unsubscribe mails for digests the worker really sent are appended to it,
`bounces poll` reads them, and the tests check who is suppressed, disabled or untouched,
what was moved or flagged on the server, and that nothing is counted twice."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Bounce
from newsletter.core.settings import Settings
from newsletter.feedback.mailbox import PROCESSED_KEYWORD, poll
from newsletter.feedback.sources import process_chunk
from tests.feedback.test_bounces import (
    make_arf,
    make_dsn,
    reader,
    settings_for,
    suppressed,
    unsubscribe_mail,
)
from tests.support.imap_server import DOVECOT, PASSWORD, USER, start_dovecot
from tests.support.smtp_server import free_port

pytestmark = pytest.mark.skipif(
    DOVECOT is None, reason="needs Dovecot (Debian package dovecot-imapd) for a real IMAP server"
)

NO_HEADERS = b"\r\njust some text, no mail headers at all\r\n"
NOT_A_BOUNCE = b"From: someone@example.net\r\nSubject: hello\r\n\r\nAre you there?\r\n"


@pytest.fixture
def dovecot(tmp_path):
    server = start_dovecot(tmp_path / "imap")
    try:
        yield server
    finally:
        server.remove()


def imap_env(monkeypatch, server, **extra) -> None:
    values = {
        "HOST": "127.0.0.1",
        "PORT": str(server.port),
        "TLS": "starttls",
        "CA_FILE": str(server.ca_file),
        "USER": USER,
        "PASSWORD": PASSWORD,
        **extra,
    }
    for key, value in values.items():
        monkeypatch.setenv(f"NEWSLETTER_BOUNCE_IMAP_{key}", value)
    monkeypatch.setenv("NEWSLETTER_BOUNCE_MAX_BYTES", "200000")


def imap_settings(db_url, server, **kw) -> Settings:
    base = {
        "bounce_imap_host": "127.0.0.1",
        "bounce_imap_port": server.tls_port,
        "bounce_imap_tls": "tls",
        "bounce_imap_ca_file": server.ca_file,
        "bounce_imap_user": USER,
        "bounce_imap_password": PASSWORD,
    }
    return settings_for(db_url, **{**base, **kw})


def test_poll_moves_what_it_read_and_counts_nothing_twice(sent, engine, dovecot, cli, monkeypatch):
    imap_env(monkeypatch, dovecot, PROCESSED_FOLDER="Processed", ERROR_FOLDER="Unreadable")
    ada, bo, zed = (sent[a] for a in ("ada@example.com", "bo@example.com", "zed@example.com"))
    dovecot.append(make_dsn(ada, "ada@example.com"))
    dovecot.append(make_dsn(bo, "bo@example.com", status="4.2.2"))
    dovecot.append(NO_HEADERS)  # unreadable, between real reports: must not stop them
    dovecot.append(make_arf(zed, "zed@example.com"))
    dovecot.append(unsubscribe_mail(sent["mei@example.com"])[1])
    dovecot.append(NOT_A_BOUNCE)
    dovecot.append(b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 4000)  # over the limit

    result = cli("bounces", "poll")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert f"Polled {USER}@127.0.0.1:{dovecot.port}/INBOX" in out
    for count in ("1 complaint", "1 hard", "1 soft", "1 too-large", "1 unknown", "1 unreadable"):
        assert count in out
    assert "1 unsubscribe" in out and "7 marked as processed" in out

    assert suppressed(engine, "ada@example.com") == "bounced"
    assert reader(engine, "ada@example.com").status == "disabled"
    assert reader(engine, "bo@example.com").bounce_score == 0.5
    assert reader(engine, "bo@example.com").status == "active"
    assert suppressed(engine, "zed@example.com") == "complaint"
    assert reader(engine, "mei@example.com").status == "unsubscribed"
    for untouched in ("li@example.com", "ola@example.com", "kim@example.com"):
        assert reader(engine, untouched).status == "active"
        assert suppressed(engine, untouched) is None
    # read ones left the folder; the two that could not be read wait for a human
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Processed")) == 5
    set_aside = [raw for _uid, _flags, raw in dovecot.messages("Unreadable")]
    assert len(set_aside) == 2 and NO_HEADERS in set_aside

    # the next poll reads only what is new
    li = sent["li@example.com"]
    dovecot.append(make_dsn(li, "li@example.com", status="4.2.2"))
    again = cli("bounces", "poll")
    assert again.exit_code == 0
    assert "1 soft" in again.output and "1 marked" in again.output
    assert reader(engine, "bo@example.com").bounce_score == 0.5
    assert reader(engine, "li@example.com").bounce_score == 0.5
    assert "no new messages" in cli("bounces", "poll").output
    with Session(engine) as s:
        sources = {b.source for b in s.execute(select(Bounce)).scalars()}
    assert sources == {"imap"}


def test_flags_in_place_and_a_poller_that_died_before_marking(sent, engine, db_url, dovecot):
    """Without a processed folder messages stay, flagged; a message whose result was
    committed but that was never marked (the poller died) is not counted again."""
    settings = imap_settings(db_url, dovecot, bounce_imap_max_messages=1)
    ada, li = sent["ada@example.com"], sent["li@example.com"]
    first, second = make_dsn(ada, "ada@example.com", status="4.2.2"), make_dsn(li, "li@example.com")
    dovecot.append(first)
    dovecot.append(second)
    # an earlier poll processed and committed `second`, then died before flagging it
    assert [r.kind for r in process_chunk(engine, settings, [second], source="imap")] == ["hard"]

    one = poll(engine, settings)
    assert (one.error, one.counts, one.marked, one.left) == (None, {"soft": 1}, 1, 1)
    two = poll(engine, settings)
    assert (two.error, two.counts, two.left) == (None, {"duplicate": 1}, 0)
    assert poll(engine, settings).counts == {}

    assert reader(engine, "ada@example.com").bounce_score == 0.5
    assert reader(engine, "li@example.com").bounce_score == 1.0  # once, not twice
    assert suppressed(engine, "li@example.com") == "bounced"
    left = dovecot.messages("INBOX")
    assert len(left) == 2
    assert all({"\\Seen", PROCESSED_KEYWORD} <= flags for _uid, flags, _raw in left)


def test_an_unreachable_or_refusing_server_is_logged_and_tried_again(
    sent, engine, db_url, dovecot, cli, monkeypatch, caplog
):
    ada = sent["ada@example.com"]
    dovecot.append(make_dsn(ada, "ada@example.com"))
    caplog.set_level(logging.INFO, logger="newsletter.feedback.mailbox")

    wrong = imap_settings(db_url, dovecot, bounce_imap_password="not-the-password")
    assert "IMAP error" in (poll(engine, wrong).error or "")
    closed = imap_settings(db_url, dovecot, bounce_imap_port=free_port())
    down = poll(engine, closed)
    assert down.error == "connection refused" and down.counts == {}
    untrusted = imap_settings(db_url, dovecot, bounce_imap_ca_file=None)
    assert "TLS certificate not trusted" in (poll(engine, untrusted).error or "")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("connection refused; trying again at the next poll" in line for line in lines)
    assert all(PASSWORD not in line for line in lines)
    assert reader(engine, "ada@example.com").status == "active"

    imap_env(monkeypatch, dovecot, PORT=str(free_port()))
    result = cli("bounces", "poll")
    assert result.exit_code == 1 and "connection refused" in result.output

    # the server comes back: the next poll catches up
    ok = poll(engine, imap_settings(db_url, dovecot))
    assert ok.error is None and ok.counts == {"hard": 1}
    assert reader(engine, "ada@example.com").status == "disabled"


def test_bad_mailbox_settings_are_refused_at_start(db_url, cli, monkeypatch):
    with pytest.raises(ValidationError, match="only allowed for a server on this machine"):
        Settings(
            bounce_imap_host="imap.example.com",
            bounce_imap_tls="plain",
            bounce_imap_user="u",
            bounce_imap_password="p",
        )
    with pytest.raises(ValidationError, match="needs NEWSLETTER_BOUNCE_IMAP_USER"):
        Settings(bounce_imap_host="imap.example.com")
    result = cli("bounces", "poll")
    assert result.exit_code == 1 and "no bounce mailbox is configured" in result.output


def test_servers_without_move_get_copy_delete_expunge(sent, engine, db_url, dovecot, monkeypatch):
    from newsletter.feedback import mailbox

    real = mailbox.Mailbox._capabilities
    monkeypatch.setattr(
        mailbox.Mailbox, "_capabilities", lambda self: real(self) - {"MOVE", "UIDPLUS"}
    )
    dovecot.append(make_dsn(sent["kim@example.com"], "kim@example.com"))
    dovecot.append(NOT_A_BOUNCE)
    settings = imap_settings(db_url, dovecot, bounce_imap_processed_folder="Done")
    report = poll(engine, settings)
    assert (report.error, report.counts) == (None, {"hard": 1, "unknown": 1})
    assert dovecot.messages("INBOX") == []
    assert len(dovecot.messages("Done")) == 2
    assert suppressed(engine, "kim@example.com") == "bounced"


def test_folder_names_must_be_the_servers_ascii_names():
    with pytest.raises(ValidationError, match="modified UTF-7"):
        Settings(
            bounce_imap_host="imap.example.com",
            bounce_imap_user="u",
            bounce_imap_password="p",
            bounce_imap_processed_folder="已处理",
        )
