"""The one seam for outgoing I/O: a channel sends, or raises one of two errors."""

from __future__ import annotations

from typing import Protocol


class DeliveryError(Exception):
    def __init__(self, message: str, *, code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class TemporaryDeliveryError(DeliveryError):
    """Try again later (4xx, connection trouble, rate limits)."""


class PermanentDeliveryError(DeliveryError):
    """Do not retry this message. `suppress`: the email address is bad (hard bounce);
    `disable`: the webhook endpoint is gone or revoked."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        suppress: bool = False,
        disable: bool = False,
    ):
        super().__init__(message, code=code)
        self.suppress = suppress
        self.disable = disable


class Channel(Protocol):
    """An email channel: SMTP, or the file drop used when no SMTP server is configured."""

    name: str

    async def send(self, *, sender: str, recipient: str, message: bytes, key: str = "") -> str:
        """Deliver one message; returns the server's answer.

        `sender` and `recipient` are addresses as stored (a Unicode domain, perhaps a
        non-ASCII local part); an SMTP channel writes them with addresses.wire_address."""
        ...

    async def aclose(self) -> None: ...
