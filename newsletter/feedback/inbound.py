"""The inbound SMTP endpoint (aiosmtpd) a relay forwards bounces and unsubscribe mails to.

It takes mail only for our own local parts (`bounces+...`, `unsubscribe...`) at our own
domains, so it can never be used to relay; messages over NEWSLETTER_BOUNCE_MAX_BYTES are
refused during DATA (552). Each message is processed like an imported one, in a thread
(the database must not stop the SMTP loop); a message that cannot be processed gets a
4xx so the relay tries again, and one that is not a bounce is accepted and ignored (so
the relay does not bounce the bounce).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.core.addresses import AddressError, wire_address
from newsletter.core.settings import Settings
from newsletter.delivery.messages import sender_parts
from newsletter.delivery.return_path import bounce_domain, split_local
from newsletter.feedback.process import Result, process_message

log = logging.getLogger("newsletter.feedback")
# aiosmtpd logs every command and address at INFO; what matters is logged here
logging.getLogger("mail.log").setLevel(logging.WARNING)

MAX_RECIPIENTS = 20


def our_domains(settings: Settings) -> set[str]:
    _name, from_addr = sender_parts(settings)
    from_domain = wire_address(from_addr).rsplit("@", 1)[1].lower()
    return {from_domain, bounce_domain(settings, from_addr)}


class BounceHandler:
    """aiosmtpd handler: RCPT decides what we accept, DATA processes the message."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine = engine
        self.settings = settings
        self.domains = our_domains(settings)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        try:
            domain = wire_address(address).rsplit("@", 1)[1].lower()
        except (AddressError, IndexError):
            return "501 5.1.3 bad recipient address"
        if domain not in self.domains:
            log.warning("inbound SMTP: relaying to %s refused", domain)
            return "550 5.7.1 relaying denied"
        if split_local(address) is None:
            return "550 5.1.1 no such mailbox here (bounces and unsubscribe only)"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            result = await asyncio.to_thread(self.process, raw, tuple(envelope.rcpt_tos))
        except Exception:  # noqa: BLE001 - the endpoint stays up; the relay retries
            log.exception("inbound SMTP: processing a message failed")
            return "451 4.3.0 could not process the message now, try again later"
        return f"250 2.0.0 {result.kind}"

    def process(self, raw: bytes, rcpt_tos: tuple[str, ...]) -> Result:
        with Session(self.engine, expire_on_commit=False) as session:
            result = process_message(
                session, self.settings, raw, envelope_to=rcpt_tos, source="smtp"
            )
            session.commit()
        return result


def start(engine: Engine, settings: Settings, host: str = "127.0.0.1", port: int = 2525):
    """A running aiosmtpd Controller (its own thread); call .stop() to end it."""
    from aiosmtpd.controller import Controller

    controller = Controller(
        BounceHandler(engine, settings),
        hostname=host,
        port=port,
        data_size_limit=settings.bounce_max_bytes,
        ready_timeout=10,
    )
    controller.start()
    return controller
