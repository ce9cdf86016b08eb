"""Email out through an SMTP relay: a small pool of kept-open connections, each reply
mapped to a temporary or permanent failure."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.core.addresses import AddressError, wire_address
from newsletter.delivery.channels.base import (
    PermanentDeliveryError,
    SmtpReady,
    TemporaryDeliveryError,
)
from newsletter.delivery.channels.smtp_client import (
    SmtpConnection,
    SmtpConnectionError,
    SmtpReplyError,
)

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # implicit TLS (smtps://)
    start_tls: bool | None = None  # None: use it when the server offers it
    verify: bool = True
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 30.0) -> SmtpConfig:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise ValueError("NEWSLETTER_SMTP_URL must start with smtp:// or smtps://")
        if not parts.hostname:
            raise ValueError("NEWSLETTER_SMTP_URL has no host")
        try:
            port = parts.port
        except ValueError:  # urllib's message quotes the "port": often a password's start
            raise ValueError(
                "NEWSLETTER_SMTP_URL has no valid port; in the user name and password,"
                " / ? # @ : must be percent-encoded (%2F %3F %23 %40 %3A)"
            ) from None
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        start_tls = None
        if "starttls" in query:
            start_tls = query["starttls"] in _TRUE
        return cls(
            host=parts.hostname,
            port=port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=False if parts.scheme == "smtps" else start_tls,
            verify=query.get("verify", "true") in _TRUE,
            timeout=timeout,
        )


def classify(code: int, message: str, command: str = "RCPT") -> Exception:
    """Map an SMTP reply to the outbox's two kinds of failure. Only a 5yz is
    permanent: a 2yz or 3yz where another was due is the server out of step."""
    text = f"{code} {message}".strip()
    if not 500 <= code < 600:
        return TemporaryDeliveryError(text, code=code)
    enhanced = _ENHANCED.search(message or "")
    detail = enhanced.group(0) if enhanced else ""
    # policy/auth rejections, oversize messages and a refused sender (MAIL) or
    # transaction (DATA) say nothing about the recipient's address
    address_is_bad = command in ("RCPT", "end of data") and not (
        detail.startswith("5.7.") or detail in ("5.3.4", "5.2.3") or code == 552
    )
    return PermanentDeliveryError(text, code=code, suppress=address_is_bad)


class SmtpChannel:
    """A few kept-open connections to one relay, shared by all sends of a worker."""

    name = "smtp"

    def __init__(self, config: SmtpConfig, *, connections: int = 4):
        self.config = config
        self._idle: list[SmtpConnection] = []  # most recently used last
        self._slots = asyncio.Semaphore(connections)
        self._closed = False

    async def _connect(self) -> SmtpConnection:
        c = self.config
        connection = SmtpConnection(
            c.host,
            c.port,
            timeout=c.timeout,
            implicit_tls=c.use_tls,
            start_tls=c.start_tls,
            verify=c.verify,
            username=c.username,
            password=c.password,
        )
        try:
            await connection.open()
        except SmtpReplyError as exc:
            connection.close()
            # the relay refused us (login, greeting, TLS), not this message: try again later
            raise TemporaryDeliveryError(
                f"the SMTP server refused the session at {exc.command}: {exc}", code=exc.code
            ) from exc
        except Exception as exc:  # noqa: BLE001 - the session, not this message: try later
            connection.close()
            raise TemporaryDeliveryError(f"cannot open an SMTP session: {exc!r}") from exc
        except BaseException:  # cancelled while opening: the half-open session too
            connection.close()
            raise
        return connection

    async def send(self, *, sender: str, recipient: str, message: bytes, key: str = "") -> str:
        try:  # IDN domains as A-labels (the message's headers already use them)
            sender, recipient = wire_address(sender), wire_address(recipient)
        except AddressError as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        if any(c in address for address in (sender, recipient) for c in "\r\n\0<> "):
            # never part of a valid address; in a command they would start another one
            raise PermanentDeliveryError(
                "refusing an envelope address with a line break, space or angle bracket:"
                f" {sender!r} -> {recipient!r}"
            )
        # a non-ASCII local part needs SMTPUTF8 (RFC 6531), whose servers also take 8BITMIME
        utf8 = not (sender.isascii() and recipient.isascii())
        encoding = "utf-8" if utf8 else "ascii"
        payload = data_payload(message)
        async with self._slots:
            for fresh in (False, True):
                connection = self._idle.pop() if self._idle and not fresh else None
                if connection is None or not connection.usable:
                    connection = await self._connect()
                    fresh = True
                if utf8 and not connection.supports("smtputf8"):
                    self._keep(connection)  # nothing was sent: the connection is fine
                    who = "sender" if recipient.isascii() else "recipient"
                    raise PermanentDeliveryError(
                        f"{who} has a non-ASCII local part and the server does not offer SMTPUTF8"
                    )
                options = b" SMTPUTF8 BODY=8BITMIME" if utf8 else b""
                if connection.supports("size"):
                    options = b" SIZE=%d" % (len(payload) - 3) + options
                try:
                    reply = await connection.send(
                        sender.encode(encoding), recipient.encode(encoding), payload, options
                    )
                except SmtpReplyError as exc:
                    if exc.code == 421 or not connection.usable:  # the server is closing
                        connection.close()
                    else:
                        self._keep(connection)
                    raise classify(exc.code, exc.message, exc.command) from exc
                except (SmtpConnectionError, OSError) as exc:
                    connection.close()
                    if not fresh and not getattr(exc, "message_sent", True):
                        continue  # a kept-open connection the server had closed: once more
                    raise TemporaryDeliveryError(f"connection problem: {exc}") from exc
                self._keep(connection)
                return reply
        raise AssertionError("unreachable")

    def _keep(self, connection: SmtpConnection) -> None:
        """Back to the pool; after aclose() a send that was in flight closes its own."""
        if self._closed:
            connection.close()
        else:
            self._idle.append(connection)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(c.quit() for c in idle), return_exceptions=True)


_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def data_payload(message: bytes) -> bytes:
    """A message as DATA sends it (RFC 5321 4.5.2): CRLF line endings, a dot that starts
    a line doubled, then the closing dot line. Built messages are like that already."""
    if isinstance(message, SmtpReady) and message.endswith(b"\r\n"):
        return message + b".\r\n"
    if not message.count(b"\r") == message.count(b"\n") == message.count(b"\r\n"):
        message = _LINE_END.sub(b"\r\n", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    return message + b".\r\n"
