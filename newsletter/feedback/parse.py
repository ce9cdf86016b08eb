"""Reading one raw message: is it a bounce, a complaint, an unsubscribe mail, or none?

Standard reports are read field by field: DSNs (RFC 3464, `multipart/report;
report-type=delivery-status`) and ARF complaints (RFC 5965, `report-type=feedback-report`).
Anything else that looks like a bounce goes through flufl.bounce's detectors, which know
the shapes of non-standard bounces (Exim, Postfix, qmail, Yahoo, Exchange, ...). Nothing
here touches the database: the result says what the message claims, `process` decides.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

from newsletter.core.text import one_line
from newsletter.delivery.return_path import split_local

# it logs each detector it runs at INFO, and tracebacks of those that fail
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)


class Unreadable(ValueError):
    """Not a mail message at all (empty, no headers, not text)."""


@dataclass
class Parsed:
    kind: str  # hard|soft|complaint|unsubscribe|delayed|unknown
    # tokens found: return-path tags (bounces+<tag>) and an unsubscribe token
    return_tags: list[str] = field(default_factory=list)
    unsubscribe_token: str | None = None
    addresses: list[str] = field(default_factory=list)  # the failed recipients, as reported
    diagnostic: str = ""
    original_message_id: str | None = None
    defects: int = 0


_UNSUB_SUBJECT = re.compile(r"\s*unsubscribe\s+([A-Za-z0-9_.\-]{10,300})\s*", re.I)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_LINE = re.compile(r"^.*\b[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}\b)?.*$", re.M)
_BODY_MESSAGE_ID = re.compile(r"^Message-ID:\s*(<[^>\s]{1,400}>)", re.I | re.M)
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To", "Cc")


def parse(raw: bytes, envelope_to: tuple[str, ...] = ()) -> Parsed:
    """What a message reports. Raises Unreadable for something that is not a message."""
    if not raw or not raw.strip():
        raise Unreadable("the message is empty")
    msg = email.message_from_bytes(raw)  # compat32: what the detectors expect
    if not msg.keys():
        raise Unreadable("no mail headers found")
    ours = _our_addresses(msg, envelope_to)
    parsed = Parsed(kind="unknown", defects=_defects(msg))
    parsed.return_tags = [tag for base, tag in ours if base == "bounces" and tag]
    content_type = msg.get_content_type()
    report_type = _text(msg.get_param("report-type") or "").lower()
    if content_type == "multipart/report" and report_type == "feedback-report":
        _read_arf(msg, parsed)
    elif content_type == "multipart/report" and report_type == "delivery-status":
        _read_dsn(msg, parsed)
        if not parsed.addresses:
            _read_other(msg, parsed)
    else:
        token = next((tag for base, tag in ours if base == "unsubscribe" and tag), None)
        match = _UNSUB_SUBJECT.fullmatch(one_line(_text(msg.get("Subject"))))
        if match or token or any(base == "unsubscribe" for base, _ in ours):
            parsed.kind = "unsubscribe"
            parsed.unsubscribe_token = match.group(1) if match else token
            return parsed
        _read_other(msg, parsed)
    parsed.diagnostic = one_line(parsed.diagnostic)[:480]
    return parsed


def _text(value) -> str:
    return str(value) if value is not None else ""


def _decoded(part: Message) -> bytes:
    body = part.get_payload(decode=True)
    return body if isinstance(body, bytes) else b""


def _defects(msg: Message) -> int:
    return sum(len(getattr(part, "defects", ())) for part in msg.walk())


def _our_addresses(msg: Message, envelope_to: tuple[str, ...]) -> list[tuple[str, str]]:
    """(`bounces`|`unsubscribe`, tag) of each address of ours the message was sent to;
    the envelope's first (it is what the relay was given), then the headers'."""
    found: list[tuple[str, str]] = []
    candidates = list(envelope_to)
    for name in _ENVELOPE_HEADERS:
        values = [_text(v) for v in msg.get_all(name, [])]
        candidates += [addr for _n, addr in getaddresses(values)]
    for addr in candidates:
        split = split_local(addr)
        if split and split not in found:
            found.append(split)
    return found


def _fields(part: Message) -> list[Message]:
    """The blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):
        return [HeaderParser().parsestr(block.strip() + "\n") for block in payload.split("\n\n")]
    return []


def _original_headers(msg: Message) -> Message | None:
    """The returned message's headers (message/rfc822 or text/rfc822-headers part)."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        elif ctype == "text/rfc822-headers":
            return HeaderParser().parsestr(_decoded(part).decode("utf-8", "replace"))
    return None


def _note_original(msg: Message, parsed: Parsed) -> None:
    original = _original_headers(msg)
    if original is None:
        return
    mid = _text(original.get("Message-ID")).strip()
    parsed.original_message_id = mid or None
    for name in ("Return-Path", "Sender"):
        split = split_local(parseaddr(_text(original.get(name)))[1])
        if split and split[0] == "bounces" and split[1] and split[1] not in parsed.return_tags:
            parsed.return_tags.append(split[1])


def _read_dsn(msg: Message, parsed: Parsed) -> None:
    """RFC 3464: one block per recipient with Action, Status and Diagnostic-Code."""
    _note_original(msg, parsed)
    hard = soft = delayed = False
    for part in msg.walk():
        if part.get_content_type() not in (
            "message/delivery-status",
            "message/global-delivery-status",
        ):
            continue
        for block in _fields(part):
            recipient = _text(block.get("Final-Recipient") or block.get("Original-Recipient"))
            action = _text(block.get("Action")).strip().lower()
            if not recipient or not action:
                continue
            status = _STATUS.search(_text(block.get("Status")))
            code = status.group(1) if status else ""
            if action == "failed" and code != "4":
                hard = True
            elif action == "delayed":
                delayed = True
            elif action == "failed" or code == "4":
                soft = True
            else:
                continue  # delivered, relayed, expanded: not a failure
            parsed.addresses.append(recipient.rpartition(";")[2].strip().strip("<>"))
            diag = _text(block.get("Diagnostic-Code")).partition(";")[2].strip()
            if not parsed.diagnostic:
                code_text = status.group(0) if status else ""
                parsed.diagnostic = diag if code_text in diag else f"{code_text} {diag}".strip()
    parsed.kind = "hard" if hard else "soft" if soft else "delayed" if delayed else "unknown"


def _read_arf(msg: Message, parsed: Parsed) -> None:
    """RFC 5965: the report names the original's envelope sender (our VERP address)."""
    parsed.kind = "complaint"
    _note_original(msg, parsed)
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        for block in _fields(part):
            feedback = _text(block.get("Feedback-Type")).strip().lower()
            if feedback:
                parsed.diagnostic = f"complaint ({feedback})"
            mail_from = parseaddr(_text(block.get("Original-Mail-From")))[1]
            split = split_local(mail_from)
            if split and split[0] == "bounces" and split[1] and split[1] not in parsed.return_tags:
                parsed.return_tags.insert(0, split[1])
            rcpt = parseaddr(_text(block.get("Original-Rcpt-To")))[1]
            if rcpt:
                parsed.addresses.append(rcpt)
    if not parsed.diagnostic:
        parsed.diagnostic = "complaint"


def _read_other(msg: Message, parsed: Parsed) -> None:
    """Non-standard bounces: flufl.bounce's detectors, and the first SMTP reply in the text."""
    temporary, permanent = _detect(msg)
    found = [a.decode("utf-8", "replace") for a in sorted(permanent)]
    found += [a.decode("utf-8", "replace") for a in sorted(temporary) if a not in permanent]
    if not found:
        return
    parsed.kind = "hard" if permanent else "soft"
    parsed.addresses = found
    text = _body_text(msg)
    if parsed.original_message_id is None:
        _note_original(msg, parsed)
    if parsed.original_message_id is None:
        mid = _BODY_MESSAGE_ID.search(text)
        parsed.original_message_id = mid.group(1) if mid else None
    line = _SMTP_LINE.search(text)
    parsed.diagnostic = parsed.diagnostic or (line.group(0).strip() if line else "")


def _detect(msg: Message) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """flufl.bounce's detectors in its order, the first that finds something wins. Run one
    by one because `all_failures` gives up on the whole message (and logs a traceback)
    when any detector chokes on odd input, as some do on a mangled From header."""
    from flufl.bounce import _scan

    detectors = getattr(_scan, "_DETECTORS", None)
    if detectors is None:  # a release that moved it: the library's own loop
        try:
            temporary, permanent = _scan.all_failures(msg)
        except Exception:  # noqa: BLE001 - a detector choking on odd input is not a bounce
            return frozenset(), frozenset()
        return frozenset(temporary), frozenset(permanent)
    for detector in detectors:
        try:
            temporary, permanent = detector().process(msg)
        except Exception:  # noqa: BLE001 - that detector does not apply
            continue
        if temporary or permanent:
            return frozenset(temporary), frozenset(permanent)
    return frozenset(), frozenset()


def _body_text(msg: Message, limit: int = 200_000) -> str:
    out = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            body = _decoded(part)
            try:
                out.append(body[:limit].decode(part.get_content_charset() or "utf-8", "replace"))
            except LookupError:  # a charset Python does not know
                out.append(body[:limit].decode("utf-8", "replace"))
    return "\n".join(out)
