"""A shortcut through email_validator for the addresses nearly every import is made of.

`validate_email` walks an address character by character (quotes, display names,
Unicode combining marks) and costs about ten microseconds. An address that is ASCII,
has one plain dot-atom before its first @-sign and a domain name after it needs none
of that: email_validator's answer for it is the local part as given, an @-sign and the
domain as its domain check returns it, if the lengths are within limits. `plain_address`
gives exactly that answer, with the domain check run by email_validator itself (once
per domain), and returns None for every other address, which is then left to
email_validator: quoted local parts, display names, domain literals, Unicode, a domain
email_validator refuses (so the user sees its message), or a library set up in a
non-default way. tests/audience/test_email_syntax.py compares the two on many generated
addresses.
"""

from __future__ import annotations

import re
import typing

import email_validator
from email_validator import EmailNotValidError
from email_validator import syntax as _syntax

# RFC 5322 atext, the characters of an unquoted local part, as email_validator lists
# them (rfc_constants.ATEXT); dots only between runs of them.
_ATEXT = r"a-zA-Z0-9_!#$%&'*+\-/=?^`{|}~"
_DOT_ATOM = re.compile(f"[{_ATEXT}]+(?:\\.[{_ATEXT}]+)*")

EMAIL_MAX_LENGTH = 254  # in UTF-8 bytes, as email_validator counts them
_REFUSED = ""  # a domain email_validator refuses: its message comes from email_validator
_domains: dict[str, tuple[str, int] | str] = {}
_DOMAINS_KEPT = 4096


def plain_address(address: str) -> str | None:
    """email_validator's normalised form of a plain ASCII address, lower-cased as the
    import stores it; None when the answer must come from email_validator."""
    if not address.isascii() or len(address) > EMAIL_MAX_LENGTH:
        return None
    local, at, domain = address.partition("@")
    if not at or not _DOT_ATOM.fullmatch(local) or _library_options_changed():
        return None
    checked = _domains.get(domain)
    if checked is None:
        checked = _check_domain(domain)
    if checked is _REFUSED:
        return None
    unicode_domain, longest = typing.cast(tuple[str, int], checked)
    if len(local) + 1 + longest > EMAIL_MAX_LENGTH:
        return None
    return (local + "@" + unicode_domain).lower()


def _library_options_changed() -> bool:
    """Module-wide options that change email_validator's answer: then always ask it."""
    return (
        email_validator.STRICT
        or email_validator.TEST_ENVIRONMENT
        or not email_validator.GLOBALLY_DELIVERABLE
    )


def _check_domain(domain: str) -> tuple[str, int] | str:
    """(the domain as email_validator normalises it, its longest UTF-8 length), or _REFUSED."""
    if not domain or domain.startswith("["):  # empty, or a domain literal: not ours
        result: tuple[str, int] | str = _REFUSED
    else:
        try:
            info = _syntax.validate_email_domain_name(
                domain, test_environment=False, globally_deliverable=True
            )
        except EmailNotValidError:
            result = _REFUSED
        else:
            longest = max(len(info["domain"].encode("utf-8")), len(info["ascii_domain"]))
            result = (info["domain"], longest)
    if len(_domains) >= _DOMAINS_KEPT:
        _domains.clear()
    _domains[domain] = result
    return result
