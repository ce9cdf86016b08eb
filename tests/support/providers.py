"""The email providers' side of bounce webhooks, played locally: their keys, and payloads
built and signed the way each provider does (SNS's RSA certificate served from a local
HTTP route, SendGrid's ECDSA key, Mailgun's HMAC key, Postmark's Basic credentials).
Only the vendors' clouds are played; the app under test checks everything for real.

Each builder takes what our SMTP server received (`Received`), and hands back only what
the provider would: the custom values it was given in the message's headers, its own
ids, the recipient."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber, suppression_reason
from newsletter.core.models import Bounce, Subscriber
from newsletter.core.settings import Settings
from newsletter.feedback.providers.ses import string_to_sign
from newsletter.pipeline.sample import load_sample
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.http import RouteServer
from tests.support.planning import plan_in
from tests.support.smtp_server import Received, free_port
from tests.support.web import serving
from tests.support.workers import drain

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"
CONFIRM_PATH = "/?Action=ConfirmSubscription&TopicArn=newsletter-bounces&Token=t0k"


def self_signed(key: rsa.RSAPrivateKey, *, days: int = 30) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def header_json(received: Received, name: str) -> dict:
    value = received.message[name]
    return json.loads(str(value)) if value else {}


class Clouds:
    """The four providers. `server` serves the SNS certificate and subscription URL."""

    def __init__(self):
        self.sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # a path of its own: the app keeps certificates by URL for the life of the process
        self.cert_path = f"/SimpleNotificationService-{secrets.token_hex(16)}.pem"
        self.server = RouteServer(
            {
                self.cert_path: (
                    200,
                    {"Content-Type": "application/x-pem-file"},
                    self_signed(self.sns_key).decode(),
                ),
                CONFIRM_PATH: (200, {"Content-Type": "text/xml"}, "<ConfirmSubscriptionResponse/>"),
            }  # fmt: skip
        )
        self.cert_url = self.server.url + self.cert_path
        self.ec_key = ec.generate_private_key(ec.SECP256R1())
        der = self.ec_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.sendgrid_public_key = base64.b64encode(der).decode()
        self.mailgun_key = "key-" + secrets.token_hex(16)
        self.postmark_user, self.postmark_password = "postmark", secrets.token_urlsafe(18)

    def settings(self) -> dict:
        """The settings that turn all four webhooks on, trusting the local certificate."""
        return {
            "bounce_ses_topic_arns": [TOPIC],
            "bounce_sns_cert_urls": [self.server.url + "/"],
            "bounce_postmark_user": self.postmark_user,
            "bounce_postmark_password": self.postmark_password,
            "bounce_sendgrid_public_key": self.sendgrid_public_key,
            "bounce_mailgun_signing_key": self.mailgun_key,
        }

    def close(self):
        self.server.close()

    # --- Amazon SES through SNS -------------------------------------------------------

    def sns(self, kind: str, message: str, *, version: str = "2", when: dt.datetime | None = None,
            topic: str = TOPIC, cert_url: str | None = None, message_id: str | None = None,
            key: rsa.RSAPrivateKey | None = None) -> dict:  # fmt: skip
        """An SNS message as posted to an HTTP endpoint, signed as SNS signs it."""
        when = when or dt.datetime.now(dt.UTC)
        body = {
            "Type": kind,
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url,
        }
        if kind == "Notification":
            body["UnsubscribeURL"] = self.server.url + "/?Action=Unsubscribe"
        else:
            body["Token"] = "t0k"
            body["SubscribeURL"] = self.server.url + CONFIRM_PATH
        return self.sign_sns(body, key=key)

    def sign_sns(self, body: dict, *, key: rsa.RSAPrivateKey | None = None) -> dict:
        algorithm = hashes.SHA256() if body["SignatureVersion"] == "2" else hashes.SHA1()
        signature = (key or self.sns_key).sign(string_to_sign(body), padding.PKCS1v15(), algorithm)
        return {**body, "Signature": base64.b64encode(signature).decode()}

    @staticmethod
    def ses_mail(received: Received) -> dict:
        """The `mail` object of an SES notification: SES hands back the headers it sent."""
        message = received.message
        return {
            "timestamp": "2025-07-31T08:00:00.000Z",
            "source": received.mail_from,
            "messageId": "0100018f-ses-" + uuid.uuid4().hex,
            "destination": list(received.rcpt_tos),
            "headersTruncated": False,
            "headers": [{"name": k, "value": str(v)} for k, v in message.items()],
            "commonHeaders": {
                "messageId": str(message["Message-ID"]),
                "subject": str(message["Subject"]),
            },  # fmt: skip
        }

    def ses_bounce(self, received: Received, recipient: str, bounce_type: str = "Permanent") -> str:
        status = "5.1.1" if bounce_type == "Permanent" else "4.2.2"
        return json.dumps({
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
                "bouncedRecipients": [{"emailAddress": recipient, "action": "failed",
                                       "status": status,
                                       "diagnosticCode": f"smtp; 550 {status} no such user"}],
                "timestamp": "2025-07-31T08:00:05.000Z",
                "feedbackId": "0100018f-" + uuid.uuid4().hex,
            },
            "mail": self.ses_mail(received),
        })  # fmt: skip

    def ses_complaint(self, received: Received, recipient: str) -> str:
        return json.dumps({
            "notificationType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": recipient}],
                          "complaintFeedbackType": "abuse",
                          "feedbackId": "0100018f-" + uuid.uuid4().hex},
            "mail": self.ses_mail(received),
        })  # fmt: skip

    # --- Postmark ---------------------------------------------------------------------

    def postmark_auth(self, user: str | None = None, password: str | None = None) -> dict:
        pair = f"{user or self.postmark_user}:{password or self.postmark_password}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    @staticmethod
    def postmark_bounce(received: Received | None, recipient: str, bounce_type: str = "HardBounce",
                        ident: int = 4323372036854775807) -> bytes:  # fmt: skip
        """A Postmark bounce webhook: the X-PM-Metadata-* headers come back as Metadata."""
        metadata = {}
        if received is not None:
            for name, value in received.message.items():
                if name.lower().startswith("x-pm-metadata-"):
                    metadata[name[len("X-PM-Metadata-") :]] = str(value)
        record = {
            "RecordType": "SpamComplaint" if bounce_type == "SpamComplaint" else "Bounce",
            "MessageStream": "outbound", "ID": ident, "Type": bounce_type,
            "TypeCode": 1, "Name": "Hard bounce", "Tag": "",
            "MessageID": str(uuid.uuid4()), "Metadata": metadata, "ServerID": 23,
            "Description": "The server was unable to deliver your message (ex: unknown user).",
            "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
            "Email": recipient, "From": "brief@news.example.org",
            "BouncedAt": "2025-07-31T08:00:05.9070259Z", "DumpAvailable": False,
            "Inactive": True, "CanActivate": True, "Subject": "AI Brief",
        }  # fmt: skip
        return json.dumps(record).encode()

    # --- SendGrid ---------------------------------------------------------------------

    @staticmethod
    def sendgrid_event(received: Received | None, recipient: str, event: str, **extra) -> dict:
        """One event of a batch: the X-SMTPAPI unique_args come back as top-level keys."""
        args = header_json(received, "X-SMTPAPI").get("unique_args", {}) if received else {}
        smtp_id = str(received.message["Message-ID"]) if received else "<x@sendgrid>"
        return {
            "email": recipient, "timestamp": int(time.time()), "event": event,
            "smtp-id": smtp_id, "sg_event_id": base64.urlsafe_b64encode(
                secrets.token_bytes(16)).decode().rstrip("="),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            **args, **extra,
        }  # fmt: skip

    def sendgrid(self, events: list[dict], *, timestamp: int | None = None,
                 key: ec.EllipticCurvePrivateKey | None = None) -> tuple[dict, bytes]:  # fmt: skip
        """(headers, body) of a signed Event Webhook POST."""
        body = json.dumps(events).encode()
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        signature = (key or self.ec_key).sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        }
        return headers, body

    # --- Mailgun ----------------------------------------------------------------------

    def mailgun(self, received: Received | None, recipient: str, event: str = "failed", *,
                severity: str = "permanent", timestamp: int | None = None,
                key: str | None = None, ident: str | None = None,
                token: str | None = None) -> bytes:  # fmt: skip
        """A Mailgun webhook: X-Mailgun-Variables come back as user-variables."""
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        token = token or secrets.token_hex(25)
        variables = header_json(received, "X-Mailgun-Variables") if received else {}
        message_id = str(received.message["Message-ID"]).strip("<>") if received else "x@mg"
        data = {
            "id": ident or secrets.token_urlsafe(16), "timestamp": float(stamp),
            "event": event, "recipient": recipient, "user-variables": variables,
            "message": {"headers": {"message-id": message_id, "to": recipient}},
        }  # fmt: skip
        if event == "failed":
            data.update({
                "severity": severity, "reason": "bounce" if severity == "permanent" else "generic",
                "delivery-status": {"code": 550 if severity == "permanent" else 452,
                                    "message": "5.1.1 mailbox does not exist",
                                    "description": ""},
            })  # fmt: skip
        mac = hmac.new((key or self.mailgun_key).encode(), (stamp + token).encode(),
                       hashlib.sha256).hexdigest()  # fmt: skip
        return json.dumps(
            {
                "signature": {"timestamp": stamp, "token": token, "signature": mac},
                "event-data": data,
            }  # fmt: skip
        ).encode()


# --- a site that has mailed its readers, with the webhooks on ---------------------------

FROM = "brief@news.example.org"
PEOPLE = {
    "ada@example.com": "governance",
    "li@example.com": "hardware",
    "bo@example.com": "open-source",
    "mei@example.com": "capital",
    "ola@example.com": "governance",
    "zed@example.com": "capital",
    "kim@example.com": "governance",
}


@dataclass
class Site:
    url: str
    settings: Settings
    engine: Engine
    sent: dict[str, Received]  # what our SMTP server received, by recipient
    clouds: Clouds

    def post(self, provider: str, body: bytes | dict, headers: dict | None = None):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        return httpx.post(
            f"{self.url}/webhooks/bounces/{provider}", content=data, headers=headers or {},
            timeout=30,
        )  # fmt: skip

    def state(self) -> dict:
        """Each reader's status, bounce score and suppression, and the bounces recorded."""
        with Session(self.engine) as s:
            readers = {
                sub.email: (sub.status, sub.bounce_score,
                            suppression_reason(session=s, email=sub.email))
                for sub in s.execute(select(Subscriber)).scalars()
            }  # fmt: skip
            bounces = s.execute(select(func.count()).select_from(Bounce)).scalar_one()
        return {"readers": readers, "bounces": bounces}


@contextmanager
def mailed_site(engine, db_url, smtp_server, clouds: Clouds, **overrides) -> Iterator[Site]:
    """Every reader got July's digest through the worker and our SMTP server; the app
    runs on 127.0.0.1 with the providers' webhooks configured (unless overridden)."""
    port = free_port()
    settings = Settings(
        database_url=db_url,
        smtp_url=smtp_server.url,
        base_url=f"http://127.0.0.1:{port}",
        mail_from=f"AI Brief <{FROM}>",
        secret_key=TEST_SECRET_KEY,
        retry_base_seconds=0.02,
        **{**clouds.settings(), **overrides},
    )
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        for email, topics in PEOPLE.items():
            add_subscriber(session=s, sub_in=SubscriberIn(email=email, topics=topics))
        plan_in(s, settings)
        s.commit()
    drain(engine, settings)
    sent = {r.rcpt_tos[0]: r for r in smtp_server.recorder.received}
    assert set(sent) == set(PEOPLE)
    with serving(create_app(settings=settings, engine=engine), port) as server:
        yield Site(server.url, settings, engine, sent, clouds)
