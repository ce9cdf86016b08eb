"""Email message construction: headers in one place, personalised bodies, optional DKIM.

The bytes depend only on the delivery row, its edition and the recipient, so a retry
sends exactly the same message (same Date and Message-ID).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from ..addresses import AddressError, wire_address
from ..models import Delivery, Edition, Subscriber
from ..rendering import personalise
from ..settings import Settings
from ..text import one_line
from ..tokens import make_token

CRLF = "\r\n"


class MessageError(ValueError):
    """A message that must not be built (it would be malformed or unsafe)."""


@dataclass
class BuiltMessage:
    sender: str  # envelope MAIL FROM
    recipient: str
    message_id: str
    data: bytes


@lru_cache(maxsize=1024)
def text_header(name: str, value: str) -> str:
    """One line, or RFC 2047 encoded words (each <= 75 characters) folded at 76 columns.

    A CR/LF can never start a new header, and no line comes near the 998-octet limit.
    """
    value = one_line(value)
    if value.isascii() and "=?" not in value and len(value) + len(name) < 76:
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep=CRLF, maxlinelen=76)


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


@lru_cache(maxsize=4096)
def address_header(name: str, addr: str, header: str = "To") -> str:
    """`name <addr>` for From/To: the domain in A-labels, the name folded like text_header.

    The address is sent as it will be on the wire (see addresses.py); a non-ASCII local
    part stays UTF-8 here, and only an SMTPUTF8 server will be given such a message.
    """
    if any(c in addr for c in '\r\n\x00<>,;" ') or "@" not in addr:
        raise MessageError(f"refusing to put {addr!r} in an address header")
    try:
        wire = wire_address(addr)
    except AddressError as exc:
        raise MessageError(str(exc)) from exc
    name = one_line(name)
    if not name:
        return wire
    if name.isascii() and "=?" not in name and len(header) + len(name) + len(wire) < 70:
        if _SPECIALS.search(name):
            name = '"{}"'.format(name.replace("\\", "\\\\").replace('"', '\\"'))
        return f"{name} <{wire}>"
    raw = name.encode("utf-8")
    if len(raw) <= 45:  # the common case, one base64 encoded word of at most 72 characters
        phrase = f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
    else:
        phrase = Header(name, "utf-8", header_name=header).encode(linesep=CRLF, maxlinelen=76)
    *earlier, last = phrase.split(CRLF)
    used = len(last) + (0 if earlier else len(header) + 2)
    return f"{phrase}{' ' if used + len(wire) + 3 <= 76 else CRLF + ' '}<{wire}>"


def _base64_body(text: str) -> str:
    body = base64.b64encode(text.replace("\r\n", "\n").replace("\n", CRLF).encode("utf-8"))
    return CRLF.join(body[i : i + 76].decode("ascii") for i in range(0, len(body), 76))


def assemble(headers: list[tuple[str, str]], text: str, html: str, *, boundary: str) -> bytes:
    """multipart/alternative bytes: text first, HTML last (the preferred part).

    Built directly rather than through email.message, which costs ~10x more per
    message; the tests parse every message back with the standard library.
    """
    out = [f"{name}: {value}" for name, value in headers]
    out += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
    ]
    for subtype, body in (("plain", text), ("html", html)):
        out += [
            f"--{boundary}",
            f'Content-Type: text/{subtype}; charset="utf-8"',
            "Content-Transfer-Encoding: base64",
            "",
            _base64_body(body),
        ]
    out += [f"--{boundary}--", ""]
    # ASCII but for an SMTPUTF8 recipient's address in To:
    return CRLF.join(out).encode("utf-8")


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


def _envelope(
    settings: Settings, delivery: Delivery, subscriber: Subscriber, subject: str, to_name: str
):
    """From, To, Subject, Date and Message-ID: the same on every retry of a delivery."""
    from_name, from_addr = sender_parts(settings)
    from_header = address_header(from_name, from_addr, "From")
    domain = wire_address(from_addr).rsplit("@", 1)[1]
    digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:20]
    message_id = f"<{delivery.id}.{digest}@{domain}>"
    headers = [
        ("From", from_header),
        ("To", address_header(to_name, subscriber.email)),
        ("Subject", text_header("Subject", subject)),
        ("Date", format_datetime(delivery.created_at)),
        ("Message-ID", message_id),
    ]
    return headers, from_addr, domain, digest, message_id


def build_digest_email(
    *, settings: Settings, delivery: Delivery, edition: Edition, subscriber: Subscriber
) -> BuiltMessage:
    from ..i18n import labels

    headers, from_addr, domain, digest, message_id = _envelope(
        settings, delivery, subscriber, edition.subject, subscriber.name or ""
    )
    links = links_for(settings, subscriber)
    values = {
        "greeting": greeting(subscriber, labels(edition.language)),
        "unsubscribe_url": links["unsubscribe_url"],
        "preferences_url": links["preferences_url"],
        "email": subscriber.email,
    }
    list_unsubscribe = (
        f"<{links['unsubscribe_url']}>, "
        f"<mailto:unsubscribe@{domain}?subject=unsubscribe%20{links['unsubscribe_token']}>"
    )
    headers += [
        ("List-Id", f"{edition.frequency.title()} digest <{edition.frequency}.{domain}>"),
        ("List-Unsubscribe", list_unsubscribe.replace(", ", ",\r\n ")),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Content-Language", edition.language),
    ]
    data = assemble(
        headers,
        personalise(edition.body_text or "", values, html=False),
        personalise(edition.body_html or "", values, html=True),
        boundary=f"=_nl_{digest}",
    )
    data = dkim_sign(settings, data, domain)
    return BuiltMessage(
        sender=from_addr, recipient=subscriber.email, message_id=message_id, data=data
    )


def build_confirm_email(
    *, settings: Settings, env, delivery: Delivery, subscriber: Subscriber
) -> BuiltMessage:
    """The double opt-in message: one link that activates the subscription."""
    import css_inline

    from ..i18n import labels
    from ..web.i18n_web import WEB_LABELS

    lang = subscriber.language if subscriber.language in WEB_LABELS else "en"
    t = {**labels(lang), **CONFIRM_LABELS[lang]}
    token = make_token(settings.secret_key, "confirm", subscriber.id, subscriber.email)
    context = {
        "lang": lang,
        "t": t,
        "subject": t["confirm_subject"],
        "preheader": t["confirm_intro"],
        "confirm_url": f"{settings.base_url.rstrip('/')}/confirm/{token}",
        # the name is not verified yet: greeting or addressing by it would let anyone put
        # their text into a mail sent to someone else's address
        "greeting": t["greeting"],
    }
    headers, from_addr, domain, digest, message_id = _envelope(
        settings, delivery, subscriber, t["confirm_subject"], to_name=""
    )
    headers.append(("Content-Language", lang))
    html = css_inline.inline(env.get_template("email/confirm.html.j2").render(context))
    text = env.get_template("email/confirm.txt.j2").render(context)
    data = dkim_sign(settings, assemble(headers, text, html, boundary=f"=_nl_{digest}"), domain)
    return BuiltMessage(
        sender=from_addr, recipient=subscriber.email, message_id=message_id, data=data
    )


CONFIRM_LABELS = {
    "en": {
        "confirm_subject": "Confirm your subscription to the AI Industry Brief",
        "confirm_intro": "Someone (hopefully you) asked to receive the AI Industry Brief at this address.",
        "confirm_button": "Yes, subscribe me",
        "confirm_ignore": "If this was not you, ignore this email: nothing will be sent.",
    },
    "zh": {
        "confirm_subject": "请确认订阅 AI 产业简报",
        "confirm_intro": "有人（希望是你）用这个邮箱订阅了 AI 产业简报。",
        "confirm_button": "确认订阅",
        "confirm_ignore": "如果不是你本人操作，请忽略本邮件，我们不会再发送任何内容。",
    },
}


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
