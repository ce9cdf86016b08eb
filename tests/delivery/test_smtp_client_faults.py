"""The SMTP client against servers that misbehave, scripted line by line on 127.0.0.1:
replies nobody asked for, reply codes that are not SMTP, a refused sender, a send
cancelled while its session opens, a channel closed while a send is in flight, and a
password that cannot be sent."""

from __future__ import annotations

import asyncio
import socket
import threading
from functools import partial

import pytest

from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig
from tests.support.smtp_client import send_all as send_all_to

MESSAGE = b"Subject: hello\r\n\r\nbody line\r\n"
EHLO = b"250-test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"


class Peer:
    """One accepted connection, read line by line."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""
        sock.settimeout(5)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes | None:
        """The next line the client sent; None when it closed the connection."""
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def session(self, ehlo: bytes = EHLO) -> None:
        self.send(b"220 test ready\r\n")
        assert (self.line() or b"").startswith(b"EHLO")
        self.send(ehlo)

    def transaction(self, final: bytes = b"250 2.0.0 queued\r\n") -> tuple[bytes, bytes]:
        """MAIL, RCPT and DATA accepted; returns (recipient, message) once `final` is sent."""
        mail, rcpt, data = self.line(), self.line(), self.line()
        assert mail and mail.startswith(b"MAIL FROM:") and rcpt and data == b"DATA", (mail, rcpt)
        self.send(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
        lines = []
        while (line := self.line()) != b".":
            if line is None:
                raise ConnectionError("the client hung up in the message")
            lines.append(line)
        self.send(final)
        return rcpt[len(b"RCPT TO:<") : -1], b"\r\n".join(lines) + b"\r\n"


class ScriptedServer:
    """Runs `script(peer, n)` for the n-th connection (from 0), each in its own thread;
    what the scripts return is collected in `results` by connection number."""

    def __init__(self, script):
        self.script, self.results, self.threads = script, {}, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        n = 0
        while True:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._run, args=(sock, n), daemon=True)
            self.threads.append(thread)
            thread.start()
            n += 1

    def _run(self, sock: socket.socket, n: int) -> None:
        with sock:
            try:
                self.results[n] = self.script(Peer(sock), n)
            except (OSError, AssertionError) as exc:
                self.results[n] = exc

    def url(self, userinfo: str = "") -> str:
        return f"smtp://{userinfo}127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()
        for thread in self.threads:
            thread.join(10)


# every send of this file: its sender and message, and a shorter timeout
send_all = partial(send_all_to, sender="s@example.org", message=MESSAGE, timeout=5.0)


@pytest.mark.parametrize(
    "unasked",
    [b"250 2.0.0 queued again\r\n", b"421 4.4.2 idle too long, closing soon\r\n"],
    ids=["a second 250", "421 while idle"],
)
def test_a_reply_nobody_asked_for_is_never_read_as_the_next_transactions(unasked):
    """A stray reply on a kept-open connection shifted every later reply by one: the next
    MAIL read it, DATA read RCPT's 250, and a good address failed for good (suppressed)
    while the server, which had said 354, took the next commands for message text."""

    def script(peer: Peer, n: int):
        peer.session()
        got = [peer.transaction(b"250 2.0.0 queued\r\n" + (unasked if n == 0 else b""))]
        while line := peer.line():  # a server that otherwise answers what it is asked
            if line == b"QUIT":
                peer.send(b"221 bye\r\n")
                break
            peer.buffer = line + b"\r\n" + peer.buffer
            got.append(peer.transaction())
        return got

    server = ScriptedServer(script)
    try:
        results = send_all(server.url(), ["a@example.com", "b@example.com", "c@example.com"])
    finally:
        server.close()
    assert results == ["2.0.0 queued"] * 3
    delivered = [rcpt for got in server.results.values() for rcpt, _ in got]
    assert sorted(delivered) == [b"a@example.com", b"b@example.com", b"c@example.com"]


@pytest.mark.parametrize(
    "final, outcome",
    [
        (b"999 what\r\n", TemporaryDeliveryError),
        (b"25\r\n", TemporaryDeliveryError),
        (b"251 2.1.5 accepted, will forward\r\n", str),
    ],
)
def test_the_final_reply_is_judged_by_its_class(final, outcome):
    """RFC 5321 4.2.1: 2yz is done; a code outside 2yz-5yz is no SMTP reply, the server's
    fault. Both used to fail the row for good and suppress a good address."""

    def script(peer: Peer, n: int):
        peer.session()
        return [peer.transaction(final)]

    server = ScriptedServer(script)
    try:
        results = send_all(server.url(), ["a@example.com"])
    finally:
        server.close()
    assert isinstance(results[0], outcome), results[0]


def test_a_refused_sender_says_nothing_about_the_recipient():
    """A relay refusing MAIL FROM (unknown sender domain, not a verified sender) fails
    the message; it must not suppress the reader's address (every reader's, in a run)."""

    def script(peer: Peer, n: int):
        peer.session()
        for _ in range(3):  # MAIL, RCPT, DATA
            peer.line()
        peer.send(
            b"550 5.1.0 <s@example.org>: Sender address rejected: Domain not found\r\n"
            b"503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n"
        )
        return peer.line()

    server = ScriptedServer(script)
    try:
        results = send_all(server.url(), ["a@example.com"])
    finally:
        server.close()
    assert isinstance(results[0], PermanentDeliveryError) and results[0].code == 550
    assert not results[0].suppress


def client_hung_up(peer: Peer) -> bool:
    """Whether the client closed the connection (True) or left it open (False)."""
    try:
        while line := peer.line():
            if line == b"QUIT":
                peer.send(b"221 bye\r\n")
        return True
    except TimeoutError:
        return False
    except ConnectionError:  # closed with unread data: a reset
        return True


def test_a_send_cancelled_while_its_session_opens_leaves_no_connection_open():
    """The half-opened connection stayed open (with its watchdog) until the server
    dropped it."""
    greeted = threading.Event()

    def script(peer: Peer, n: int):
        greeted.wait(5)
        try:
            peer.send(b"220 test ready\r\n")
        except ConnectionError:
            return True
        return client_hung_up(peer)

    server = ScriptedServer(script)

    async def go():
        channel = SmtpChannel(SmtpConfig.from_url(server.url(), timeout=10), connections=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                channel.send(sender="s@example.org", recipient="a@example.com", message=MESSAGE),
                0.2,
            )
        greeted.set()
        await asyncio.to_thread(server.close)  # while this loop still runs
        await channel.aclose()

    asyncio.run(go())
    assert server.results == {0: True}


def test_a_send_that_ends_after_aclose_does_not_leave_its_connection_open():
    final_allowed = threading.Event()

    def script(peer: Peer, n: int):
        peer.session()
        for _ in range(3):  # MAIL, RCPT, DATA
            peer.line()
        peer.send(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        while peer.line() not in (b".", None):
            pass
        final_allowed.wait(5)
        peer.send(b"250 2.0.0 queued\r\n")
        return client_hung_up(peer)

    server = ScriptedServer(script)

    async def go():
        channel = SmtpChannel(SmtpConfig.from_url(server.url(), timeout=10), connections=1)
        send = asyncio.create_task(
            channel.send(sender="s@example.org", recipient="a@example.com", message=MESSAGE)
        )
        await asyncio.sleep(0)
        while not server.threads:
            await asyncio.sleep(0.01)
        await channel.aclose()  # the send is in flight
        final_allowed.set()
        assert await send == "2.0.0 queued"
        await asyncio.to_thread(server.close)  # while this loop still runs

    asyncio.run(go())
    assert server.results == {0: True}


def test_a_password_never_shows_in_errors_or_the_configuration():
    """A password read from a non-UTF-8 environment cannot be encoded; the error used
    to carry it whole (UnicodeEncodeError's repr), into the attempts and the log."""

    def script(peer: Peer, n: int):
        peer.session(b"250-test\r\n250 AUTH PLAIN LOGIN\r\n")
        return peer.line()

    server = ScriptedServer(script)
    try:
        url = server.url("brief:TopSecret\udcff@")
        assert "TopSecret" not in repr(SmtpConfig.from_url(url))
        results = send_all(url, ["a@example.com"])
    finally:
        server.close()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "TopSecret" not in str(results[0]) and "password" in str(results[0])
