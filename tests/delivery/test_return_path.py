"""VERP return paths: one function makes the token, one reads it; nothing else passes."""

import datetime as dt

import pytest

from newsletter.core.settings import Settings
from newsletter.delivery.return_path import (
    make_token,
    read_token,
    return_path,
    split_local,
)

SECRET = "test-secret-for-return-paths-0123456789"
TODAY = dt.date(2026, 3, 1)


def test_a_token_names_its_delivery_and_survives_lower_and_upper_case():
    token = make_token(SECRET, 123456, TODAY)
    assert token == token.lower() and len(token) <= 30
    for spelling in (token, token.upper()):
        got = read_token(SECRET, spelling, max_days=180, today=TODAY)
        assert got is not None and got.delivery_id == 123456 and got.made_on == TODAY
    assert read_token(SECRET, make_token(SECRET, 2**31 - 1, TODAY), max_days=1, today=TODAY)


@pytest.mark.parametrize(
    "bad",
    ["", "garbage", "1-2-3", "3f-a1-" + "a" * 16, "x" * 200, "1-1-aaaaaaaaaaaaaaaa\n", None],
)
def test_forged_or_garbled_tokens_name_nobody(bad):
    assert read_token(SECRET, bad, max_days=180, today=TODAY) is None


def test_a_token_from_another_key_or_with_another_id_is_refused():
    token = make_token(SECRET, 42, TODAY)
    assert (
        read_token("another-secret-key-0123456789-abcdefgh", token, max_days=9, today=TODAY) is None
    )
    ident, day, mac = token.split("-")
    assert read_token(SECRET, f"{ident}1-{day}-{mac}", max_days=9, today=TODAY) is None


def test_an_old_token_expires():
    token = make_token(SECRET, 7, TODAY - dt.timedelta(days=200))
    assert read_token(SECRET, token, max_days=180, today=TODAY) is None
    assert read_token(SECRET, token, max_days=365, today=TODAY) is not None


def test_return_path_uses_the_bounce_domain_or_the_from_domain_or_is_off():
    made = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    plain = Settings(secret_key=SECRET)
    path = return_path(plain, "brief@news.example.org", 5, made)
    assert path.startswith("bounces+") and path.endswith("@news.example.org")
    own = Settings(secret_key=SECRET, bounce_domain="Bounces.Example.NET")
    assert return_path(own, "brief@news.example.org", 5, made).endswith("@bounces.example.net")
    off = Settings(secret_key=SECRET, verp=False)
    assert return_path(off, "brief@news.example.org", 5, made) == "brief@news.example.org"
    with pytest.raises(ValueError):
        Settings(secret_key=SECRET, bounce_domain="not a domain")


def test_our_local_parts_are_recognised():
    assert split_local("Bounces+abc@x.org") == ("bounces", "abc")
    assert split_local("<unsubscribe@x.org>") == ("unsubscribe", "")
    assert split_local("brief@x.org") is None
