"""SMTP configuration from a URL, how replies become temporary or permanent failures, and
the bytes a real SMTP server receives."""

import asyncio

import pytest

from newsletter.delivery.channels.base import (
    PermanentDeliveryError,
    SmtpReady,
    TemporaryDeliveryError,
)
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig, classify, data_payload
from newsletter.delivery.messages import Body, assemble
from newsletter.rendering.editions import SLOT


def test_smtp_urls():
    c = SmtpConfig.from_url("smtp://us%40er:p%3Ass@mail.example.com:587?starttls=true")
    assert (c.host, c.port, c.username, c.password, c.start_tls, c.use_tls) == (
        "mail.example.com",
        587,
        "us@er",
        "p:ss",
        True,
        False,
    )
    c = SmtpConfig.from_url("smtps://mail.example.com")
    assert (c.port, c.use_tls, c.start_tls) == (465, True, False)
    c = SmtpConfig.from_url("smtp://127.0.0.1:2525?starttls=false&verify=false")
    assert (c.port, c.start_tls, c.verify) == (2525, False, False)
    assert SmtpConfig.from_url("smtp://localhost").start_tls is None  # when offered
    with pytest.raises(ValueError, match="smtp:// or smtps://"):
        SmtpConfig.from_url("http://mail.example.com")
    # a password with an unescaped # or / ends the host part early: its start was the
    # "port" that urllib quoted in its error
    for url in ("smtp://user:Xy7#secret@mail.example.com:587", "smtp://user:Xy7/s@mail"):
        with pytest.raises(ValueError, match="percent-encoded") as refused:
            SmtpConfig.from_url(url)
        assert "Xy7" not in str(refused.value)


@pytest.mark.parametrize(
    "code, message, kind, suppress",
    [
        (451, "4.3.0 try later", TemporaryDeliveryError, None),
        (421, "4.7.0 too many connections", TemporaryDeliveryError, None),
        (550, "5.1.1 user unknown", PermanentDeliveryError, True),
        (553, "mailbox name not allowed", PermanentDeliveryError, True),
        (550, "5.7.1 rejected by policy", PermanentDeliveryError, False),
        (552, "5.3.4 message too big", PermanentDeliveryError, False),
    ],
)
def test_reply_classification(code, message, kind, suppress):
    err = classify(code, message)
    assert isinstance(err, kind) and err.code == code
    if suppress is not None:
        assert err.suppress is suppress


def send(server, message: bytes, recipient: str = "reader@example.com") -> bytes:
    async def go():
        channel = SmtpChannel(SmtpConfig.from_url(server.url, timeout=10), connections=1)
        try:
            await channel.send(sender="brief@example.org", recipient=recipient, message=message)
        finally:
            await channel.aclose()

    asyncio.run(go())
    return server.recorder.to(recipient)[-1].data


def test_a_built_message_arrives_byte_for_byte(smtp_server):
    body = Body(
        f"Hello {SLOT}greeting{SLOT}\n.a line starting with a dot\n" + "x" * 500,
        html=False,
    )
    message = assemble(
        [("From", "brief@example.org"), ("To", "reader@example.com"), ("Subject", "Hi")],
        body,
        body,
        boundary="=_nl_test",
        values={"greeting": "Ada"},
    )
    assert isinstance(message, SmtpReady)  # sent as it is
    assert data_payload(message) == message + b".\r\n"
    assert data_payload(bytes(message)) == message + b".\r\n"  # the same when checked
    assert send(smtp_server, message) == message


def test_line_endings_and_leading_dots_are_made_safe(smtp_server):
    message = b"Subject: odd\n\n.one dot\r\n..two dots\rlone CR\nend"
    assert data_payload(message) == (
        b"Subject: odd\r\n\r\n..one dot\r\n...two dots\r\nlone CR\r\nend\r\n.\r\n"
    )
    received = send(smtp_server, message)
    assert received == b"Subject: odd\r\n\r\n.one dot\r\n..two dots\r\nlone CR\r\nend\r\n"
