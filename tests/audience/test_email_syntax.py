"""The plain-address shortcut gives email_validator's answer, to the character, or none.

Every address below goes through `normalise_email` (shortcut first) and through
email_validator alone; the stored value, or the message a user sees, must be the same.
"""

from __future__ import annotations

import random

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter.audience import email_syntax
from newsletter.audience.email_syntax import plain_address
from newsletter.audience.subscribers import SubscriberError, normalise_email


def reference(value: str) -> tuple[str, str]:
    """What normalise_email answered before the shortcut: email_validator alone."""
    if any(c in value for c in "\r\n\x00"):
        return "error", "email address contains line breaks or control characters"
    address = value.strip()
    try:
        info = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return "error", f"invalid email address {address!r}: {exc}"
    return "ok", info.normalized.lower() if info.ascii_email else info.normalized


def answer(value: str) -> tuple[str, str]:
    try:
        return "ok", normalise_email(value)
    except SubscriberError as exc:
        return "error", str(exc)


ATEXT = "abcxyzABCXYZ0189_!#$%&'*+-/=?^`{|}~"
HOSTILE = ' "\\@<>()[],;:.\t\x01\x1f\x7f\x85\xa0éÉ用\u0301\u200b\u202e＠﹫。ǅ'
LABELS = [
    "example",
    "Example",
    "EXAMPLE",
    "mail",
    "a",
    "x1",
    "1x",
    "123",
    "a-b",
    "-ab",
    "ab-",
    "ab--cd",
    "xn--mnchen-3ya",
    "XN--MNCHEN-3YA",
    "xn--abc",
    "xn--",
    "a_b",
    "münchen",
    "MÜNCHEN",
    "例子",
    "ﬁ",
    "a" * 63,
    "b" * 64,
    "",
]
TLDS = [
    "com",
    "COM",
    "de",
    "example",
    "org",
    "io",
    "c0m",
    "123",
    "local",
    "LOCAL",
    "test",
    "invalid",
    "localhost",
    "onion",
    "arpa",
    "xn--p1ai",
    "广告",
    "a" * 63,
    "c" * 64,
    "",
]


def random_local(rng: random.Random) -> str:
    n = rng.choice([1, 1, 2, 5, 8, 12, 20, 63, 64, 65, 120])
    if rng.random() < 0.6:  # mostly plain, with the odd dot
        text = "".join(rng.choice(ATEXT + "...") for _ in range(n))
    else:
        text = "".join(rng.choice(ATEXT + HOSTILE) for _ in range(n))
    if rng.random() < 0.1:
        text = f'"{text}"'
    return text


def random_domain(rng: random.Random) -> str:
    labels = [rng.choice(LABELS) for _ in range(rng.choice([0, 1, 1, 2, 3]))]
    if rng.random() < 0.03:  # long enough to pass the 253 and 254 limits
        labels = ["d" * 60] * rng.choice([3, 4, 5])
    domain = ".".join([*labels, rng.choice(TLDS)])
    if rng.random() < 0.1:
        i = rng.randrange(len(domain) + 1)
        domain = domain[:i] + rng.choice(HOSTILE) + domain[i:]
    if rng.random() < 0.03:
        domain = rng.choice(["[192.0.2.1]", "[IPv6:2001:db8::1]", "", "."]) + domain
    return domain


def common_address(rng: random.Random) -> str:
    """The kind of address an import is made of, with case and length varied."""
    local = "".join(rng.choice(ATEXT + ".") for _ in range(rng.randint(1, 30))).strip(".")
    labels = [rng.choice(LABELS[:11]) for _ in range(rng.randint(1, 3))]
    return (local.replace("..", ".") or "x") + "@" + ".".join([*labels, rng.choice(TLDS[:8])])


def random_address(rng: random.Random) -> str:
    if rng.random() < 0.4:
        address = common_address(rng)
    else:
        address = random_local(rng) + "@" + random_domain(rng)
    roll = rng.random()
    if roll < 0.05:
        address = f"Name <{address}>"
    elif roll < 0.1:
        address = address.replace("@", rng.choice(["", "@@", "＠", " @ "]), 1)
    elif roll < 0.2:
        address = rng.choice([" ", "\t", "\u3000", "\x1f", "\n"]) + address + rng.choice(["", " "])
    return address


HAND_PICKED = [
    "reader1@import.example",
    "Reader1@Import.Example",
    "INFO@example.com",
    "postmaster@EXAMPLE.com",
    "a.b.c@example.com",
    ".ab@example.com",
    "ab.@example.com",
    "a..b@example.com",
    '"a b"@example.com',
    '"ab"@example.com',
    'a"b@example.com',
    "a@b@example.com",
    "a@example..com",
    "a@.example.com",
    "a@example.com.",
    "a@-example.com",
    "a@example-.com",
    "a@ex--ample.com",
    "a@xn--mnchen-3ya.de",
    "a@XN--MNCHEN-3YA.DE",
    "a@xn--abc.com",
    "a@münchen.de",
    "jörg@bücher.example",
    "a@localhost",
    "a@mail.local",
    "a@site.test",
    "a@x.invalid",
    "a@x.onion",
    "a@in-addr.arpa",
    "a@example",
    "a@example.c0m",
    "a@example.123",
    "a@[192.0.2.1]",
    "a@",
    "@example.com",
    "a",
    "",
    " a@example.com ",
    "a @example.com",
    "a@ example.com",
    "a\t@example.com",
    "a\x01b@example.com",
    "a\x7fb@example.com",
    "a\u200bb@example.com",
    "Name <a@example.com>",
    "<a@example.com>",
    "a＠example.com",
    "a@" + "a" * 63 + ".com",
    "a@" + "a" * 64 + ".com",
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",
    "a" * 240 + "@example.com",  # 252 characters: allowed
    "a" * 242 + "@example.com",  # 254 characters: allowed
    "a" * 243 + "@example.com",  # 255 characters: too long
    "a@" + ".".join(["d" * 60] * 4) + ".com",  # a 248-character domain
    "ab@" + ".".join(["d" * 60] * 4) + ".com",
    "abcdef@" + ".".join(["d" * 60] * 4) + ".com",  # 255 characters in all
    "a@" + ".".join(["d" * 61] * 4) + ".com",  # domain over 253
    "a" * 200 + "@xn--mnchen-3ya.de",
    "a" * 236 + "@xn--mnchen-3ya.de",
    "a" * 237 + "@xn--mnchen-3ya.de",
]


@pytest.mark.parametrize("address", HAND_PICKED)
def test_hand_picked_addresses_as_email_validator_answers(address):
    assert answer(address) == reference(address)


def test_generated_addresses_as_email_validator_answers():
    rng = random.Random(20250706)
    shortcut = 0
    for _ in range(40_000):
        address = random_address(rng)
        assert answer(address) == reference(address), address
        shortcut += plain_address(address.strip()) is not None
    # the shortcut is taken for the common addresses, so the comparison tested it
    assert shortcut > 8_000


def test_a_refused_domain_is_refused_each_time_with_email_validators_message():
    for _ in range(2):  # the second time from the shortcut's memory
        assert plain_address("a@b.local") is None
        assert answer("a@b.local") == reference("a@b.local")
        assert answer("a@b.local")[0] == "error"


def test_library_options_send_every_address_to_email_validator(monkeypatch):
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", True)
    assert plain_address("a@site.test") is None
    assert answer("a@site.test") == reference("a@site.test") == ("ok", "a@site.test")
    monkeypatch.setattr(email_validator, "TEST_ENVIRONMENT", False)
    monkeypatch.setattr(email_validator, "STRICT", True)
    long_local = "a" * 65 + "@example.com"
    assert plain_address(long_local) is None
    assert answer(long_local) == reference(long_local)
    assert answer(long_local)[0] == "error"


def test_the_domain_memory_stays_bounded(monkeypatch):
    monkeypatch.setattr(email_syntax, "_DOMAINS_KEPT", 10)
    for i in range(50):
        assert plain_address(f"a@d{i}.example.com") == f"a@d{i}.example.com"
    assert len(email_syntax._domains) <= 10
