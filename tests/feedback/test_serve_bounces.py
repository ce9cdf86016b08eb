"""`newsletter serve` as a real process receives bounces both ways it can be configured
to: on its inbound SMTP port, and from the bounce mailbox it polls (a real Dovecot)."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from tests.feedback.test_bounces import FROM, make_dsn, reader, suppressed
from tests.support.imap_server import DOVECOT, PASSWORD, USER, start_dovecot
from tests.support.smtp_server import free_port


def wait_for(check, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def accepted(smtp: smtplib.SMTP, to: str, raw: bytes) -> bool:
    try:
        smtp.sendmail("", [to], raw)
        return True
    except smtplib.SMTPDataError as exc:
        if exc.smtp_code != 451:
            raise
        return False


def serve(db_url, tmp_path, extra: dict[str, str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_MAIL_FROM": f"AI Brief <{FROM}>",
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--no-worker", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_serve_takes_bounces_on_its_smtp_port(sent, engine, db_url, tmp_path):
    port = free_port()
    proc = serve(db_url, tmp_path, {"NEWSLETTER_BOUNCE_SMTP_PORT": str(port)})
    try:
        assert wait_for(lambda: listening(port) or proc.poll() is not None)
        assert proc.poll() is None
        li = sent["li@example.com"]
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            # a 451 (the database busy while the service starts) is retried, as a relay does
            assert wait_for(lambda: accepted(smtp, li.mail_from, make_dsn(li, "li@example.com")))
            with pytest.raises(smtplib.SMTPRecipientsRefused):  # no relaying through it
                smtp.sendmail("", ["victim@elsewhere.example"], b"Subject: hi\r\n\r\nx\r\n")
    finally:
        out = stop(proc)
    assert f"receiving bounces by SMTP on 127.0.0.1:{port}" in out
    assert suppressed(engine, "li@example.com") == "bounced"
    assert reader(engine, "li@example.com").status == "disabled"
    assert reader(engine, "ada@example.com").status == "active"
    assert not listening(port)


def test_serve_that_cannot_listen_for_bounces_says_so_and_exits_1(sent, db_url, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = serve(db_url, tmp_path, {"NEWSLETTER_BOUNCE_SMTP_PORT": str(taken.getsockname()[1])})
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "cannot receive bounces on 127.0.0.1" in out


@pytest.mark.skipif(DOVECOT is None, reason="needs Dovecot (Debian package dovecot-imapd)")
def test_serve_polls_the_bounce_mailbox_on_its_schedule(sent, engine, db_url, tmp_path):
    dovecot = start_dovecot(tmp_path / "imap")
    try:
        dovecot.append(make_dsn(sent["ada@example.com"], "ada@example.com"))
        proc = serve(
            db_url,
            tmp_path,
            {
                "NEWSLETTER_BOUNCE_IMAP_HOST": "127.0.0.1",
                "NEWSLETTER_BOUNCE_IMAP_PORT": str(dovecot.port),
                "NEWSLETTER_BOUNCE_IMAP_TLS": "plain",  # allowed to this machine only
                "NEWSLETTER_BOUNCE_IMAP_USER": USER,
                "NEWSLETTER_BOUNCE_IMAP_PASSWORD": PASSWORD,
                "NEWSLETTER_BOUNCE_IMAP_PROCESSED_FOLDER": "Processed",
                "NEWSLETTER_BOUNCE_IMAP_POLL_SECONDS": "5",
            },
        )
        try:
            # the first poll runs at start; the next one picks up what arrives later
            assert wait_for(lambda: reader(engine, "ada@example.com").status == "disabled")
            dovecot.append(make_dsn(sent["zed@example.com"], "zed@example.com"))
            assert wait_for(lambda: reader(engine, "zed@example.com").status == "disabled")
        finally:
            out = stop(proc)
        assert PASSWORD not in out
        assert dovecot.messages("INBOX") == []
        assert len(dovecot.messages("Processed")) == 2
        assert reader(engine, "bo@example.com").status == "active"
    finally:
        dovecot.remove()


def test_the_mailbox_job_is_stored_only_while_a_mailbox_is_configured(engine, db_url, tmp_path):
    from newsletter.service import scheduler as sched
    from tests.feedback.test_bounces import settings_for

    def run_once(settings) -> set[str]:
        the_scheduler = sched.build_scheduler(engine, settings)
        sched.start(the_scheduler)
        the_scheduler.shutdown(wait=True)
        return {job.id for job in sched.describe(engine)}

    configured = settings_for(
        db_url,
        outbox_dir=tmp_path / "out",
        bounce_imap_host="127.0.0.1",
        bounce_imap_port=free_port(),  # nothing there: the first poll logs and goes on
        bounce_imap_tls="plain",
        bounce_imap_user=USER,
        bounce_imap_password=PASSWORD,
    )
    assert "bounce-mailbox" in run_once(configured)
    assert run_once(settings_for(db_url, outbox_dir=tmp_path / "out")) == {
        "digests",
        "alerts",
        "feeds",
    }
