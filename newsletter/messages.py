"""Email message construction: headers in one place, personalised bodies, optional DKIM.

The bytes depend only on the delivery row, its edition and the recipient, so a retry
sends exactly the same message (same Date and Message-ID).
"""

from __future__ import annotations

import email.policy
import hashlib
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from .models import Delivery, Edition, Subscriber
from .rendering import personalise
from .settings import Settings
from .text import one_line
from .tokens import make_token

POLICY = email.policy.SMTP.clone(max_line_length=78)


class MessageError(ValueError):
    """A message that must not be built (it would be malformed or unsafe)."""


@dataclass
class BuiltMessage:
    sender: str  # envelope MAIL FROM
    recipient: str
    message_id: str
    data: bytes


def sender_parts(settings: Settings) -> tuple[str, str]:
    name, addr = parseaddr(settings.mail_from)
    if "@" not in addr:
        raise MessageError(f"NEWSLETTER_MAIL_FROM needs an address, got {settings.mail_from!r}")
    return one_line(name), addr


def links_for(settings: Settings, subscriber: Subscriber) -> dict[str, str]:
    base = settings.base_url.rstrip("/")
    unsub = make_token(settings.secret_key, "unsubscribe", subscriber.id, subscriber.email)
    prefs = make_token(settings.secret_key, "preferences", subscriber.id, subscriber.email)
    return {
        "unsubscribe_url": f"{base}/u/{unsub}",
        "preferences_url": f"{base}/p/{prefs}",
        "unsubscribe_token": unsub,
    }


def greeting(subscriber: Subscriber, labels: dict[str, str]) -> str:
    name = one_line(subscriber.name or "")
    return labels["greeting_named"].format(name=name) if name else labels["greeting"]


def build_digest_email(
    *, settings: Settings, delivery: Delivery, edition: Edition, subscriber: Subscriber
) -> BuiltMessage:
    from .i18n import labels

    from_name, from_addr = sender_parts(settings)
    domain = from_addr.rsplit("@", 1)[1]
    links = links_for(settings, subscriber)
    values = {
        "greeting": greeting(subscriber, labels(edition.language)),
        "unsubscribe_url": links["unsubscribe_url"],
        "preferences_url": links["preferences_url"],
        "email": subscriber.email,
    }
    digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:20]
    message_id = f"<{delivery.id}.{digest}@{domain}>"

    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = Address(display_name=from_name, addr_spec=from_addr)
        msg["To"] = Address(
            display_name=one_line(subscriber.name or ""), addr_spec=subscriber.email
        )
        msg["Subject"] = one_line(edition.subject)
    except (ValueError, IndexError) as exc:
        raise MessageError(f"cannot build headers: {exc}") from exc
    msg["Date"] = format_datetime(delivery.created_at)
    msg["Message-ID"] = message_id
    list_id = f"{edition.frequency}.{domain}"
    msg["List-Id"] = f"{one_line(edition.frequency.title())} digest <{list_id}>"
    msg["List-Unsubscribe"] = (
        f"<{links['unsubscribe_url']}>, <mailto:unsubscribe@{domain}?subject=unsubscribe%20{links['unsubscribe_token']}>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Content-Language"] = edition.language
    msg.set_content(
        personalise(edition.body_text or "", values, html=False), cte="quoted-printable"
    )
    msg.add_alternative(
        personalise(edition.body_html or "", values, html=True),
        subtype="html",
        cte="quoted-printable",
    )
    data = msg.as_bytes(policy=POLICY)
    data = dkim_sign(settings, data, domain)
    return BuiltMessage(
        sender=from_addr, recipient=subscriber.email, message_id=message_id, data=data
    )


SIGNED_HEADERS = [
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
]


def dkim_sign(settings: Settings, data: bytes, domain: str) -> bytes:
    """Prepend a DKIM-Signature when a key is configured (covers the one-click headers)."""
    if not settings.dkim_key_file or not settings.dkim_selector:
        return data
    import dkim

    key = settings.dkim_key_file.read_bytes()
    signature = dkim.sign(
        data,
        selector=settings.dkim_selector.encode(),
        domain=(settings.dkim_domain or domain).encode(),
        privkey=key,
        include_headers=SIGNED_HEADERS,
    )
    return signature + data
