"""Drive the SMTP channel by hand: one message to each recipient in turn, on one channel."""

from __future__ import annotations

import asyncio

from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig


def send_all(
    url: str,
    recipients: list[str],
    *,
    sender: str,
    message: bytes,
    connections: int = 1,
    timeout: float = 10,
) -> list:
    """Sends `message` to each recipient in turn; returns each reply or the error raised."""

    async def go():
        channel = SmtpChannel(SmtpConfig.from_url(url, timeout=timeout), connections=connections)
        results = []
        try:
            for rcpt in recipients:
                try:
                    results.append(
                        await channel.send(sender=sender, recipient=rcpt, message=message)
                    )
                except (TemporaryDeliveryError, PermanentDeliveryError) as exc:
                    results.append(exc)
        finally:
            await channel.aclose()
        return results

    return asyncio.run(go())
