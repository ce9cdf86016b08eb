"""Per-reader parts of an email: bodies encoded once per edition with the slots spliced
in, and the signed links (the same tokens itsdangerous makes, so old links still work)."""

import base64
import random
from unittest import mock

import pytest

from newsletter.audience.reader_links import _serializer, make_token, read_token
from newsletter.audience.subscribers import address_hash
from newsletter.delivery.messages import CRLF, Body
from newsletter.rendering.editions import SLOT, personalise

SECRET = "test-secret-for-email-messages-0123456789"


def test_spliced_bodies_decode_to_the_filled_in_text():
    rng = random.Random(11)
    alphabet = 'ab c\n.é中文<>&"'

    def text(n):
        return "".join(rng.choice(alphabet) for _ in range(n))

    for _ in range(400):
        pieces = []
        for _ in range(rng.randint(0, 4)):
            name = rng.choice(["greeting", "unsubscribe_url", "preferences_url", "email"])
            pieces += [text(rng.randint(0, 150)), f"{SLOT}{name}{SLOT}"]
        template = "".join([*pieces, text(rng.randint(0, 150))])
        values = {"greeting": text(rng.randint(0, 40)), "unsubscribe_url": text(rng.randint(0, 80))}
        for html in (False, True):
            encoded = Body(template, html=html).encode(values).decode("ascii")
            lines = encoded.split(CRLF)
            assert all(len(line) <= 76 and len(line) % 4 == 0 for line in lines)
            assert "=" not in encoded.rstrip("=")  # padding only at the very end
            decoded = base64.b64decode("".join(lines), validate=True).decode("utf-8")
            want = personalise(template, values, html=html).replace("\n", "\r\n")
            assert decoded == want


@pytest.mark.parametrize("subscriber_id", [1, 12345, 987654321, 10**12, 111111111111111111])
@pytest.mark.parametrize("purpose", ["unsubscribe", "preferences", "confirm"])
def test_tokens_are_the_ones_itsdangerous_makes(subscriber_id, purpose):
    for now in (1, 256, 1_700_000_000, 4_300_000_000):
        with (
            mock.patch("itsdangerous.timed.time.time", return_value=now + 0.5),
            mock.patch("newsletter.audience.reader_links.time.time", return_value=now + 0.5),
        ):
            ours = make_token(SECRET, purpose, subscriber_id, "Reader@Example.com")
            theirs = _serializer(SECRET, purpose).dumps(
                [subscriber_id, address_hash("reader@example.com")[:16]]
            )
        if theirs.startswith("."):  # itsdangerous compressed this payload; we never do
            assert subscriber_id >= 10**12
            assert _serializer(SECRET, purpose).loads(ours) == _serializer(SECRET, purpose).loads(
                theirs
            )
        else:
            assert ours == theirs
    token = make_token(SECRET, purpose, subscriber_id, "Reader@Example.com")
    assert read_token(SECRET, purpose, token) == (
        subscriber_id,
        address_hash("reader@example.com")[:16],
    )
