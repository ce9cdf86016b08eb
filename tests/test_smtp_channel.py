"""SMTP configuration from a URL, and how replies become temporary or permanent failures."""

import pytest

from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.smtp import SmtpConfig, classify


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
