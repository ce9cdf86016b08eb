"""Hostile and broken provider webhooks against the app on 127.0.0.1, after real digests
went out: forged signatures, foreign certificates, stale and future timestamps, unknown
topics, replays, forged delivery tokens, addresses we never mailed, malformed and huge
bodies. Each is refused with a reason and a log line (or taken and ignored), and nothing
is suppressed, scored or recorded by mistake."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from newsletter.core.settings import Settings
from newsletter.feedback.providers import ses
from tests.support.providers import CONFIRM_PATH, Clouds, mailed_site


@pytest.fixture
def clouds():
    c = Clouds()
    yield c
    c.close()


@pytest.fixture
def site(engine, db_url, smtp_server, clouds):
    with mailed_site(engine, db_url, smtp_server, clouds, bounce_webhook_max_bytes=64_000) as s:
        yield s


def refused(r: httpx.Response, status: int, reason: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert reason in r.json()["detail"], r.json()


def logged(caplog, provider: str, status: int) -> int:
    return sum(
        f"bounce webhook {provider} refused ({status})" in rec.getMessage()
        for rec in caplog.records
    )


def test_sns_messages_that_are_not_genuine_change_nothing(site, clouds, caplog):
    caplog.set_level(logging.WARNING, logger="newsletter.feedback")
    before = site.state()
    ada = site.sent["ada@example.com"]
    bounce = clouds.ses_bounce(ada, "ada@example.com")

    tampered = clouds.sns("Notification", bounce)
    tampered["Message"] = clouds.ses_bounce(site.sent["ola@example.com"], "ola@example.com")
    refused(site.post("ses", tampered), 403, "signature does not match")

    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused(site.post("ses", clouds.sns("Notification", bounce, key=stranger_key)), 403,
            "signature does not match")  # fmt: skip

    hits = dict(clouds.server.hits)
    for url in (
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://user@sns.eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        # S3 buckets named "sns" answer at these hosts, with Amazon's certificate: anyone's
        "https://sns.s3.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.s3-eu-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-1.pem",
        clouds.cert_url.replace("127.0.0.1", "localhost"),
    ):
        body = clouds.sns("Notification", bounce, cert_url=url)
        refused(site.post("ses", body), 403, "not on an Amazon SNS host")
    assert clouds.server.hits == hits  # no certificate was fetched from anywhere else
    for host in ("sns.eu-west-1.amazonaws.com", "sns.us-gov-west-1.amazonaws.com",
                 "sns.cn-north-1.amazonaws.com.cn", "sns.ap-southeast-2.amazonaws.com"):  # fmt: skip
        assert ses.trusted_url(site.settings, f"https://{host}/SimpleNotificationService-1.pem")

    other_topic = clouds.sns("Notification", bounce, topic="arn:aws:sns:eu-west-1:666:x\nforged")
    refused(site.post("ses", other_topic), 403, "is not configured")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
    refused(site.post("ses", clouds.sns("Notification", bounce, when=old)), 403, "too long ago")
    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    refused(site.post("ses", clouds.sns("Notification", bounce, when=ahead)), 403, "future")
    refused(site.post("ses", clouds.sns("Notification", bounce, version="3")), 403, "version")
    refused(site.post("ses", clouds.sns("Notification", "not json")), 400, "not an SES")

    unsigned = clouds.sns("Notification", bounce)
    del unsigned["Signature"]
    refused(site.post("ses", unsigned), 400, "without Signature")
    garbled = {**clouds.sns("Notification", bounce), "Signature": "%%%not base64%%%"}
    refused(site.post("ses", garbled), 403, "not base64")
    refused(site.post("ses", b"{not json"), 400, "not JSON")
    refused(site.post("ses", b"[1, 2]"), 400, "JSON object")
    refused(site.post("ses", {"Type": "Gossip"}), 400, "type we know")

    # subscriptions: confirmed only for our topic, and only at an SNS address
    theirs = clouds.sns("SubscriptionConfirmation", "join", topic="arn:aws:sns:eu-west-1:666:x")
    refused(site.post("ses", theirs), 403, "is not configured")
    elsewhere = clouds.sns("SubscriptionConfirmation", "join")
    elsewhere["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"
    refused(site.post("ses", clouds.sign_sns(elsewhere)), 403, "SubscribeURL")
    assert clouds.server.hits.get(CONFIRM_PATH, 0) == 0

    assert site.state() == before
    assert not [r for r in caplog.records if "\n" in r.getMessage()]  # one line each
    assert logged(caplog, "ses", 403) >= 12 and logged(caplog, "ses", 400) >= 5


def test_postmark_without_its_credentials_or_with_a_broken_body_changes_nothing(site, clouds):
    before = site.state()
    body = clouds.postmark_bounce(site.sent["ada@example.com"], "ada@example.com")
    refused(site.post("postmark", body, {"Authorization": "Basic %%%"}), 401, "garbled")
    refused(site.post("postmark", body, {"Authorization": "Bearer x"}), 401, "required")
    refused(site.post("postmark", body, clouds.postmark_auth(user="admin")), 401, "wrong")
    refused(site.post("postmark", b"<xml/>", clouds.postmark_auth()), 400, "not JSON")
    no_id = json.loads(body)
    del no_id["ID"]
    refused(site.post("postmark", json.dumps(no_id).encode(), clouds.postmark_auth()), 400, "ID")
    assert site.state() == before


def test_sendgrid_forged_stale_or_broken_batches_change_nothing(site, clouds, caplog):
    caplog.set_level(logging.WARNING, logger="newsletter.feedback")
    before = site.state()
    event = clouds.sendgrid_event(site.sent["ada@example.com"], "ada@example.com", "bounce",
                                  type="bounce", status="5.1.1")  # fmt: skip
    headers, body = clouds.sendgrid([event])
    refused(site.post("sendgrid", body, {}), 401, "headers are required")
    forged, _ = clouds.sendgrid([event], key=ec.generate_private_key(ec.SECP256R1()))
    refused(site.post("sendgrid", body, forged), 403, "does not match")
    other = clouds.sendgrid_event(site.sent["li@example.com"], "li@example.com", "spamreport")
    refused(site.post("sendgrid", json.dumps([event, other]).encode(), headers), 403,
            "does not match")  # fmt: skip
    bad = {**headers, "X-Twilio-Email-Event-Webhook-Signature": "%%%"}
    refused(site.post("sendgrid", body, bad), 403, "not base64")
    stale_headers, stale = clouds.sendgrid([event], timestamp=int(time.time()) - 3600)
    refused(site.post("sendgrid", stale, stale_headers), 403, "too long ago")
    ahead_headers, ahead = clouds.sendgrid([event], timestamp=int(time.time()) + 3600)
    refused(site.post("sendgrid", ahead, ahead_headers), 403, "future")
    # signed, but not a batch
    h, b = clouds.sendgrid([])
    assert site.post("sendgrid", b, h).json() == {"received": 0, "ignored": 0, "results": []}
    h2, _ = clouds.sendgrid([])
    signed_garbage = b"{garbage"
    stamp = h2["X-Twilio-Email-Event-Webhook-Timestamp"]
    sig = clouds.ec_key.sign(stamp.encode() + signed_garbage, ec.ECDSA(hashes.SHA256()))
    h2["X-Twilio-Email-Event-Webhook-Signature"] = base64.b64encode(sig).decode()
    refused(site.post("sendgrid", signed_garbage, h2), 400, "not JSON")
    assert site.state() == before
    assert logged(caplog, "sendgrid", 403) == 5 and logged(caplog, "sendgrid", 401) == 1


def test_mailgun_forged_stale_replayed_or_mistaken_events_change_nothing(site, clouds):
    before = site.state()
    ada = site.sent["ada@example.com"]
    refused(site.post("mailgun", clouds.mailgun(ada, "ada@example.com", key="key-guessed")), 403,
            "does not match")  # fmt: skip
    stale = clouds.mailgun(ada, "ada@example.com", timestamp=int(time.time()) - 3600)
    refused(site.post("mailgun", stale), 403, "too long ago")
    unsigned = json.loads(clouds.mailgun(ada, "ada@example.com"))
    del unsigned["signature"]
    refused(site.post("mailgun", unsigned), 401, "no Mailgun signature")
    no_data = json.loads(clouds.mailgun(ada, "ada@example.com"))
    no_data["event-data"] = "nope"
    # the signature covers only timestamp and token: still refused, as malformed
    refused(site.post("mailgun", no_data), 400, "without event-data")

    # a delivery token that is not ours: nothing is pinned on the address it names
    forged = json.loads(clouds.mailgun(ada, "ada@example.com"))
    token = forged["event-data"]["user-variables"]["newsletter_delivery"]
    forged["event-data"]["user-variables"]["newsletter_delivery"] = token[:-4] + "aaaa"
    resigned = clouds.mailgun(None, "ada@example.com", ident=forged["event-data"]["id"])
    payload = json.loads(resigned)
    payload["event-data"]["user-variables"] = forged["event-data"]["user-variables"]
    r = site.post("mailgun", payload)
    assert r.status_code == 200
    assert r.json()["results"][0].startswith("refused")

    # an address we never mailed
    r = site.post("mailgun", clouds.mailgun(None, "never@example.net"))
    assert "no delivery of ours matches" in r.json()["results"][0]
    after = site.state()
    assert after["readers"] == before["readers"]
    assert after["bounces"] == before["bounces"] + 2  # both recorded, nothing done

    # the same event replayed with a fresh signature: counted once
    event = clouds.mailgun(site.sent["kim@example.com"], "kim@example.com", ident="evt-1")
    assert site.post("mailgun", event).status_code == 200
    kim = site.state()["readers"]["kim@example.com"]
    assert kim == ("disabled", 1.0, "bounced")
    again = clouds.mailgun(site.sent["kim@example.com"], "kim@example.com", ident="evt-1")
    assert site.post("mailgun", again).json()["results"] == [
        "duplicate: already processed, nothing done"
    ]


def test_a_mailgun_signature_seen_once_cannot_carry_another_event(site, clouds):
    """Mailgun signs only timestamp + token, not the event: whoever sees one signed
    webhook of the account (a log, another endpoint that gets its "delivered" events)
    could put any event under that signature within the time window."""
    before = site.state()
    delivered = json.loads(clouds.mailgun(site.sent["mei@example.com"], "mei@example.com",
                                          "delivered"))  # fmt: skip
    assert site.post("mailgun", delivered).json()["ignored"] == 1
    complaint = json.loads(clouds.mailgun(site.sent["ada@example.com"], "ada@example.com",
                                          "complained"))  # fmt: skip
    complaint["signature"] = delivered["signature"]
    refused(site.post("mailgun", complaint), 403, "already used")
    # Mailgun retrying the very same request is still taken (and changes nothing)
    assert site.post("mailgun", delivered).status_code == 200
    assert site.state()["readers"] == before["readers"]


def test_unknown_provider_and_huge_bodies_are_refused(site, clouds, caplog):
    caplog.set_level(logging.WARNING, logger="newsletter.feedback")
    before = site.state()
    refused(site.post("sparkpost", b"{}"), 404, "known: ses, postmark, sendgrid, mailgun")
    refused(site.post("ses%0Afake%20line", b"{}"), 404, "no bounce webhook")
    big = b'{"RecordType": "Bounce", "Details": "' + b"x" * 70_000 + b'"}'
    refused(site.post("postmark", big, clouds.postmark_auth()), 413, "larger than 64000")

    def chunks():  # no Content-Length: refused as it arrives
        for _ in range(100):
            yield b"x" * 1000

    r = httpx.post(f"{site.url}/webhooks/bounces/mailgun", content=chunks(), timeout=30)
    refused(r, 413, "larger than")
    assert site.state() == before
    assert logged(caplog, "postmark", 413) == 1 and logged(caplog, "sparkpost", 404) == 1
    assert not [r for r in caplog.records if "\n" in r.getMessage()]  # one line each


def test_json_nested_too_deep_is_a_400_not_a_crash(site, clouds):
    before = site.state()
    deep = b"[" * 60_000 + b"]" * 60_000  # under the size limit, deeper than the parser goes
    refused(site.post("mailgun", deep[:60_000]), 400, "not JSON")
    refused(site.post("ses", b'{"a": ' * 5_000 + b"1" + b"}" * 5_000), 400, "not JSON")
    refused(site.post("postmark", deep[:60_000], clouds.postmark_auth()), 400, "not JSON")
    assert site.state() == before


def test_a_provider_not_configured_is_not_answered(engine, db_url, smtp_server, clouds):
    with mailed_site(engine, db_url, smtp_server, clouds, bounce_mailgun_signing_key=None,
                     bounce_ses_topic_arns=[]) as site:  # fmt: skip
        before = site.state()
        refused(site.post("mailgun", clouds.mailgun(None, "ada@example.com")), 404,
                "not configured")  # fmt: skip
        body = clouds.sns("Notification", clouds.ses_bounce(site.sent["ada@example.com"], "x"))
        refused(site.post("ses", body), 404, "not configured")
        assert site.state() == before
        # and its custom values are not added to the messages
        message = site.sent["ada@example.com"].message
        assert message["X-Mailgun-Variables"] is None and message["X-SMTPAPI"] is not None


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("bounce_sendgrid_public_key", "not a key", "not a public key"),
        ("bounce_sendgrid_public_key", "RSA", "not an ECDSA P-256 public key"),
        ("bounce_sns_cert_urls", "ftp://mirror.example/", "not a URL prefix"),
        ("bounce_sns_cert_urls", "https://user@mirror.example/", "not a URL prefix"),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused_at_start(field, value, reason):
    if value == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        value = base64.b64encode(der).decode()
    with pytest.raises(ValidationError, match=reason):
        Settings(**{field: value})
