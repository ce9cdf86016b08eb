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
