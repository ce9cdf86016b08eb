"""The SMTP client against real servers on 127.0.0.1: pipelined and one-by-one
transactions, refused recipients on a connection that stays usable, STARTTLS and
implicit TLS, logins, a kept-open connection the server closed, and servers that stall
or do not speak SMTP."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
from functools import partial

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig
from newsletter.delivery.channels.smtp_client import may_login_in_clear
from tests.support.smtp_client import send_all as send_all_to
from tests.support.smtp_server import free_port

MESSAGE = b"Subject: hello\r\nFrom: brief@example.org\r\n\r\nbody line\r\n"


class Handler:
    """Records what arrives and on which connection; scripted refusals per recipient."""

    def __init__(self, *, pipelining: bool = True):
        self.pipelining = pipelining
        self.received: list[tuple[str, bytes, str]] = []  # (recipient, data, client port)
        self.refuse: dict[str, str] = {}  # recipient -> RCPT reply
        self.close_at_mail: set[int] = set()  # the n-th MAIL (0-based): cut the connection
        self.mails = 0
        self.logins: list[str] = []
        self.slow: dict[str, float] = {}  # recipient -> seconds before the final reply

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        n, self.mails = self.mails, self.mails + 1
        if n in self.close_at_mail:
            server.transport.close()  # as a server that timed the idle connection out
            return "421 4.4.2 closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if envelope.rcpt_tos[0] in self.slow:
            await asyncio.sleep(self.slow[envelope.rcpt_tos[0]])
        port = str(session.peer[1])
        self.received.append((envelope.rcpt_tos[0], envelope.original_content, port))
        return "250 2.0.0 queued"


def start(handler, **kwargs) -> tuple[Controller, int]:
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return controller, port


# every send of this file: its sender and message
send_all = partial(send_all_to, sender="brief@example.org", message=MESSAGE)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_a_refused_recipient_fails_alone_and_the_connection_carries_on(pipelining):
    handler = Handler(pipelining=pipelining)
    handler.refuse["gone@example.com"] = "550 5.1.1 no such user"
    handler.refuse["later@example.com"] = "451 4.2.0 try later"
    controller, port = start(handler)
    try:
        results = send_all(
            f"smtp://127.0.0.1:{port}",
            ["a@example.com", "gone@example.com", "b@example.com", "later@example.com"]
            + ["c@example.com"],
        )
    finally:
        controller.stop()
    assert results[0] == results[2] == results[4] == "2.0.0 queued"
    assert isinstance(results[1], PermanentDeliveryError) and results[1].suppress
    assert results[1].code == 550 and "no such user" in str(results[1])
    assert isinstance(results[3], TemporaryDeliveryError) and results[3].code == 451
    assert [r for r, _, _ in handler.received] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
    ]
    assert all(data == MESSAGE for _, data, _ in handler.received)
    assert len({port for _, _, port in handler.received}) == 1  # one connection throughout


def test_a_connection_the_server_closed_meanwhile_is_replaced_without_losing_the_message():
    handler = Handler()
    handler.close_at_mail = {1}  # the second transaction finds the connection gone
    controller, port = start(handler)
    try:
        results = send_all(f"smtp://127.0.0.1:{port}", ["a@example.com", "b@example.com"])
    finally:
        controller.stop()
    assert results == ["2.0.0 queued", "2.0.0 queued"]
    assert [r for r, _, _ in handler.received] == ["a@example.com", "b@example.com"]
    assert len({port for _, _, port in handler.received}) == 2


def test_a_send_cancelled_midway_never_leaves_its_replies_to_the_next_message():
    """The cancelled transaction's late reply must not be read as the next one's."""
    handler = Handler()
    handler.slow["slow@example.com"] = 1.0
    controller, port = start(handler)

    async def go():
        channel = SmtpChannel(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}"), connections=1)
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    channel.send(
                        sender="b@example.org", recipient="slow@example.com", message=MESSAGE
                    ),
                    0.3,
                )
            return await channel.send(
                sender="b@example.org", recipient="next@example.com", message=MESSAGE
            )
        finally:
            await channel.aclose()

    try:
        assert asyncio.run(go()) == "2.0.0 queued"
        for _ in range(50):  # the slow one may still land: the server had all of it
            if len(handler.received) == 2:
                break
            asyncio.run(asyncio.sleep(0.05))
    finally:
        controller.stop()
    by_recipient = {r: port for r, _, port in handler.received}
    assert "next@example.com" in by_recipient
    assert by_recipient.get("slow@example.com") != by_recipient["next@example.com"]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a test certificate")
    where = tmp_path_factory.mktemp("tls")
    key, cert = where / "key.pem", where / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b"brief" and auth_data.password == b"s3cret:pass"
    if ok:
        server.event_handler.logins.append(mechanism)
    return AuthResult(success=ok, handled=False)  # a refusal gets the 535 reply


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_starttls_and_login_then_delivery(certificate, pipelining):
    handler = Handler(pipelining=pipelining)
    controller, port = start(
        handler,
        tls_context=certificate,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    try:
        url = f"smtp://brief:s3cret%3Apass@127.0.0.1:{port}?verify=false"
        assert send_all(url, ["a@example.com", "b@example.com"]) == ["2.0.0 queued"] * 2
        assert handler.logins == ["PLAIN"]  # one login for the kept-open connection

        wrong = send_all(f"smtp://brief:nope@127.0.0.1:{port}?verify=false", ["c@example.com"])
        assert isinstance(wrong[0], TemporaryDeliveryError)  # fix the setting, rows wait
        assert "refused the session at AUTH" in str(wrong[0]) and wrong[0].code == 535

        # the certificate is checked unless verify=false says otherwise
        checked = send_all(f"smtp://brief:s3cret%3Apass@127.0.0.1:{port}", ["d@example.com"])
        assert isinstance(checked[0], TemporaryDeliveryError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(checked[0])
    finally:
        controller.stop()
    assert [r for r, _, _ in handler.received] == ["a@example.com", "b@example.com"]


def test_implicit_tls(certificate):
    handler = Handler()
    controller, port = start(handler, ssl_context=certificate)
    try:
        results = send_all(f"smtps://127.0.0.1:{port}?verify=false", ["a@example.com"])
    finally:
        controller.stop()
    assert results == ["2.0.0 queued"]
    assert handler.received[0][1] == MESSAGE


def test_starttls_required_by_us_but_not_offered():
    controller, port = start(Handler())
    try:
        results = send_all(f"smtp://127.0.0.1:{port}?starttls=true", ["a@example.com"])
    finally:
        controller.stop()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "does not offer STARTTLS" in str(results[0])


class RawServer:
    """A TCP server on 127.0.0.1 that sends its first line on connecting and each next
    one when the client has sent something, then stays silent."""

    def __init__(self, lines: list[bytes]):
        self.lines = lines
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                todo = list(self.lines)
                conn.sendall(todo.pop(0))
                while not self.stop.is_set():
                    try:
                        if not conn.recv(4096):
                            break
                    except TimeoutError:
                        continue
                    if todo:
                        conn.sendall(todo.pop(0))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_replies_sent_before_starttls_took_effect_are_refused():
    """Text injected in the clear before the TLS handshake must not pass for the server's
    answers inside TLS."""
    server = RawServer(
        [b"220 hi\r\n", b"250-hi\r\n250 STARTTLS\r\n", b"220 go ahead\r\n250 injected\r\n"]
    )
    try:
        results = send_all(f"smtp://127.0.0.1:{server.port}?verify=false", ["a@example.com"])
    finally:
        server.close()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "data after agreeing to STARTTLS" in str(results[0])


def test_envelope_addresses_cannot_carry_commands():
    results = send_all("smtp://127.0.0.1:9", ["a@example.com>\r\nRCPT TO:<b@example.com"])
    assert isinstance(results[0], PermanentDeliveryError) and not results[0].suppress
    assert "line break" in str(results[0])


def test_a_server_that_stops_answering_is_a_temporary_failure_after_the_timeout():
    server = RawServer([b"220 hello\r\n", b"250-hi\r\n250 PIPELINING\r\n"])
    try:
        results = send_all(f"smtp://127.0.0.1:{server.port}", ["a@example.com"], timeout=1)
    finally:
        server.close()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "did not answer within 1 s" in str(results[0])


def test_a_server_that_does_not_speak_smtp_is_a_temporary_failure():
    server = RawServer([b"HTTP/1.1 400 Bad Request\r\n\r\n"])
    try:
        results = send_all(f"smtp://127.0.0.1:{server.port}", ["a@example.com"], timeout=2)
    finally:
        server.close()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "not an SMTP reply" in str(results[0])


def test_a_password_goes_out_unencrypted_only_to_this_machine_or_when_allowed():
    assert may_login_in_clear("127.0.0.1", None) and may_login_in_clear("::1", None)
    assert may_login_in_clear("localhost", None)
    assert not may_login_in_clear("mail.example.com", None)  # STARTTLS stripped on the way
    assert not may_login_in_clear("192.0.2.10", None)
    assert may_login_in_clear("mail.example.com", False)  # ?starttls=false: meant so


def test_login_without_tls_to_a_relay_on_this_machine():
    handler = Handler()
    controller, port = start(handler, authenticator=authenticator, auth_require_tls=False)
    try:
        results = send_all(f"smtp://brief:s3cret%3Apass@127.0.0.1:{port}", ["a@example.com"])
    finally:
        controller.stop()
    assert results == ["2.0.0 queued"] and handler.logins == ["PLAIN"]


def test_a_flood_of_replies_nobody_asked_for_ends_the_session():
    server = RawServer([b"220 hi\r\n" + b"250 ok\r\n" * 40])
    try:
        results = send_all(f"smtp://127.0.0.1:{server.port}", ["a@example.com"], timeout=2)
    finally:
        server.close()
    assert isinstance(results[0], TemporaryDeliveryError)
    assert "replies nobody asked for" in str(results[0])
