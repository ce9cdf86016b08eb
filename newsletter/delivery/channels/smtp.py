"""SMTP over aiosmtplib: a small pool of reused connections, replies mapped to errors."""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from newsletter.core.addresses import AddressError, wire_address
from newsletter.delivery.channels.base import (
    PermanentDeliveryError,
    SmtpReady,
    TemporaryDeliveryError,
)

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
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
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        start_tls = None
        if "starttls" in query:
            start_tls = query["starttls"] in _TRUE
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=False if parts.scheme == "smtps" else start_tls,
            verify=query.get("verify", "true") in _TRUE,
            timeout=timeout,
        )


def classify(code: int, message: str) -> Exception:
    """Map an SMTP reply to the outbox's two kinds of failure."""
    text = f"{code} {message}".strip()
    if 400 <= code < 500:
        return TemporaryDeliveryError(text, code=code)
    enhanced = _ENHANCED.search(message or "")
    detail = enhanced.group(0) if enhanced else ""
    # policy/auth rejections and oversize messages say nothing about the address
    address_is_bad = not (detail.startswith("5.7.") or detail in ("5.3.4", "5.2.3") or code == 552)
    return PermanentDeliveryError(text, code=code, suppress=address_is_bad)


class SmtpChannel:
    name = "smtp"

    def __init__(self, config: SmtpConfig, *, connections: int = 4):
        self.config = config
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP] = asyncio.LifoQueue()
        self._slots = asyncio.Semaphore(connections)

    async def _connect(self) -> aiosmtplib.SMTP:
        c = self.config
        tls_context = None
        if not c.verify:
            tls_context = ssl.create_default_context()
            tls_context.check_hostname = False
            tls_context.verify_mode = ssl.CERT_NONE
        client = aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            use_tls=c.use_tls,
            start_tls=c.start_tls,
            validate_certs=c.verify,
            tls_context=tls_context,
            timeout=c.timeout,
            username=c.username,
            password=c.password,
        )
        await client.connect()
        return client

    async def send(self, *, sender: str, recipient: str, message: bytes, key: str = "") -> str:
        try:  # IDN domains as A-labels (the message's headers already use them)
            sender, recipient = wire_address(sender), wire_address(recipient)
        except AddressError as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        # a non-ASCII local part needs SMTPUTF8 (RFC 6531), whose servers also take 8BITMIME
        utf8 = not (sender.isascii() and recipient.isascii())
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        async with self._slots:
            client = None
            try:
                client = self._idle.get_nowait() if not self._idle.empty() else None
                if client is None or not client.is_connected:
                    client = await self._connect()
                if utf8 and not await _offers_smtputf8(client):
                    self._idle.put_nowait(client)  # nothing was sent: the connection is fine
                    who = "sender" if recipient.isascii() else "recipient"
                    raise PermanentDeliveryError(
                        f"{who} has a non-ASCII local part and the server does not offer SMTPUTF8"
                    )
                reply = await _transaction(client, sender, recipient, message, options)
            except aiosmtplib.SMTPResponseException as exc:
                await _drop(client)
                raise classify(exc.code, exc.message) from exc
            except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
                await _drop(client)
                raise TemporaryDeliveryError(f"connection problem: {exc!r}") from exc
            self._idle.put_nowait(client)
            return reply

    async def aclose(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            try:
                await client.quit()
            except Exception:  # noqa: BLE001 - closing anyway
                client.close()


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes, options: list[str]
) -> str:
    """MAIL, RCPT and DATA for one message; returns the server's final reply.

    aiosmtplib's `sendmail` rewrites every message's line endings with a regular
    expression (twice when the server takes SIZE), which cost more than the rest of the
    send; built messages need no change, so the DATA payload is prepared here and
    written as it is.
    """
    encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
    payload = data_payload(message)
    await _greet(client)
    if client.supports_extension("size"):
        options = [f"SIZE={len(payload) - 3}", *options]
    await client.mail(sender, options=options, encoding=encoding)
    await client.rcpt(recipient, encoding=encoding)
    start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    client.protocol.write(payload)
    reply = await client.protocol.read_response(timeout=client.timeout)
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply.message


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


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO once per connection (HELO if the server knows no EHLO)."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo()


async def _offers_smtputf8(client: aiosmtplib.SMTP) -> bool:
    await _greet(client)
    return client.supports_extension("smtputf8")


async def _drop(client: aiosmtplib.SMTP | None) -> None:
    if client is not None:
        client.close()
