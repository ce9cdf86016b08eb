"""Channels: where messages leave the service (SMTP, a file drop, chat webhooks)."""

from .base import Channel, PermanentDeliveryError, TemporaryDeliveryError

__all__ = ["Channel", "PermanentDeliveryError", "TemporaryDeliveryError"]
