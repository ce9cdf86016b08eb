"""Channels: where messages leave the service (SMTP, a file drop, chat webhooks)."""

from newsletter.delivery.channels.base import (
    Channel,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)

__all__ = ["Channel", "PermanentDeliveryError", "TemporaryDeliveryError"]
