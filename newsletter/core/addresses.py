"""Email addresses on the wire: what goes into the SMTP envelope and the address headers.

Addresses are stored in their Unicode form (`user@münchen.de`, as the reader typed it,
normalised). Mail servers and the headers of an ordinary message need ASCII, so the
domain is always sent as A-labels (`user@xn--mnchen-3ya.de`). A local part that is not
ASCII (`用户@例子.广告`) cannot be written in ASCII at all: such a message can only go to
a server that offers SMTPUTF8 (RFC 6531), with the address in UTF-8 in the headers.

The conversion runs on every send rather than only at input, so rows written by an
older version (or by hand) are sent correctly too.
"""

from __future__ import annotations

import hashlib
import unicodedata
from functools import lru_cache

import idna


class AddressError(ValueError):
    """An address that cannot be written on the wire (its domain is not a valid IDN)."""


@lru_cache(maxsize=4096)
def wire_address(address: str) -> str:
    """`local@domain` with the domain in A-labels; the local part is left as it is."""
    if address.isascii():
        return address
    local, sep, domain = address.rpartition("@")
    if not sep or not local:
        raise AddressError(f"{address!r} is not an email address")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(
                f"the domain of {address!r} cannot be written in ASCII (IDNA): {exc}"
            ) from exc
    return f"{local}@{domain}"


def address_hash(email: str) -> str:
    """The suppression list's key for an address (kept after personal data is deleted)."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def proof_address(value: str) -> str:
    """An editor's address for digest proofs, normalised: a valid address (an IDN domain
    or a Unicode local part is fine), one that can be written on the wire, and no
    control characters anywhere (they could end a header or an SMTP command early)."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(value, str):
        raise AddressError("the proof address must be text")
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise AddressError("the proof address contains control characters or line breaks")
    text = value.strip()
    if not text:
        raise AddressError("give an address to send the proof to")
    if len(text) > 320:
        raise AddressError("the proof address is longer than 320 characters")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"invalid proof address {text!r}: {exc}") from exc
    address = info.normalized.lower() if info.ascii_email else info.normalized
    wire_address(address)  # raises AddressError for a domain IDNA cannot encode
    return address
