"""A small SMTP client (RFC 5321) for sending many prepared messages over few connections.

Why our own: a digest run is the same transaction repeated hundreds of thousands of
times, and a general-purpose client spent more CPU per message than the rest of the
worker (a round trip and several tasks per command, every reply parsed with regular
expressions). Here MAIL, RCPT and DATA go out in one write when the server offers
PIPELINING (RFC 2920), the message goes out as the prepared bytes it is, and replies are
parsed as they arrive. Everything a sender needs from a relay is kept: implicit TLS and
STARTTLS (certificates checked unless told otherwise), AUTH (CRAM-MD5, PLAIN, LOGIN),
SIZE, SMTPUTF8 and 8BITMIME, and the reply codes for the caller to classify.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ipaddress
import socket
import ssl
import time
from collections import deque
from typing import NamedTuple

MAX_REPLY_BYTES = 64 * 1024  # one reply, all its lines; a server sending more is broken
MAX_UNREAD_REPLIES = 16  # more replies than a pipelined group asks for: not an SMTP server
#: RFC 5321 4.5.3.2 gives a server 10 minutes to answer the end of a message (it may be
#: scanning it), and giving up early risks sending twice what it then accepts; but a
#: claimed row's lease (5 minutes by default) must not run out meanwhile either
FINAL_REPLY_TIMEOUT = 120.0


class Reply(NamedTuple):
    code: int
    message: str


class SmtpReplyError(Exception):
    """The server answered a command with something other than what was asked for."""

    def __init__(self, reply: Reply, command: str):
        super().__init__(f"{reply.code} {reply.message}".strip())
        self.code, self.message, self.command = reply.code, reply.message, command


class SmtpConnectionError(ConnectionError):
    """The connection is gone or unusable (closed, timed out, a reply that is not SMTP).

    `message_sent` is False when it failed before any of the message was written: then
    nothing can have been delivered and the message may go out on another connection."""

    message_sent = True


class _Replies(asyncio.Protocol):
    """Cuts the byte stream into replies and hands them out in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed: Exception | None = None
        self.deadline: float | None = None  # the awaited replies are overdue after this
        self._buffer = b""
        self._lines: list[str] = []
        self._ready: deque[Reply] = deque()
        self._waiting: deque[asyncio.Future[Reply]] = deque()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            self._line(buffer[start:end])
            start = end + 1
            if self.closed is not None:
                return
        self._buffer = buffer[start:]
        if len(self._buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self.fail(SmtpConnectionError("the server's reply is too long"))

    def _line(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        code, mark = line[:3], line[3:4]
        if not (len(code) == 3 and code.isdigit() and b"2" <= code[:1] <= b"5"):
            mark = b"?"  # RFC 5321 4.2: 2yz to 5yz only; anything else is not SMTP
        if mark not in (b" ", b"-", b""):
            self.fail(SmtpConnectionError(f"not an SMTP reply: {line[:80]!r}"))
            return
        text = line[4:].decode("utf-8", "replace")
        if mark == b"-":
            self._lines.append(text)
            return
        if self._lines:
            text = "\n".join([*self._lines, text])
            self._lines = []
        reply = Reply(int(code), text)
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(reply)
                return
        if len(self._ready) >= MAX_UNREAD_REPLIES:  # nobody asked: a flood, not SMTP
            self.fail(SmtpConnectionError("the server sends replies nobody asked for"))
            return
        self._ready.append(reply)

    def fail(self, exc: Exception) -> None:
        """End the connection; whoever waits for a reply gets `exc`."""
        if self.closed is None:
            self.closed = exc
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self.closed)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(
            SmtpConnectionError(f"connection lost: {exc!r}")
            if exc
            else SmtpConnectionError("the server closed the connection")
        )

    def eof_received(self) -> bool:
        return False  # close our side too

    def read(self) -> asyncio.Future[Reply]:
        """The next reply (already received, or a future for it)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reply] = loop.create_future()
        if self._ready:
            waiter.set_result(self._ready.popleft())
        elif self.closed is not None:
            waiter.set_exception(self.closed)
        else:
            self._waiting.append(waiter)
        return waiter

    def pending(self) -> bool:
        """Whether anything was received that no one has read yet."""
        return bool(self._ready or self._buffer or self._lines)

    def write(self, data: bytes) -> None:
        if self.closed is not None:
            raise self.closed
        assert self.transport is not None
        self.transport.write(data)


_local_name: str | None = None


async def local_hostname() -> str:
    """The name this host gives in EHLO, looked up once (the lookup may be slow)."""
    global _local_name
    if _local_name is None:
        name = await asyncio.to_thread(socket.getfqdn)
        _local_name = name if name.isascii() and name and " " not in name else "localhost"
    return _local_name


class SmtpConnection:
    """One SMTP session: opened (greeting, EHLO, STARTTLS, AUTH), then any number of
    transactions, each a message to one recipient."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        implicit_tls: bool = False,
        start_tls: bool | None = None,
        verify: bool = True,
        username: str | None = None,
        password: str | None = None,
    ):
        self.host, self.port, self.timeout = host, port, timeout
        self.implicit_tls, self.start_tls, self.verify = implicit_tls, start_tls, verify
        self.username, self.password = username, password
        self.extensions: dict[str, str] = {}
        self.sent = 0  # transactions completed on this connection
        self._replies = _Replies()
        self._reset_first = False  # the last transaction failed midway: RSET before the next
        self._clock = time.monotonic  # the event loop's clock

    @property
    def usable(self) -> bool:
        return self._replies.transport is not None and self._replies.closed is None

    def supports(self, extension: str) -> bool:
        return extension.lower() in self.extensions

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.timeout):
            context = self._tls_context() if self.implicit_tls else None
            await loop.create_connection(
                lambda: self._replies,
                self.host,
                self.port,
                ssl=context,
                server_hostname=self.host if context else None,
            )
            self._clock = loop.time
            self._watch()
            await self._expect(None, 220, "greeting")
            await self._hello()
            wants_tls = self.start_tls if self.start_tls is not None else self.supports("starttls")
            if wants_tls and not self.implicit_tls:
                if not self.supports("starttls"):
                    raise SmtpConnectionError("the server does not offer STARTTLS")
                await self._expect(b"STARTTLS\r\n", 220, "STARTTLS")
                if self._replies.pending():
                    # text sent before the encryption began cannot be trusted after it
                    # (someone in the path could answer for the server): give up
                    raise SmtpConnectionError("the server sent data after agreeing to STARTTLS")
                context = self._tls_context()
                plain = self._replies.transport
                if plain is None:
                    raise SmtpConnectionError("the server closed the connection at STARTTLS")
                transport = await loop.start_tls(
                    plain, self._replies, context, server_hostname=self.host
                )
                self._replies.transport = transport
                await self._hello()
            if self.username:
                if not (
                    self.implicit_tls or wants_tls or may_login_in_clear(self.host, self.start_tls)
                ):
                    # STARTTLS was not offered (or was stripped by someone in the path):
                    # the password would go out readable. `?starttls=false` says that
                    # is meant.
                    raise SmtpConnectionError(
                        "the server does not offer STARTTLS; not sending the password"
                        " unencrypted (add ?starttls=false to the SMTP URL to allow it)"
                    )
                await self._login()

    async def _expect(self, command: bytes | None, code: int, name: str) -> Reply:
        if command is not None:
            self._replies.write(command)
        reply = await self._replies.read()
        if reply.code != code:
            raise SmtpReplyError(reply, name)
        return reply

    async def _hello(self) -> None:
        name = await local_hostname()
        self._replies.write(f"EHLO {name}\r\n".encode())
        reply = await self._replies.read()
        if reply.code == 250:
            self.extensions = _extensions(reply.message)
            return
        if reply.code == 421:
            raise SmtpReplyError(reply, "EHLO")
        await self._expect(f"HELO {name}\r\n".encode(), 250, "HELO")
        self.extensions = {}

    async def _login(self) -> None:
        offered = self.extensions.get("auth", "").upper().split()
        user, password = self.username or "", self.password or ""
        try:
            (user + password).encode()
        except UnicodeEncodeError:  # its message would quote the password
            raise SmtpConnectionError(
                "the SMTP user name or password is not valid UTF-8 text"
            ) from None
        if "CRAM-MD5" in offered:
            challenge = await self._expect(b"AUTH CRAM-MD5\r\n", 334, "AUTH")
            digest = hmac.new(
                password.encode(), base64.b64decode(challenge.message), "md5"
            ).hexdigest()
            await self._expect(_b64(f"{user} {digest}") + b"\r\n", 235, "AUTH")
        elif "PLAIN" in offered:
            await self._expect(
                b"AUTH PLAIN " + _b64(f"\0{user}\0{password}") + b"\r\n", 235, "AUTH"
            )
        elif "LOGIN" in offered:
            await self._expect(b"AUTH LOGIN\r\n", 334, "AUTH")
            await self._expect(_b64(user) + b"\r\n", 334, "AUTH")
            await self._expect(_b64(password) + b"\r\n", 235, "AUTH")
        else:
            raise SmtpConnectionError(
                "a user name is configured but the server offers no login method we know"
                f" (AUTH {' '.join(offered) or 'not offered'})"
            )

    async def send(self, sender: bytes, recipient: bytes, payload: bytes, options: bytes) -> str:
        """One transaction: MAIL, RCPT, DATA and the payload (already dot-stuffed and
        ending in CRLF.CRLF). Returns the server's final reply text; raises
        SmtpReplyError (the connection stays usable) or SmtpConnectionError."""
        replies = self._replies
        clock = self._clock
        replies.deadline = clock() + self.timeout
        try:
            if replies.pending():
                # said while idle (a 421 before hanging up, a reply twice): the replies
                # are out of step with the commands, and the next MAIL would read this
                replies.fail(SmtpConnectionError("the server sent a reply nobody asked for"))
            commands = b"MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (
                sender,
                options,
                recipient,
            )
            if self._reset_first:
                commands = b"RSET\r\n" + commands
            if "pipelining" in self.extensions:
                replies.write(commands)
                if self._reset_first:
                    self._reset_first = False
                    await self._checked(250, "RSET")
                mail, rcpt, data = await replies.read(), await replies.read(), await replies.read()
            else:
                mail, rcpt, data = await self._one_by_one(commands)
        except SmtpConnectionError as exc:
            exc.message_sent = False
            replies.deadline = None
            raise
        except BaseException:
            # interrupted (cancelled) with replies outstanding: the connection's state is
            # unknown, and a later transaction must never read this one's replies
            replies.fail(SmtpConnectionError("a transaction was interrupted"))
            raise
        # the message itself may take a while on a slow link, and the server may check
        # it before answering: a timeout of its own
        replies.deadline = clock() + max(self.timeout, FINAL_REPLY_TIMEOUT)
        # judged by the first digit, as RFC 5321 4.2.1 asks: 2yz done, 3yz go on
        try:
            if data.code // 100 == 3 and (mail.code // 100 != 2 or rcpt.code // 100 != 2):
                replies.write(b".\r\n")  # DATA took, though nobody may receive it: end it
                await replies.read()
            if mail.code // 100 != 2:
                self._reset_first = True
                raise SmtpReplyError(mail, "MAIL")
            if rcpt.code // 100 != 2:
                self._reset_first = True
                raise SmtpReplyError(rcpt, "RCPT")
            if data.code // 100 != 3:
                self._reset_first = True
                raise SmtpReplyError(data, "DATA")
            replies.write(payload)
            final = await replies.read()
            if final.code // 100 != 2:
                raise SmtpReplyError(final, "end of data")
            self.sent += 1
            return final.message
        except SmtpReplyError:
            raise
        except BaseException:
            replies.fail(SmtpConnectionError("a transaction was interrupted"))
            raise
        finally:
            replies.deadline = None

    def _watch(self) -> None:
        """Ends the connection when awaited replies are overdue. A look every so often
        rather than a timer per command: timers cost more than the rest of a send."""
        replies = self._replies
        if replies.closed is not None:
            return
        loop = asyncio.get_running_loop()
        if replies.deadline is not None and loop.time() > replies.deadline:
            replies.fail(
                SmtpConnectionError(f"the server did not answer within {self.timeout:g} s")
            )
            return
        loop.call_later(min(1.0, self.timeout / 4), self._watch)

    async def _one_by_one(self, commands: bytes) -> tuple[Reply, Reply, Reply]:
        """Without PIPELINING: each command waits for its reply; a refused one stops the
        rest (they count as refused with the same reply)."""
        lines = commands.split(b"\r\n")[:-1]
        if self._reset_first:
            self._reset_first = False
            self._replies.write(lines.pop(0) + b"\r\n")
            await self._checked(250, "RSET")
        answers: list[Reply] = []
        for line in lines:
            self._replies.write(line + b"\r\n")
            answers.append(await self._replies.read())
            if answers[-1].code >= 400:
                answers += [answers[-1]] * (3 - len(answers))
                break
        mail, rcpt, data = answers
        return mail, rcpt, data

    async def _checked(self, code: int, name: str) -> None:
        reply = await self._replies.read()
        if reply.code != code:
            self._replies.fail(SmtpConnectionError(f"{name} refused: {reply.code} {reply.message}"))
            raise self._replies.closed  # type: ignore[misc]

    async def quit(self) -> None:
        if not self.usable:
            return
        try:
            async with asyncio.timeout(min(self.timeout, 5)):
                self._replies.write(b"QUIT\r\n")
                await self._replies.read()
        except (TimeoutError, OSError):
            pass
        self.close()

    def close(self) -> None:
        if self._replies.transport is not None:
            self._replies.transport.close()
        if self._replies.closed is None:
            self._replies.closed = SmtpConnectionError("closed")


def may_login_in_clear(host: str, start_tls: bool | None) -> bool:
    """Whether a password may go out unencrypted: to a relay on this machine (nothing
    to overhear), or when the SMTP URL says so with `?starttls=false`."""
    if start_tls is False or host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


def _extensions(ehlo_reply: str) -> dict[str, str]:
    """EHLO's answer as {keyword (lower case): parameters}; the first line is the greeting."""
    found: dict[str, str] = {}
    for line in ehlo_reply.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.lower()] = params.strip()
        if keyword.upper().startswith("AUTH="):  # an old form some servers still send
            found.setdefault("auth", keyword[5:] + (" " + params if params else ""))
    return found
