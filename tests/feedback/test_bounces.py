"""Bounces, complaints and unsubscribe mails, end to end: real digests go through the
worker to a real SMTP server, real DSNs and ARF reports (and samples in the shapes large
receivers send) come back through `bounces import` and `bounces serve`, and the tests
check who is suppressed, disabled or untouched."""

from __future__ import annotations

import datetime as dt
import json
import os
import smtplib
import socket
import subprocess
import sys
import time
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from urllib.parse import unquote

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, suppression_reason
from newsletter.core.models import Bounce, Delivery, Subscriber
from newsletter.core.settings import Settings
from newsletter.feedback.process import process_message
from newsletter.pipeline.sample import load_sample
from tests.support.env import DATA as TEST_DATA
from tests.support.env import TEST_SECRET_KEY
from tests.support.planning import plan_in
from tests.support.smtp_server import free_port
from tests.support.workers import drain

CRLF = compat32.clone(linesep="\r\n")
DATA = TEST_DATA / "bounces"
FROM = "brief@news.example.org"
PEOPLE = {
    "ada@example.com": "governance",
    "li@example.com": "hardware",
    "bo@example.com": "open-source",
    "mei@example.com": "capital",
    "ola@example.com": "governance",
    "zed@example.com": "capital",
    "kim@example.com": "governance",
}


def settings_for(db_url, smtp_url=None, **kw) -> Settings:
    return Settings(
        database_url=db_url,
        smtp_url=smtp_url,
        base_url="https://news.example.org",
        mail_from=f"AI Brief <{FROM}>",
        secret_key=TEST_SECRET_KEY,
        retry_base_seconds=0.02,
        **{"bounce_domain": FROM.rsplit("@", 1)[1], **kw},
    )


@pytest.fixture
def sent(engine, db_url, smtp_server, monkeypatch):
    """Every reader got July's digest through the worker; {address: what the server got}."""
    monkeypatch.setenv("NEWSLETTER_MAIL_FROM", f"AI Brief <{FROM}>")
    settings = settings_for(db_url, smtp_server.url)
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for address, topics in PEOPLE.items():
            add_subscriber(session=s, sub_in=SubscriberIn(email=address, topics=topics))
        plan_in(s, settings)
        s.commit()
    drain(engine, settings)
    got = {r.rcpt_tos[0]: r for r in smtp_server.recorder.received}
    assert set(got) == set(PEOPLE)
    return got


def fill(name: str, received, recipient: str) -> bytes:
    text = (DATA / name).read_text()
    for key, value in {
        "RETURN_PATH": received.mail_from,
        "RECIPIENT": recipient,
        "MESSAGE_ID": received.message["Message-ID"],
        "FROM": FROM,
    }.items():
        text = text.replace("{{" + key + "}}", value)
    return text.replace("\n", "\r\n").encode()


def reader(engine, address: str) -> Subscriber:
    with Session(engine) as s:
        return s.execute(select(Subscriber).where(Subscriber.email == address)).scalar_one()


def suppressed(engine, address: str) -> str | None:
    with Session(engine) as s:
        return suppression_reason(session=s, email=address)


def delivery_of(engine, address: str) -> Delivery:
    with Session(engine) as s:
        sub = s.execute(select(Subscriber).where(Subscriber.email == address)).scalar_one()
        return s.execute(select(Delivery).where(Delivery.subscriber_id == sub.id)).scalar_one()


def make_dsn(received, recipient: str, *, status="5.1.1", action="failed", to=None) -> bytes:
    """A real RFC 3464 DSN for a message the server received, as a receiving MTA makes it."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example.net>"
    report["To"] = to or received.mail_from
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report.attach(MIMEText(f"Your message to {recipient} could not be delivered.\n"))
    per_message, per_recipient = Message(), Message()
    per_message["Reporting-MTA"] = "dns; mx.example.net"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; {status[0]}50 {status} mailbox problem"
    status_part = MIMEBase("message", "delivery-status")
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    original = Message()
    for name in ("From", "To", "Subject", "Message-ID"):
        original[name] = str(received.message[name])
    original.set_payload("(body not returned)\n")
    report.attach(MIMEMessage(original))
    return report.as_bytes(policy=CRLF)


def make_arf(received, recipient: str) -> bytes:
    """A real RFC 5965 complaint, as a mailbox provider's feedback loop sends it."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "Feedback Loop <fbl@isp.example.net>"
    report["To"] = "fbl-reports@news.example.org"  # not our VERP: the report names it
    report["Subject"] = "Abuse report"
    report.attach(MIMEText("This is an abuse report.\n"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(
        "Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n"
        f"Original-Mail-From: <{received.mail_from}>\nOriginal-Rcpt-To: <{recipient}>\n"
    )
    report.attach(feedback)
    headers = MIMEText(
        f"From: {received.message['From']}\nMessage-ID: {received.message['Message-ID']}\n",
        "rfc822-headers",
    )
    report.attach(headers)
    return report.as_bytes(policy=CRLF)


def token_of(received) -> str:
    return str(received.message["List-Unsubscribe"]).split("%20")[1].split(">")[0]


def unsubscribe_mail(received) -> tuple[str, bytes]:
    """(to, raw) of the mail a client sends for the List-Unsubscribe mailto: link."""
    mailto = next(
        u.strip(" <>\r\n")
        for u in str(received.message["List-Unsubscribe"]).split(",")
        if "mailto:" in u
    )
    address, _q, query = mailto.removeprefix("mailto:").partition("?")
    subject = unquote(query.removeprefix("subject="))
    msg = MIMEText("Please unsubscribe me.\n")
    msg["From"] = received.rcpt_tos[0]
    msg["To"] = address
    msg["Subject"] = subject
    return address, msg.as_bytes(policy=CRLF)


def test_samples_from_large_receivers_through_bounces_import(sent, engine, cli, tmp_path):
    files = {
        "gmail_dsn.eml": "ada@example.com",
        "outlook_ndr.eml": "li@example.com",
        "postfix_bounce.eml": "ola@example.com",
        "yahoo_deferred.eml": "bo@example.com",
        "exim_bounce.eml": "mei@example.com",  # no VERP: found by the address we mailed
        "yahoo_arf.eml": "kim@example.com",
    }
    paths = []
    for name, address in files.items():
        path = tmp_path / name
        path.write_bytes(fill(name, sent[address], address))
        paths.append(str(path))
    result = cli("bounces", "import", *paths)
    assert result.exit_code == 0, result.output
    assert "hard for ada@example.com" in result.output
    assert "complaint for kim@example.com" in result.output
    assert "Processed: 1 complaint, 4 hard, 1 soft." in result.output
    for address in ("ada@example.com", "li@example.com", "ola@example.com", "mei@example.com"):
        sub = reader(engine, address)
        assert suppressed(engine, address) == "bounced", address
        assert sub.status == "disabled" and sub.disabled_reason.startswith("hard bounce: 5")
        assert sub.bounce_score == 1.0
    assert "5.1.10" in reader(engine, "li@example.com").disabled_reason
    # found through the return path: the delivery is marked failed with the reason
    gone = delivery_of(engine, "ada@example.com")
    assert gone.status == "failed" and "hard bounce received: 550" in gone.last_error
    # a soft bounce only counts
    bo = reader(engine, "bo@example.com")
    assert bo.status == "active" and bo.bounce_score == 0.5 and suppressed(engine, bo.email) is None
    assert delivery_of(engine, bo.email).status == "sent"
    kim = reader(engine, "kim@example.com")
    assert suppressed(engine, kim.email) == "complaint" and kim.status == "disabled"
    # the one nobody bounced is untouched
    zed = reader(engine, "zed@example.com")
    assert (
        zed.status == "active" and zed.bounce_score == 0 and suppressed(engine, zed.email) is None
    )
    # importing the same files again counts nothing twice
    again = cli("bounces", "import", *paths)
    assert again.exit_code == 0 and "Processed: 6 duplicate." in again.output
    assert reader(engine, "bo@example.com").bounce_score == 0.5
    listed = json.loads(cli("bounces", "list", "--since", "1d", "--format", "json").output)
    assert len(listed) == 6
    by_reader = {row["email"]: row for row in listed}
    assert by_reader["bo@example.com"]["kind"] == "soft"
    assert by_reader["bo@example.com"]["diagnostic"].startswith("421 4.7.0 [TSS04]")
    assert by_reader["kim@example.com"]["action"] == "suppressed and disabled (complaint)"
    table = cli("bounces", "list")
    assert table.exit_code == 0 and "ada@example.com" in table.output


def test_real_dsn_arf_and_unsubscribe_mail_through_bounces_serve(sent, engine, db_url, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_MAIL_FROM": f"AI Brief <{FROM}>",
        "NEWSLETTER_BOUNCE_MAX_BYTES": "200000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "bounces", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        ada, bo, zed = (sent[a] for a in ("ada@example.com", "bo@example.com", "zed@example.com"))
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.sendmail("", [ada.mail_from], make_dsn(ada, "ada@example.com"))
            smtp.sendmail("", [bo.mail_from], make_dsn(bo, "bo@example.com", status="4.2.2"))
            arf = make_arf(zed, "zed@example.com")
            smtp.sendmail("fbl@isp.example.net", ["bounces@news.example.org"], arf)
            to, raw = unsubscribe_mail(sent["mei@example.com"])
            smtp.sendmail("mei@example.com", [to], raw)
            # relaying and other mailboxes are refused; so is a message over the limit
            with pytest.raises(smtplib.SMTPRecipientsRefused) as relay:
                smtp.sendmail("", ["victim@elsewhere.example"], b"Subject: hi\r\n\r\nx\r\n")
            assert relay.value.recipients["victim@elsewhere.example"][0] == 550
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                smtp.sendmail("", ["brief@news.example.org"], b"Subject: hi\r\n\r\nx\r\n")
            big = b"Subject: big\r\n\r\n" + b"x" * 76 + b"\r\n"
            with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) as large:
                smtp.sendmail("", [ada.mail_from], big * 4000)
            assert getattr(large.value, "smtp_code", 0) == 552
        with smtplib.SMTP("127.0.0.1", port) as smtp:  # still up after all of that
            assert smtp.noop()[0] == 250
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert "Stopped." in err
    assert suppressed(engine, "ada@example.com") == "bounced"
    assert reader(engine, "ada@example.com").status == "disabled"
    bo_now = reader(engine, "bo@example.com")
    assert bo_now.status == "active" and bo_now.bounce_score == 0.5
    assert suppressed(engine, "zed@example.com") == "complaint"
    mei = reader(engine, "mei@example.com")
    assert mei.status == "unsubscribed" and suppressed(engine, mei.email) == "unsubscribed"
    for untouched in ("li@example.com", "ola@example.com", "kim@example.com"):
        assert reader(engine, untouched).status == "active"
        assert suppressed(engine, untouched) is None
    with Session(engine) as s:
        sources = {b.source for b in s.execute(select(Bounce)).scalars()}
    assert sources == {"smtp"}


def test_soft_bounces_count_once_a_day_disable_over_the_threshold_and_decay(sent, engine):
    settings = settings_for("sqlite://", bounce_threshold=1.5, bounce_decay_days=30)
    got = sent["bo@example.com"]
    day = dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC)

    def soft(when, n):
        with Session(engine, expire_on_commit=False) as s:
            raw = make_dsn(got, "bo@example.com", status="4.2.2") + f"\r\n{n}\r\n".encode()
            result = process_message(
                s, settings.model_copy(update={"bounce_token_days": 9999}), raw, now=when
            )
            s.commit()
        return result

    # a flood on one day: one increment
    for n in range(20):
        soft(day + dt.timedelta(minutes=n), n)
    assert reader(engine, "bo@example.com").bounce_score == 0.5
    soft(day + dt.timedelta(days=1), 100)
    soft(day + dt.timedelta(days=2), 101)
    bo = reader(engine, "bo@example.com")
    assert bo.bounce_score == 1.5 and bo.status == "disabled"
    assert bo.disabled_reason.startswith("bounce score 1.5 reached 1.5")
    assert suppressed(engine, bo.email) is None  # disabled, not suppressed: soft bounces only
    # a quiet period restarts the score
    soft(day + dt.timedelta(days=60), 102)
    assert reader(engine, "bo@example.com").bounce_score == 0.5


def test_bad_input_changes_nothing_and_never_stops_the_others(sent, engine, cli, tmp_path):
    ada = sent["ada@example.com"]
    forged_path = ada.mail_from.replace("bounces+", "bounces+1").replace("@", "x@")
    forged = make_dsn(ada, "ada@example.com", to=forged_path)
    stranger = make_dsn(ada, "never-mailed@example.com", to="bounces@news.example.org")
    (tmp_path / "forged.eml").write_bytes(forged)
    (tmp_path / "stranger.eml").write_bytes(stranger)
    (tmp_path / "broken.eml").write_bytes(
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"\r\n'
        b"Subject: broken\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Action: failed\r\n\xff\xfe garbage \x00\r\n--x"
    )
    (tmp_path / "empty.eml").write_bytes(b"")
    # an mbox with a real bounce between two junk messages
    mbox = (
        b"From MAILER-DAEMON Mon Mar  3 16:00:00 2025\n"
        + b"Subject: hello\n\n>From the sender\n\n"
        + b"From MAILER-DAEMON Mon Mar  3 16:00:01 2025\n"
        + make_dsn(sent["li@example.com"], "li@example.com").replace(b"\r\n", b"\n")
        + b"\nFrom MAILER-DAEMON Mon Mar  3 16:00:02 2025\n"
        + b"\xff\xfe\x00\n"
    )
    (tmp_path / "box.mbox").write_bytes(mbox)
    names = ["forged.eml", "stranger.eml", "broken.eml", "empty.eml", "missing.eml", "box.mbox"]
    result = cli("bounces", "import", *[str(tmp_path / n) for n in names])
    assert result.exit_code == 1  # the empty and the missing file could not be read
    out = result.output
    assert "forged.eml: refused" in out and "forged, garbled or expired" in out
    assert "stranger.eml: hard: no delivery of ours matches (never-mailed@example.com)" in out
    assert "empty.eml: unreadable: the message is empty" in out
    assert "missing.eml: unreadable: cannot read" in out
    assert "box.mbox#2: hard for li@example.com" in out
    assert suppressed(engine, "ada@example.com") is None
    assert reader(engine, "ada@example.com").status == "active"
    assert suppressed(engine, "li@example.com") == "bounced"
    with Session(engine) as s:
        assert s.execute(select(Subscriber).where(Subscriber.email.like("never%"))).first() is None


def test_unsubscribe_mail_from_standard_input_and_a_forged_token(sent, engine, cli):
    _to, raw = unsubscribe_mail(sent["ola@example.com"])
    result = cli("bounces", "import", "-", input=raw.decode())
    assert result.exit_code == 0 and "unsubscribe for ola@example.com" in result.output
    assert reader(engine, "ola@example.com").status == "unsubscribed"
    token = token_of(sent["ola@example.com"])
    _other, raw_zed = unsubscribe_mail(sent["zed@example.com"])
    forged = raw_zed.replace(
        token_of(sent["zed@example.com"]).encode(), token[:-3].encode() + b"abc"
    )
    assert forged != raw_zed
    result = cli("bounces", "import", "-", input=forged.decode())
    assert "refused: unsubscribe token forged or garbled" in result.output
    assert all(reader(engine, a).status == "active" for a in ("ada@example.com", "zed@example.com"))


def test_verp_can_be_turned_off(engine, db_url, smtp_server, monkeypatch):
    from tests.support.settings import mail_settings as plain_settings

    settings = plain_settings(db_url, smtp_server.url, verp=False)
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        add_subscriber(session=s, sub_in=SubscriberIn(email="x@example.com", topics="capital"))
        plan_in(s, settings)
        s.commit()
    drain(engine, settings)
    assert [r.mail_from for r in smtp_server.recorder.received] == ["brief@news.example.org"]


def test_the_api_and_metrics_show_bounces_per_reader(sent, engine, db_url, cli, tmp_path):
    from fastapi.testclient import TestClient

    from newsletter.core.admin_tokens import create_token
    from newsletter.web.app import create_app

    for name, address in (
        ("gmail_dsn.eml", "ada@example.com"),
        ("yahoo_deferred.eml", "bo@example.com"),
    ):
        (tmp_path / name).write_bytes(fill(name, sent[address], address))
    assert (
        cli(
            "bounces",
            "import",
            str(tmp_path / "gmail_dsn.eml"),
            str(tmp_path / "yahoo_deferred.eml"),
        ).exit_code
        == 0
    )
    with Session(engine) as s:
        _, token = create_token(session=s, name="bounce-tests")
        s.commit()
    app = create_app(settings=settings_for(db_url, outbox_dir=tmp_path / "out"), engine=engine)
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    listed = client.get("/api/v1/bounces", params={"since": "1d"})
    assert listed.status_code == 200
    assert {(b["email"], b["kind"]) for b in listed.json()["data"]} == {
        ("ada@example.com", "hard"),
        ("bo@example.com", "soft"),
    }
    hard_only = client.get("/api/v1/bounces", params={"kind": "hard"}).json()["data"]
    assert [b["email"] for b in hard_only] == ["ada@example.com"]
    bad = client.get("/api/v1/bounces", params={"since": "last tuesday"})
    assert bad.status_code == 400 and "since" in bad.json()["detail"]
    ada = client.get("/api/v1/subscribers/ada@example.com").json()
    assert ada["status"] == "disabled" and ada["bounce_score"] == 1.0
    assert ada["disabled_reason"].startswith("hard bounce: 550")
    bo = client.get("/api/v1/subscribers/bo@example.com/bounces").json()["data"]
    assert [b["kind"] for b in bo] == ["soft"] and bo[0]["diagnostic"].startswith("421 4.7.0")
    disabled = client.get("/api/v1/subscribers", params={"status": "disabled"}).json()["data"]
    assert [s["email"] for s in disabled] == ["ada@example.com"]
    metrics = client.get("/metrics").text
    assert 'newsletter_bounces_total{kind="hard"}' in metrics


def test_mangled_and_oversized_messages_never_crash_nor_touch_another_reader(sent, engine):
    import random

    settings = settings_for("sqlite://", bounce_max_bytes=20_000)
    good = fill("gmail_dsn.eml", sent["ada@example.com"], "ada@example.com")
    rng = random.Random(5)
    kinds = set()
    with Session(engine, expire_on_commit=False) as s:
        too_big = process_message(s, settings, good + b"x" * 20_000)
        assert too_big.kind == "too-large" and not too_big.ok
        for _ in range(150):
            raw = bytearray(good)
            for _ in range(rng.randint(1, 40)):
                at = rng.randrange(len(raw))
                raw[at : at + rng.randint(1, 30)] = bytes(
                    rng.randrange(256) for _ in range(rng.randint(0, 30))
                )
            kinds.add(process_message(s, settings, bytes(raw)).kind)
        s.commit()
    assert "error" not in kinds
    for address in PEOPLE:
        if address != "ada@example.com":  # the only reader the bounce is about
            assert reader(engine, address).status == "active"
            assert suppressed(engine, address) is None


def test_import_reads_an_oversized_message_only_up_to_the_limit(
    sent, engine, cli, tmp_path, monkeypatch
):
    monkeypatch.setenv("NEWSLETTER_BOUNCE_MAX_BYTES", "5000")
    big = fill("gmail_dsn.eml", sent["ada@example.com"], "ada@example.com") + b"x" * 50_000
    (tmp_path / "big.eml").write_bytes(big)
    box = b"From a\n" + big.replace(b"\r\n", b"\n") + b"\n\nFrom b\nSubject: hi\n\nx\n"
    (tmp_path / "big.mbox").write_bytes(box)
    result = cli("bounces", "import", str(tmp_path / "big.eml"), str(tmp_path / "big.mbox"))
    assert result.exit_code == 1
    assert "big.eml: too-large: larger than 5000 bytes, not read" in result.output
    assert "big.mbox#1: too-large" in result.output and "big.mbox#2: unknown" in result.output
    assert suppressed(engine, "ada@example.com") is None
