"""Provider bounce webhooks, end to end: real digests go through the worker to a real SMTP
server, then Amazon SES (through SNS), Postmark, SendGrid and Mailgun report bounces and
complaints for them, signed each provider's way, to the app running on 127.0.0.1; the
tests check who is suppressed, disabled, scored or untouched."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Delivery, Subscriber
from newsletter.delivery.return_path import DELIVERY_HEADER, read_token
from tests.support.env import TEST_SECRET_KEY
from tests.support.providers import CONFIRM_PATH, PEOPLE, Clouds, mailed_site


@pytest.fixture
def clouds():
    c = Clouds()
    yield c
    c.close()


@pytest.fixture
def site(engine, db_url, smtp_server, clouds):
    with mailed_site(engine, db_url, smtp_server, clouds) as s:
        yield s


def delivery_id(site, email) -> int:
    with Session(site.engine) as s:
        sub = s.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one()
        return s.execute(select(Delivery.id).where(Delivery.subscriber_id == sub.id)).scalar_one()


def reader(site, email):
    return site.state()["readers"][email]


def untouched(before, after, *, but: set[str]):
    """Every reader not in `but` is as they were."""
    for email, was in before["readers"].items():
        if email not in but:
            assert after["readers"][email] == was, email


def test_each_message_carries_its_delivery_token_where_each_provider_hands_it_back(site):
    for email, received in site.sent.items():
        message = received.message
        token = str(message[DELIVERY_HEADER])
        named = read_token(TEST_SECRET_KEY, token, max_days=30)
        assert named is not None and named.delivery_id == delivery_id(site, email)
        # the same delivery the return path names
        assert received.mail_from.startswith(f"bounces+{token}@")
        assert json.loads(str(message["X-SMTPAPI"])) == {
            "unique_args": {"newsletter_delivery": token}
        }
        assert json.loads(str(message["X-Mailgun-Variables"])) == {"newsletter_delivery": token}
        assert str(message["X-PM-Metadata-newsletter_delivery"]) == token


def test_ses_through_sns(site, clouds):
    before = site.state()
    confirm = clouds.sns("SubscriptionConfirmation", "You have chosen to subscribe to the topic")
    r = site.post("ses", confirm, {"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert r.status_code == 200, r.text
    assert clouds.server.hits[CONFIRM_PATH] == 1
    assert "confirmed" in r.json()["note"]

    hard = clouds.sns(
        "Notification", clouds.ses_bounce(site.sent["ada@example.com"], "ada@example.com")
    )
    r = site.post("ses", hard)
    assert r.status_code == 200, r.text
    assert r.json()["received"] == 1
    assert r.json()["results"][0].startswith("hard for ada@example.com (delivery ")
    assert reader(site, "ada@example.com") == ("disabled", 1.0, "bounced")

    # SignatureVersion 1 (SHA-1) still verifies
    complaint = clouds.sns(
        "Notification",
        clouds.ses_complaint(site.sent["li@example.com"], "li@example.com"),
        version="1",
    )
    assert site.post("ses", complaint).status_code == 200
    assert reader(site, "li@example.com") == ("disabled", 0.0, "complaint")

    soft = clouds.sns(
        "Notification",
        clouds.ses_bounce(site.sent["bo@example.com"], "bo@example.com", "Transient"),
    )
    assert site.post("ses", soft).status_code == 200
    assert reader(site, "bo@example.com") == ("active", 0.5, None)

    # SNS delivers a message again (same MessageId): nothing more happens
    again = site.post("ses", hard)
    assert again.status_code == 200
    assert again.json()["results"] == ["duplicate: already processed, nothing done"]
    after = site.state()
    assert after["bounces"] == 3
    untouched(before, after, but={"ada@example.com", "li@example.com", "bo@example.com"})
    assert clouds.server.hits[CONFIRM_PATH] == 1


def test_ses_bounce_is_mapped_by_the_return_path_alone(site, clouds):
    """Headers truncated by SES: the envelope sender (our VERP) still names the delivery."""
    notice = json.loads(clouds.ses_bounce(site.sent["kim@example.com"], "someone-else@example.net"))
    notice["mail"]["headers"], notice["mail"]["headersTruncated"] = [], True
    r = site.post("ses", clouds.sns("Notification", json.dumps(notice)))
    assert r.status_code == 200
    assert reader(site, "kim@example.com") == ("disabled", 1.0, "bounced")


def test_postmark(site, clouds):
    before = site.state()
    body = clouds.postmark_bounce(site.sent["mei@example.com"], "mei@example.com", ident=101)
    r = site.post("postmark", body, {"Content-Type": "application/json"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert site.post("postmark", body, clouds.postmark_auth(password="wrong")).status_code == 401
    assert site.state() == before

    r = site.post("postmark", body, clouds.postmark_auth())
    assert r.status_code == 200, r.text
    assert reader(site, "mei@example.com") == ("disabled", 1.0, "bounced")

    complaint = clouds.postmark_bounce(
        site.sent["ola@example.com"], "ola@example.com", "SpamComplaint", ident=102
    )
    assert site.post("postmark", complaint, clouds.postmark_auth()).status_code == 200
    assert reader(site, "ola@example.com") == ("disabled", 0.0, "complaint")

    soft = clouds.postmark_bounce(
        site.sent["zed@example.com"], "zed@example.com", "SoftBounce", ident=103
    )
    assert site.post("postmark", soft, clouds.postmark_auth()).status_code == 200
    assert reader(site, "zed@example.com") == ("active", 0.5, None)

    # Postmark retries a webhook it thinks failed: the same ID counts once
    r = site.post("postmark", soft, clouds.postmark_auth())
    assert r.json()["results"] == ["duplicate: already processed, nothing done"]
    assert reader(site, "zed@example.com") == ("active", 0.5, None)

    # a delivery or open record is not a bounce: taken and ignored
    opened = json.dumps({"RecordType": "Open", "ID": 104, "Recipient": "kim@example.com"})
    r = site.post("postmark", opened.encode(), clouds.postmark_auth())
    assert r.status_code == 200 and r.json()["ignored"] == 1
    untouched(before, site.state(), but={"mei@example.com", "ola@example.com", "zed@example.com"})


def test_without_a_token_the_address_decides_only_if_we_mailed_it(site, clouds, engine):
    """No metadata came back: the recipient is matched to a reader we sent mail to."""
    body = clouds.postmark_bounce(None, "Ada@Example.com", ident=201)
    assert site.post("postmark", body, clouds.postmark_auth()).status_code == 200
    assert reader(site, "ada@example.com") == ("disabled", 1.0, "bounced")

    before = site.state()
    stranger = clouds.postmark_bounce(None, "stranger@example.org", ident=202)
    r = site.post("postmark", stranger, clouds.postmark_auth())
    assert r.status_code == 200
    assert "no delivery of ours matches" in r.json()["results"][0]
    after = site.state()
    assert after["readers"] == before["readers"]
    assert after["bounces"] == before["bounces"] + 1  # recorded, nothing done


def test_sendgrid_batch(site, clouds):
    before = site.state()
    sent = site.sent
    events = [
        clouds.sendgrid_event(sent["ada@example.com"], "ada@example.com", "processed"),
        clouds.sendgrid_event(sent["ada@example.com"], "ada@example.com", "bounce",
                              type="bounce", status="5.1.1", reason="550 5.1.1 unknown user"),
        clouds.sendgrid_event(sent["li@example.com"], "li@example.com", "bounce",
                              type="blocked", status="4.7.1", reason="try again later"),
        clouds.sendgrid_event(sent["bo@example.com"], "bo@example.com", "spamreport"),
        clouds.sendgrid_event(sent["mei@example.com"], "mei@example.com", "delivered"),
        clouds.sendgrid_event(sent["ola@example.com"], "ola@example.com", "dropped",
                              reason="Bounced Address"),
        clouds.sendgrid_event(sent["kim@example.com"], "kim@example.com", "dropped",
                              reason="Unsubscribed Address"),
        "not an event",
    ]  # fmt: skip
    headers, body = clouds.sendgrid(events)
    r = site.post("sendgrid", body, headers)
    assert r.status_code == 200, r.text
    assert r.json()["received"] == 4 and r.json()["ignored"] == 4
    assert reader(site, "ada@example.com") == ("disabled", 1.0, "bounced")
    assert reader(site, "li@example.com") == ("active", 0.5, None)
    assert reader(site, "bo@example.com") == ("disabled", 0.0, "complaint")
    assert reader(site, "ola@example.com") == ("disabled", 1.0, "bounced")
    untouched(before, site.state(), but={"ada@example.com", "li@example.com", "bo@example.com",
                                         "ola@example.com"})  # fmt: skip

    # SendGrid retries the batch, freshly signed: every event is known already
    headers, body = clouds.sendgrid(events)
    after = site.state()
    r = site.post("sendgrid", body, headers)
    assert r.status_code == 200
    assert set(r.json()["results"]) == {"duplicate: already processed, nothing done"}
    assert site.state() == after


def test_mailgun(site, clouds):
    before = site.state()
    sent = site.sent
    r = site.post("mailgun", clouds.mailgun(sent["kim@example.com"], "kim@example.com"))
    assert r.status_code == 200, r.text
    assert reader(site, "kim@example.com") == ("disabled", 1.0, "bounced")

    temporary = clouds.mailgun(sent["zed@example.com"], "zed@example.com", severity="temporary")
    assert site.post("mailgun", temporary).status_code == 200
    assert reader(site, "zed@example.com") == ("active", 0.5, None)

    complained = clouds.mailgun(sent["ola@example.com"], "ola@example.com", "complained")
    assert site.post("mailgun", complained).status_code == 200
    assert reader(site, "ola@example.com") == ("disabled", 0.0, "complaint")

    delivered = clouds.mailgun(sent["mei@example.com"], "mei@example.com", "delivered")
    r = site.post("mailgun", delivered)
    assert r.status_code == 200 and r.json() == {"received": 0, "ignored": 1, "results": []}
    untouched(before, site.state(), but={"kim@example.com", "zed@example.com", "ola@example.com"})
    metrics = httpx.get(site.url + "/metrics").text
    assert 'newsletter_bounce_webhooks_total{provider="mailgun",status="200"}' in metrics


def test_webhooks_are_not_in_the_openapi_document_and_answer_json(site):
    schema = httpx.get(site.url + "/openapi.json", timeout=30).json()
    assert not [p for p in schema["paths"] if p.startswith("/webhooks/")]
    r = httpx.get(site.url + "/webhooks/bounces/ses")
    assert r.status_code == 405
    assert r.headers["content-type"].startswith("application/json")


def test_readers_and_people_are_as_planned(site):
    assert set(site.state()["readers"]) == set(PEOPLE)
