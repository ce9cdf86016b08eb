"""Hostile and unusual email input end to end: internationalised addresses, very long
header values, and a signup's name in the confirmation email. Every message is parsed
back as a real SMTP server (or the file drop) received it."""

import email
import email.policy
import re
from email.header import decode_header, make_header
from email.utils import parseaddr

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, is_suppressed
from newsletter.core.models import Delivery, Edition, Subscriber, Subscription, Topic
from newsletter.core.settings import Settings
from newsletter.core.text import one_line
from newsletter.pipeline.sample import load_sample
from tests.support.planning import plan_in
from tests.support.smtp_server import SmtpServer
from tests.support.workers import drain

ENCODED_WORD = re.compile(rb"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


@pytest.fixture
def smtputf8_server():
    """A real SMTP server on 127.0.0.1 that offers SMTPUTF8."""
    with SmtpServer(smtputf8=True) as server:
        yield server


def add_readers(engine, *readers: tuple[str, str]) -> None:
    """The sample topics plus active readers (email, name) following `capital`."""
    with Session(engine) as s:
        load_sample(session=s)
        for address, name in readers:
            add_subscriber(
                session=s, sub_in=SubscriberIn(email=address, name=name, topics="capital")
            )
        s.commit()


def send_july(engine, settings, *, subject: str | None = None) -> None:
    """Queue the July monthly digest (optionally with another subject) and drain the outbox."""
    with Session(engine) as s:
        plan_in(s, settings)
        if subject is not None:
            for edition in s.exec(select(Edition)).scalars():
                edition.subject = subject
                s.add(edition)
        s.commit()
    assert drain(engine, settings) is not None, "the worker must finish, not die"


def delivery_of(engine, address: str) -> Delivery:
    with Session(engine) as s:
        sub = s.exec(select(Subscriber).where(Subscriber.email == address)).scalar_one()
        return s.exec(select(Delivery).where(Delivery.subscriber_id == sub.id)).scalar_one()


def to_addr(message: email.message.EmailMessage) -> str:
    (address,) = message["To"].addresses
    return address.addr_spec


def header_fields(data: bytes) -> list[list[bytes]]:
    """The raw header block as fields, each the list of its (folded) lines."""
    fields: list[list[bytes]] = []
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def rfc2047_to(data: bytes) -> tuple[str, str]:
    """(display name, address) of To, decoded as RFC 2047 says: white space between two
    encoded words is dropped. (Python's newer header parser keeps it inside display
    names, CPython gh-128110; the older API follows the RFC.)"""
    legacy = email.message_from_bytes(data, policy=email.policy.compat32)
    name, address = parseaddr(legacy["To"])
    return str(make_header(decode_header(name))), address


def parse_utf8(data: bytes) -> email.message.EmailMessage:
    """A message whose headers may hold UTF-8 (RFC 6532), read as a mail client does."""
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.SMTPUTF8)


# --- item 2: internationalised addresses -----------------------------------------------------


def test_an_idn_domain_is_stored_once_and_sent_as_a_labels(engine, db_url, smtp_server, cli):
    r = cli("sample", "load")
    assert r.exit_code == 0
    r = cli("subscribers", "add", "user@xn--mnchen-3ya.de", "--topics", "capital")
    assert r.exit_code == 0 and "Added user@münchen.de" in r.output
    # the same mailbox spelled in Unicode is the same subscriber
    r = cli("subscribers", "add", "User@MÜNCHEN.de", "--topics", "capital")
    assert r.exit_code != 0 and "already subscribed" in r.output
    r = cli("subscribers", "add", "leser@bücher.example", "--topics", "capital", "--name", "Lü")
    assert r.exit_code == 0
    r = cli("subscribers", "add", "plain@example.com", "--topics", "capital")
    assert r.exit_code == 0

    send_july(engine, Settings(database_url=db_url, smtp_url=smtp_server.url))

    (got,) = smtp_server.recorder.to("user@xn--mnchen-3ya.de")
    assert got.rcpt_tos == ["user@xn--mnchen-3ya.de"]
    assert to_addr(got.message) == "user@xn--mnchen-3ya.de"
    (got,) = smtp_server.recorder.to("leser@xn--bcher-kva.example")
    assert to_addr(got.message) == "leser@xn--bcher-kva.example"
    assert got.message["To"].addresses[0].display_name == "Lü"
    assert got.data.isascii()  # nothing here needs SMTPUTF8
    assert len(smtp_server.recorder.to("plain@example.com")) == 1
    assert delivery_of(engine, "user@münchen.de").status == "sent"


def test_rows_stored_before_normalisation_are_still_sendable(engine, db_url, smtp_server):
    """Rows written by an older version (or by hand) are converted when sent, not trusted."""
    add_readers(engine, ("plain@example.com", ""))
    with Session(engine) as s:
        topic_id = s.exec(select(Topic.id).where(Topic.slug == "capital")).scalar_one()
        for address in ("old@BÜCHER.example", "bad@☃.example"):
            sub = Subscriber(email=address, name="", status="active", source="import")
            s.add(sub)
            s.flush()
            s.add(Subscription(subscriber_id=sub.id, topic_id=topic_id))
        s.commit()

    send_july(engine, Settings(database_url=db_url, smtp_url=smtp_server.url))

    (got,) = smtp_server.recorder.to("old@xn--bcher-kva.example")
    assert got.rcpt_tos == ["old@xn--bcher-kva.example"]
    assert to_addr(got.message) == "old@xn--bcher-kva.example"
    bad = delivery_of(engine, "bad@☃.example")
    assert bad.status == "failed" and "domain" in bad.last_error
    assert len(smtp_server.recorder.to("plain@example.com")) == 1


def test_a_non_ascii_local_part_is_delivered_by_an_smtputf8_server(engine, db_url, smtputf8_server):
    add_readers(engine, ("用户@例子.广告", "小明"), ("plain@example.com", ""))
    send_july(engine, Settings(database_url=db_url, smtp_url=smtputf8_server.url))

    rcpt = "用户@xn--fsqu00a.xn--4rr70v"
    (got,) = smtputf8_server.recorder.to(rcpt)
    assert got.rcpt_tos == [rcpt]
    msg = parse_utf8(got.data)
    assert to_addr(msg) == rcpt and msg["To"].addresses[0].display_name == "小明"
    assert len(smtputf8_server.recorder.to("plain@example.com")) == 1


def test_a_non_ascii_local_part_fails_alone_without_smtputf8(engine, db_url, smtp_server):
    add_readers(engine, ("用户@例子.广告", ""), ("plain@example.com", ""), ("user@münchen.de", ""))
    send_july(engine, Settings(database_url=db_url, smtp_url=smtp_server.url))

    failed = delivery_of(engine, "用户@例子.广告")
    assert failed.status == "failed"
    assert "non-ASCII local part" in failed.last_error and "SMTPUTF8" in failed.last_error
    assert len(smtp_server.recorder.to("plain@example.com")) == 1
    assert len(smtp_server.recorder.to("user@xn--mnchen-3ya.de")) == 1
    with Session(engine) as s:  # the server's limit says nothing bad about the address
        assert not is_suppressed(session=s, email="用户@例子.广告")


def test_the_file_drop_writes_internationalised_addresses(engine, db_url, tmp_path):
    add_readers(engine, ("用户@例子.广告", "小明"), ("user@münchen.de", "Jürgen"))
    outbox = tmp_path / "drop"
    send_july(engine, Settings(database_url=db_url, smtp_url=None, outbox_dir=outbox))

    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 2
    got = {}
    for path in files:
        msg = parse_utf8(path.read_bytes())
        (address,) = msg["To"].addresses
        got[address.addr_spec] = address.display_name
    assert got == {"用户@xn--fsqu00a.xn--4rr70v": "小明", "user@xn--mnchen-3ya.de": "Jürgen"}


# --- item 13: long header values -------------------------------------------------------------

LONG_NAMES = [
    "😀" * 200,
    "Ann-Kathrin " * 16,
    "x" * 199,
    'Zoë "the, quoted" <nobody@evil.example> ' * 4,
    "张伟" * 100,
    "Zoë\r\nBcc: all@evil.example\x00\r\nSubject: owned " * 4,
]


def test_long_names_and_subjects_are_folded_and_round_trip(engine, db_url, smtp_server):
    readers = [(f"long{i}@example.com", name) for i, name in enumerate(LONG_NAMES)]
    add_readers(engine, *readers)
    subject = "📰 Ünïcode " * 30 + "y" * 150  # the column holds 500
    send_july(engine, Settings(database_url=db_url, smtp_url=smtp_server.url), subject=subject)

    for address, name in readers:
        (got,) = smtp_server.recorder.to(address)
        fields = header_fields(got.data)
        assert all(len(line) <= 998 for field in fields for line in field)
        for field in fields:
            if field[0].split(b":", 1)[0] in (b"From", b"To", b"Subject"):
                assert all(len(line) <= 78 for line in field), field
        assert all(len(w) <= 75 for w in ENCODED_WORD.findall(got.data)), address
        assert rfc2047_to(got.data) == (one_line(name), address)
        msg = got.message
        assert str(msg["Subject"]) == subject.strip()
        assert len(msg.get_all("To")) == 1 and len(msg.get_all("Subject")) == 1
        assert msg["Bcc"] is None


# --- item 14: the unverified name stays out of the confirmation email ------------------------


def test_a_signup_name_is_not_echoed_into_the_confirmation_email(engine, web_settings, smtp_server):
    from fastapi.testclient import TestClient

    from newsletter.web.app import create_app

    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    client = TestClient(create_app(settings=web_settings, engine=engine))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)
    bait = "URGENT: verify at https://evil.example"
    r = client.post(
        "/subscribe",
        data={
            "email": "victim@example.com",
            "name": bait,
            "topics": ["capital"],
            "csrf_token": token,
        },
    )
    assert r.status_code == 200
    drain(engine, web_settings)

    (got,) = smtp_server.recorder.to("victim@example.com")
    msg = got.message
    assert msg["To"].addresses[0].display_name == ""
    assert to_addr(msg) == "victim@example.com"
    for part in ("plain", "html"):
        body = msg.get_body((part,)).get_content()
        assert "URGENT" not in body and "evil.example" not in body
        assert "Hello," in body
    assert b"evil" not in got.data.split(b"\r\n\r\n", 1)[0]


def test_a_roster_listing_one_mailbox_in_two_spellings_reports_it(cli, tmp_path):
    cli("sample", "load")
    rosters = tmp_path / "rosters"
    rosters.mkdir()
    (rosters / "team.yaml").write_text(
        "subscribers:\n"
        "  - {email: user@xn--mnchen-3ya.de, name: A, topics: [capital]}\n"
        "  - {email: User@MÜNCHEN.de, name: B, topics: [capital]}\n",
        encoding="utf-8",
    )
    r = cli("subscribers", "sync", str(rosters))
    assert r.exit_code == 1 and "1 created" in r.output
    assert "also listed at team.yaml subscribers[1]" in r.stderr


# --- per-reader slots spliced into bodies encoded once per edition ---------------------------

SLOT_NAMES = [
    "Zoë Ünïcode",
    "😀" * 40,
    "A" * 200,
    "Eve\r\n.\r\nMAIL FROM:<x@evil.example>\r\nDATA\r\n",
    ".a dot first",
    "=?utf-8?b?SGk=?=",
    '<b>&amp;</b> "q"',
    "名",
    "ab",
    "",
]


def test_hostile_names_stay_in_their_own_message_and_keep_mime_whole(engine, db_url, smtp_server):
    """Each reader's name and signed links land in that reader's message only, whatever
    their length mod 3 (the base64 groups the slots are spliced between), with base64
    lines of at most 76 characters and CRLF line endings only."""
    from html import escape

    from newsletter.audience.reader_links import read_token
    from newsletter.audience.subscribers import address_hash

    readers = [(f"slot{i}@example.com", name) for i, name in enumerate(SLOT_NAMES)]
    add_readers(engine, *readers)
    settings = Settings(database_url=db_url, smtp_url=smtp_server.url)
    send_july(engine, settings)
    assert len(smtp_server.recorder.received) == len(readers)
    for address, name in readers:
        (got,) = smtp_server.recorder.to(address)
        assert b"\r" not in got.data.replace(b"\r\n", b"")
        assert b"\n" not in got.data.replace(b"\r\n", b"")
        text, html = [part for part in got.message.walk() if not part.is_multipart()]
        for part in (text, html):
            assert all(len(line) <= 76 for line in part.get_payload().split("\r\n"))
            body = part.get_content()
            for other, _ in readers:
                assert other == address or other not in body
        if one_line(name):
            assert f"Hi {one_line(name)}," in text.get_content()
            assert escape(one_line(name)) in html.get_content()
        tokens = re.findall(r"/u/([\w.-]+)", text.get_content())
        assert tokens
        for token in tokens:
            assert (
                read_token(settings.secret_key, "unsubscribe", token)[1]
                == (address_hash(address)[:16])
            )


def test_a_suppression_made_after_planning_stops_every_spelling_of_the_address(
    engine, db_url, smtp_server
):
    """One mailbox stored twice by an older version ("Zoe@Bücher" and "zoe@bücher"), both planned,
    then suppressed before the worker runs: neither row is sent."""
    from newsletter.audience.subscribers import address_hash
    from newsletter.core.models import Suppression

    add_readers(engine, ("plain@example.com", ""))
    spellings = ["Zoe@Bücher.example", "zoe@bücher.example"]
    with Session(engine) as s:
        topic_id = s.exec(select(Topic.id).where(Topic.slug == "capital")).scalar_one()
        for address in spellings:
            sub = Subscriber(email=address, name="", status="active", source="import")
            s.add(sub)
            s.flush()
            s.add(Subscription(subscriber_id=sub.id, topic_id=topic_id))
        s.commit()
    settings = Settings(database_url=db_url, smtp_url=smtp_server.url, smtp_connections=1)
    with Session(engine) as s:
        summary = plan_in(s, settings)
        assert summary.enqueued == 3
        s.add(Suppression(address_hash=address_hash("zoe@bücher.example"), reason="complained"))
        s.commit()
    assert drain(engine, settings) is not None
    assert [r.rcpt_tos for r in smtp_server.recorder.received] == [["plain@example.com"]]
    for address in spellings:
        assert delivery_of(engine, address).status == "suppressed"
