"""Amazon SES bounce and complaint notifications, delivered by SNS.

Every SNS message is signed (RSA; SignatureVersion 1 with SHA-1, 2 with SHA-256) over a
string built from some of its fields, with the key of a certificate SNS names in
`SigningCertURL`. The certificate is fetched only over HTTPS from an
`sns.<region>.amazonaws.com` host (or a prefix set in NEWSLETTER_BOUNCE_SNS_CERT_URLS),
never following a redirect, and kept in memory. Anyone can create an SNS topic and have
SNS sign messages for it, so a message is taken only from a topic listed in
NEWSLETTER_BOUNCE_SES_TOPIC_ARNS, and a subscription is confirmed (its SubscribeURL
fetched) only for such a topic.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from newsletter.core.public_keys import load_certificate, rsa_valid
from newsletter.core.settings import Settings
from newsletter.delivery.return_path import DELIVERY_HEADER, split_local
from newsletter.feedback.parse import Parsed
from newsletter.feedback.providers.base import (
    Batch,
    Event,
    Refused,
    address,
    check_age,
    json_body,
    message_id,
    obj,
    text,
    tokens,
)

log = logging.getLogger("newsletter.feedback")

# sns.<region>: the region's shape (us-east-1, us-gov-west-1, cn-north-1), so that no
# other Amazon host fits, such as sns.s3.amazonaws.com, which serves anyone's S3 bucket "sns"
_AWS_HOST = re.compile(r"sns\.[a-z]{2}(-[a-z]{1,20}){1,3}-[0-9]{1,2}\.amazonaws\.com(\.cn)?")
# the fields signed, in order, by message type (absent optional ones are left out)
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),  # fmt: skip
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),  # fmt: skip
}
MAX_CERT_BYTES = 64 * 1024
FUTURE_SKEW = dt.timedelta(minutes=5)
_certs: dict[str, x509.Certificate] = {}
_certs_lock = threading.Lock()


def string_to_sign(message: Mapping[str, object]) -> bytes:
    """`name\\nvalue\\n` for each signed field present, in the documented order."""
    fields = SIGNED_FIELDS[str(message.get("Type"))]
    out = []
    for name in fields:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


def trusted_url(settings: Settings, url: object) -> bool:
    """An https://sns.<region>.amazonaws.com URL, or one under a configured prefix."""
    if not isinstance(url, str) or len(url) > 2000:
        return False
    if any(url.startswith(prefix) for prefix in settings.bounce_sns_cert_urls):
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and port in (None, 443)
        and "@" not in parts.netloc
        and bool(_AWS_HOST.fullmatch(parts.hostname or ""))
    )


def certificate(settings: Settings, url: str) -> x509.Certificate:
    with _certs_lock:
        cached = _certs.get(url)
    if cached is not None:
        return cached
    try:
        with (
            httpx.Client(timeout=10, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise Refused(403, f"the signing certificate answered {response.status_code}")
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_CERT_BYTES:
                    raise Refused(403, "the signing certificate is too large")
    except httpx.HTTPError as exc:
        # not the sender's fault as far as we know: let SNS try again later
        raise Refused(503, f"the signing certificate could not be fetched ({exc})") from exc
    try:
        cert = load_certificate(data)
    except ValueError as exc:
        raise Refused(403, f"the signing certificate cannot be read ({exc})") from exc
    with _certs_lock:
        if len(_certs) >= 32:
            _certs.clear()
        _certs[url] = cert
    return cert


def verify(settings: Settings, message: Mapping[str, object], now: dt.datetime) -> None:
    """Signature, certificate and topic of one SNS message; Refused saying what is wrong."""
    kind = message.get("Type")
    if kind not in SIGNED_FIELDS:
        raise Refused(400, f"not an SNS message type we know ({str(kind)[:40]!r})")
    missing = [
        name
        for name in (*SIGNED_FIELDS[str(kind)], "Signature", "SigningCertURL")
        if name != "Subject" and not isinstance(message.get(name), str)
    ]
    if missing:
        raise Refused(400, f"SNS message without {', '.join(missing)}")
    if message["TopicArn"] not in settings.bounce_ses_topic_arns:
        raise Refused(403, f"topic {str(message['TopicArn'])[:200]} is not configured")
    version = message.get("SignatureVersion")
    if version not in ("1", "2"):
        raise Refused(403, f"unknown SNS signature version {str(version)[:10]!r}")
    cert_url = str(message["SigningCertURL"])
    if not trusted_url(settings, cert_url):
        raise Refused(403, "the signing certificate is not on an Amazon SNS host")
    try:
        signature = base64.b64decode(str(message["Signature"]), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused(403, "the signature is not base64") from exc
    cert = certificate(settings, cert_url)
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise Refused(403, "the signing certificate is not valid now")
    if not rsa_valid(cert, signature, string_to_sign(message), sha256=version == "2"):
        raise Refused(403, "the SNS signature does not match")
    try:
        signed_at = dt.datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00"))
    except ValueError as exc:
        raise Refused(400, "the SNS Timestamp is not a time") from exc
    if signed_at.tzinfo is None:
        signed_at = signed_at.replace(tzinfo=dt.UTC)
    check_age(signed_at, now, dt.timedelta(hours=settings.bounce_sns_max_age_hours), FUTURE_SKEW)


def read(settings: Settings, headers: Mapping[str, str], body: bytes, now: dt.datetime) -> Batch:
    message = json_body(body)
    if not isinstance(message, dict):
        raise Refused(400, "an SNS message is a JSON object")
    verify(settings, message, now)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        return Batch(note=confirm(settings, message))
    if kind == "UnsubscribeConfirmation":
        log.warning("SNS: topic %s unsubscribed this endpoint", message["TopicArn"])
        return Batch(note="unsubscribe confirmation noted")
    try:
        notice = json.loads(str(message["Message"]))
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "the SNS Message is not an SES notification (not JSON)") from exc
    if not isinstance(notice, dict):
        raise Refused(400, "the SNS Message is not an SES notification")
    return Batch(*events_of(str(message["MessageId"]), notice))


def confirm(settings: Settings, message: Mapping[str, object]) -> str:
    url = message.get("SubscribeURL")
    if not trusted_url(settings, url):
        raise Refused(403, "the SubscribeURL is not on an Amazon SNS host")
    try:
        with httpx.Client(timeout=10, follow_redirects=False) as client:
            response = client.get(str(url))
    except httpx.HTTPError as exc:
        raise Refused(503, f"the subscription could not be confirmed ({exc})") from exc
    if response.status_code != 200:
        raise Refused(503, f"confirming the subscription answered {response.status_code}")
    log.info("SNS: subscription to %s confirmed", message["TopicArn"])
    return f"subscription to {message['TopicArn']} confirmed"


def _kind(notice: dict) -> str:
    return str(notice.get("notificationType") or notice.get("eventType") or "")


def events_of(sns_id: str, notice: dict) -> tuple[list[Event], int]:
    """(events, ignored) of an SES notification: one event per recipient."""
    kind = _kind(notice)
    mail = obj(notice.get("mail"))
    tags = _tags(mail)
    common = obj(mail.get("commonHeaders"))
    original = message_id(common.get("messageId"))
    if kind == "Bounce" and isinstance(notice.get("bounce"), dict):
        bounce = notice["bounce"]
        verdict = "hard" if bounce.get("bounceType") == "Permanent" else "soft"
        people = bounce.get("bouncedRecipients")
        what = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
    elif kind == "Complaint" and isinstance(notice.get("complaint"), dict):
        complaint = notice["complaint"]
        verdict = "complaint"
        people = complaint.get("complainedRecipients")
        what = f"complaint ({complaint.get('complaintFeedbackType') or 'unspecified'})"
    else:
        return [], 1
    events = []
    for i, person in enumerate(people if isinstance(people, list) else []):
        if not isinstance(person, dict):
            continue
        diagnostic = " ".join(
            x for x in (text(person.get("status"), 20), text(person.get("diagnosticCode"))) if x
        )
        parsed = Parsed(
            kind=verdict,
            return_tags=list(tags),
            addresses=address(person.get("emailAddress")),
            diagnostic=f"{what} {diagnostic}".strip(),
            original_message_id=original,
        )
        events.append(Event(f"{sns_id}:{i}", parsed))
    return events, 0


def _tags(mail: dict) -> list[str]:
    """Our delivery token: the X-Newsletter-Delivery header SES hands back, or the
    return path (VERP) the message was sent with."""
    found = []
    headers = mail.get("headers")
    for header in headers if isinstance(headers, list) else []:
        if (
            isinstance(header, dict)
            and str(header.get("name", "")).lower() == DELIVERY_HEADER.lower()
        ):
            found += tokens(header.get("value"))
    source = mail.get("source")
    ours = split_local(source) if isinstance(source, str) else None
    if ours and ours[0] == "bounces":
        found += tokens(ours[1])
    return list(dict.fromkeys(found))
