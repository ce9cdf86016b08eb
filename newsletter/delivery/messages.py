"""Email message construction: headers in one place, personalised bodies, optional DKIM.

The bytes depend only on the delivery row, its edition and the recipient, so a retry
sends exactly the same message (same Date and Message-ID).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from html import escape

from newsletter.audience.reader_links import make_token
from newsletter.core.addresses import AddressError, wire_address
from newsletter.core.models import DeliveryRow, Edition, SubscriberRow
from newsletter.core.settings import Settings
from newsletter.core.text import one_line
from newsletter.delivery.channels.base import SmtpReady
from newsletter.delivery.return_path import (
    UNSUBSCRIBE_LOCAL,
    bounce_domain,
    return_path,
    tag_headers,
)
from newsletter.rendering.click_links import reader_ref
from newsletter.rendering.editions import inline_css, split_slots

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


class Body:
    """One text or HTML body, base64-encoded once, with its per-reader slots spliced in.

    A digest edition is the same for thousands of readers but for a few slots (the
    greeting, signed links). Encoding the whole body per message cost more than
    anything else in building it, so the fixed text between the slots is encoded once
    per edition, and per message only the slot values (and the few bytes around them
    needed to keep base64's 3-byte groups whole) are encoded. Lines are at most 76
    characters (RFC 2045); a line next to a slot may be shorter, which decoders ignore.
    Decoded, the body is exactly the filled-in text, with CRLF line endings.
    """

    def __init__(self, text: str, *, html: bool):
        parts = split_slots(_crlf(text))
        self.html = html
        # text, slot name, text, ...; each fixed text with its encoding for each of the
        # three ways the bytes before it can end a base64 group
        self.fixed = [_Fixed(part.encode("utf-8")) for part in parts[::2]]
        self.slots = parts[1::2]

    def encode(self, values: dict[str, str]) -> bytes:
        lines: list[bytes] = []
        pending = b""  # bytes not yet encoded: fewer than 3, or a slot's value
        for i, fixed in enumerate(self.fixed):
            if i:
                value = values.get(self.slots[i - 1], "")
                if value:
                    value = escape(value, quote=True) if self.html else value
                    pending += _crlf(value).encode("utf-8")
            head, middle, tail = fixed.variants[len(pending) % 3]
            pending += head
            if middle:  # pending now ends on a group boundary
                if pending:
                    lines.append(_base64_lines(pending))
                lines.append(middle)
                pending = tail
        if pending:
            lines.append(_base64_lines(pending))
        return b"\r\n".join(lines)


class _Fixed:
    """Fixed bytes of a body, encoded for each length (mod 3) of what comes before:
    (head that completes the previous group, base64 lines of the whole groups, tail)."""

    __slots__ = ("variants",)

    def __init__(self, data: bytes):
        self.variants = []
        for before in range(3):
            start = (3 - before) % 3
            if len(data) < start + 3:  # too short to hold a whole group of its own
                self.variants.append((data, b"", b""))
                continue
            end = start + (len(data) - start) // 3 * 3
            self.variants.append((data[:start], _base64_lines(data[start:end]), data[end:]))


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", CRLF) if "\n" in text else text


def _base64_lines(data: bytes) -> bytes:
    """base64 in lines of 76 characters (the last may be shorter), joined by CRLF."""
    encoded = binascii.b2a_base64(data, newline=False)
    if len(encoded) <= 76:
        return encoded
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)])


@lru_cache(maxsize=256)
def edition_body(text: str, html: bool) -> Body:
    """Bodies of the editions being sent, encoded once per process."""
    return Body(text, html=html)


def assemble(
    headers: list[tuple[str, str]],
    text: str | Body,
    html: str | Body,
    *,
    boundary: str,
    values=None,
) -> bytes:
    """multipart/alternative bytes: text first, HTML last (the preferred part).

    Built directly rather than through email.message, which costs ~10x more per
    message; the tests parse every message back with the standard library. Bodies are
    base64 lines, so once the headers are checked the bytes are known to have CRLF line
    endings only and no line starting with a dot: the SMTP channel sends them as they are.
    """
    out = [f"{name}: {value}" for name, value in headers]
    out += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
    ]
    ready = smtp_clean(CRLF.join(out))
    # ASCII but for an SMTPUTF8 recipient's address in To:
    lines = [line.encode("utf-8") for line in out]
    for subtype, body in (("plain", text), ("html", html)):
        if isinstance(body, str):
            body = Body(body, html=subtype == "html")
        lines += [
            f"--{boundary}".encode("ascii"),
            f'Content-Type: text/{subtype}; charset="utf-8"'.encode("ascii"),
            b"Content-Transfer-Encoding: base64",
            b"",
            body.encode(values or {}),
        ]
    lines += [f"--{boundary}--".encode("ascii"), b""]
    data = b"\r\n".join(lines)
    return SmtpReady(data) if ready else data


def smtp_clean(text: str) -> bool:
    """CRLF line endings only, and no line starting with a dot (for short texts: headers)."""
    return (
        text.count("\r") == text.count("\n") == text.count(CRLF)
        and not text.startswith(".")
        and "\n." not in text
    )


def sender_parts(settings: Settings) -> tuple[str, str]:
    return _sender_parts(settings.mail_from)


@lru_cache(maxsize=16)
def _sender_parts(mail_from: str) -> tuple[str, str]:
    name, addr = parseaddr(mail_from)
    if "@" not in addr:
        raise MessageError(f"NEWSLETTER_MAIL_FROM needs an address, got {mail_from!r}")
    return one_line(name), addr


def links_for(settings: Settings, subscriber: SubscriberRow) -> dict[str, str]:
    base = settings.base_url.rstrip("/")
    unsub = make_token(settings.secret_key, "unsubscribe", subscriber.id, subscriber.email)
    prefs = make_token(settings.secret_key, "preferences", subscriber.id, subscriber.email)
    return {
        "unsubscribe_url": f"{base}/u/{unsub}",
        "preferences_url": f"{base}/p/{prefs}",
        "unsubscribe_token": unsub,
    }


def greeting(subscriber: SubscriberRow, labels: dict[str, str]) -> str:
    name = one_line(subscriber.name or "")
    return labels["greeting_named"].format(name=name) if name else labels["greeting"]


@lru_cache(maxsize=64)
def _date_header(when) -> str:
    """A plan's rows share their creation time: formatted once."""
    return format_datetime(when)


def sender_name(settings: Settings, language: str) -> str:
    """The From display name in the reader's language: NEWSLETTER_MAIL_FROM_NAME_ZH for
    Chinese readers, else the brand's Chinese name when the From name is the shipped
    English brand, else the From name as configured."""
    from newsletter.rendering.labels import LABELS

    name, _addr = sender_parts(settings)
    if language != "zh":
        return name
    if settings.mail_from_name_zh:
        return one_line(settings.mail_from_name_zh)
    return LABELS["zh"]["brand"] if name in ("", LABELS["en"]["brand"]) else name


def list_id(settings: Settings, language: str, frequency: str, domain: str) -> str:
    """`List-Id: <phrase> <frequency.domain>` (RFC 2919), the phrase in the reader's language."""
    from newsletter.rendering.labels import labels

    t = labels(language)
    kind = t.get(f"digest.{frequency}", frequency)
    name = sender_name(settings, language) or t["brand"]
    phrase = f"{name} · {kind}" if language == "zh" else f"{name} - {kind}"
    if phrase.isascii():
        if _SPECIALS.search(phrase):
            phrase = '"{}"'.format(phrase.replace("\\", "").replace('"', ""))
    else:
        phrase = f"=?utf-8?b?{base64.b64encode(phrase.encode('utf-8')).decode('ascii')}?="
    fold = CRLF + " " if len(phrase) + len(domain) + 20 > 76 else " "
    return f"{phrase}{fold}<{frequency}.{domain}>"


def list_unsubscribe(settings: Settings, links: dict[str, str], from_addr: str) -> str:
    """The HTTPS one-click link (RFC 8058); a mailto: as well only when the bounce domain
    is configured, i.e. mail to it reaches `bounces serve`, which acts on it."""
    header = f"<{links['unsubscribe_url']}>"
    if settings.bounce_domain:
        header += (
            f",\r\n <mailto:{UNSUBSCRIBE_LOCAL}@{bounce_domain(settings, from_addr)}"
            f"?subject=unsubscribe%20{links['unsubscribe_token']}>"
        )
    return header


def _envelope(
    settings: Settings,
    delivery: DeliveryRow,
    subscriber: SubscriberRow,
    subject: str,
    to_name: str,
    language: str = "en",
    to: str | None = None,
):
    """From, To, Subject, Date and Message-ID: the same on every retry of a delivery.
    `to` sends it elsewhere than to the reader (a proof to an editor)."""
    _name, from_addr = sender_parts(settings)
    from_name = sender_name(settings, language)
    from_header = address_header(from_name, from_addr, "From")
    domain = wire_address(from_addr).rsplit("@", 1)[1]
    digest = hashlib.sha256(delivery.idempotency_key.encode()).hexdigest()[:20]
    message_id = f"<{delivery.id}.{digest}@{domain}>"
    headers = [
        ("From", from_header),
        # each reader's To is new: a cache would only churn
        ("To", address_header.__wrapped__(to_name, to or subscriber.email)),
        ("Subject", text_header("Subject", subject)),
        ("Date", _date_header(delivery.created_at)),
        ("Message-ID", message_id),
        *tag_headers(settings, delivery.id or 0, delivery.created_at),
    ]
    return headers, from_addr, domain, digest, message_id


def proof_links(settings: Settings) -> dict[str, str]:
    """The links of a proof: they lead to a page saying the link is not valid, so an
    editor clicking one (or a scanner fetching it) unsubscribes nobody."""
    base = settings.base_url.rstrip("/")
    return {
        "unsubscribe_url": f"{base}/u/proof",
        "preferences_url": f"{base}/p/proof",
        "unsubscribe_token": "proof",
    }


def build_digest_email(
    *,
    settings: Settings,
    delivery: DeliveryRow,
    edition: Edition,
    subscriber: SubscriberRow,
    proof_to: str | None = None,
) -> BuiltMessage:
    """A reader's digest; with `proof_to`, the same digest sent to that address instead,
    its reader links inert (`proof_links`) and no mailto: unsubscribe."""
    from newsletter.rendering.labels import labels

    headers, from_addr, domain, digest, message_id = _envelope(
        settings,
        delivery,
        subscriber,
        edition.subject,
        subscriber.name or "",
        edition.language,
        to=proof_to,
    )
    links = proof_links(settings) if proof_to else links_for(settings, subscriber)
    values = {
        "greeting": greeting(subscriber, labels(edition.language)),
        "unsubscribe_url": links["unsubscribe_url"],
        "preferences_url": links["preferences_url"],
        "email": subscriber.email,
    }
    if settings.click_tracking:  # used only by editions made with per-reader clicks on
        values["click_reader"] = "/" + reader_ref(settings.secret_key, delivery.id or 0)
    headers += [
        ("List-Id", list_id(settings, edition.language, edition.frequency, domain)),
        (
            "List-Unsubscribe",
            f"<{links['unsubscribe_url']}>"
            if proof_to
            else list_unsubscribe(settings, links, from_addr),
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Content-Language", edition.language),
    ]
    data = assemble(
        headers,
        edition_body(edition.body_text or "", False),
        edition_body(edition.body_html or "", True),
        boundary=f"=_nl_{digest}",
        values=values,
    )
    data = dkim_sign(settings, data, domain)
    return BuiltMessage(
        sender=return_path(settings, from_addr, delivery.id or 0, delivery.created_at),
        recipient=proof_to or subscriber.email,
        message_id=message_id,
        data=data,
    )


def build_confirm_email(
    *, settings: Settings, env, delivery: DeliveryRow, subscriber: SubscriberRow
) -> BuiltMessage:
    """The double opt-in message: one link that activates the subscription."""
    from newsletter.rendering.labels import LANGUAGES, labels

    lang = subscriber.language if subscriber.language in LANGUAGES else "en"
    t = labels(lang)
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
        settings, delivery, subscriber, t["confirm_subject"], to_name="", language=lang
    )
    headers.append(("Content-Language", lang))
    html = inline_css(env.get_template("email/confirm.html.j2").render(context))
    text = env.get_template("email/confirm.txt.j2").render(context)
    data = dkim_sign(settings, assemble(headers, text, html, boundary=f"=_nl_{digest}"), domain)
    return BuiltMessage(
        sender=return_path(settings, from_addr, delivery.id or 0, delivery.created_at),
        recipient=subscriber.email,
        message_id=message_id,
        data=data,
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
    ready = isinstance(data, SmtpReady) and smtp_clean(signature.decode("ascii"))
    return SmtpReady(signature + data) if ready else signature + data
