"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives.

Behaviour can be scripted per recipient: a list of replies to give on successive
deliveries ("451 ...", "550 ...", "drop" to cut the connection, "250" to accept).
"""

from __future__ import annotations

import email
import email.policy
import random
import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class Recorder:
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)
    # (probability of a 4xx, probability of a dropped connection), decided per message
    chaos: tuple[float, float] | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(1234))

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # like Postfix and most relays (aiosmtpd reads pipelined commands in order anyway)
        session.host_name = hostname
        responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0].lower()
        with self.lock:
            self.attempts[rcpt] += 1
            plan = self.script.get(rcpt)
            reply = plan.pop(0) if plan else "250"
            if not plan and self.chaos:
                roll = self.rng.random()
                if roll < self.chaos[1]:
                    reply = "drop"
                elif roll < self.chaos[0] + self.chaos[1]:
                    reply = "451 4.3.0 please try again later"
        if reply == "drop":
            server.transport.close()
            return "421 4.4.2 connection dropped"
        if not reply.startswith("250"):
            return reply
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content or envelope.content,
                )
            )
        return "250 2.0.0 OK queued"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address.lower() in [a.lower() for a in r.rcpt_tos]]


class SmtpServer:
    """smtputf8=True offers the SMTPUTF8 extension (addresses with a non-ASCII local part)."""

    def __init__(self, *, smtputf8: bool = False):
        self.recorder = Recorder()
        self.port = free_port()
        self.controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            data_size_limit=10_000_000,
            enable_SMTPUTF8=smtputf8,
        )

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
