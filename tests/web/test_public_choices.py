"""Less than "stop everything": stop one topic, change frequency; coming back through
double opt-in after unsubscribing; and the welcome email after confirming."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import get_subscriber, is_suppressed, subscriber_topics
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.web import csrf_of
from tests.support.workers import drain


@pytest.fixture
def client(engine, web_settings):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return TestClient(create_app(settings=web_settings, engine=engine))


def links(engine, settings, email):
    with Session(engine) as s:
        sub = get_subscriber(session=s, email=email)
        return (
            make_token(settings.secret_key, "unsubscribe", sub.id, sub.email),
            make_token(settings.secret_key, "preferences", sub.id, sub.email),
        )


def reader(engine, email):
    with Session(engine) as s:
        sub = get_subscriber(session=s, email=email)
        return sub, [t.slug for t in subscriber_topics(session=s, subscriber=sub)]


def test_stop_just_one_topic(client, engine, web_settings):
    unsub, _ = links(engine, web_settings, "reader.en@example.com")
    page = client.get(f"/u/{unsub}")
    assert page.status_code == 200
    for words in ("Stop just one topic", "Stop Capital", "Change how often", "Stop everything"):
        assert words.replace("&", "&amp;") in page.text or words in page.text, words
    r = client.post(
        f"/u/{unsub}/topic", data={"topic": "capital", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 200
    assert "You will no longer receive Capital" in r.text
    sub, topics = reader(engine, "reader.en@example.com")
    assert sub.status == "active" and topics == ["governance", "hardware", "open-source"]
    # a topic not followed, or without a CSRF token, changes nothing
    assert (
        client.post(
            f"/u/{unsub}/topic", data={"topic": "capital", "csrf_token": csrf_of(page.text)}
        ).status_code
        == 422
    )
    assert client.post(f"/u/{unsub}/topic", data={"topic": "hardware"}).status_code == 403
    assert reader(engine, "reader.en@example.com")[1] == ["governance", "hardware", "open-source"]


def test_the_last_topic_is_not_offered_alone(client, engine, web_settings):
    with Session(engine) as s:
        from newsletter.audience.subscribers import set_topics
        from newsletter.topics.catalogue import topics_by_slug

        sub = get_subscriber(session=s, email="reader.zh@example.com")
        set_topics(session=s, subscriber=sub, topics=topics_by_slug(session=s, slugs=["hardware"]))
        s.commit()
    unsub, _ = links(engine, web_settings, "reader.zh@example.com")
    page = client.get(f"/u/{unsub}")
    assert "只退订某个主题" not in page.text and "全部退订" in page.text
    r = client.post(
        f"/u/{unsub}/topic", data={"topic": "hardware", "csrf_token": csrf_of(page.text)}
    )
    assert r.status_code == 422
    assert reader(engine, "reader.zh@example.com")[1] == ["hardware"]


def test_change_frequency_instead_of_leaving(client, engine, web_settings):
    unsub, _ = links(engine, web_settings, "reader.zh@example.com")
    page = client.get(f"/u/{unsub}")
    assert "调整频率" in page.text
    token = csrf_of(page.text)
    bad = client.post(f"/u/{unsub}/frequency", data={"frequency": "hourly", "csrf_token": token})
    assert bad.status_code == 422
    r = client.post(f"/u/{unsub}/frequency", data={"frequency": "weekly", "csrf_token": token})
    assert r.status_code == 200 and "从现在起你将收到：每周" in r.text
    sub, _ = reader(engine, "reader.zh@example.com")
    assert (sub.status, sub.frequency) == ("active", "weekly")


def test_after_unsubscribing_the_preference_page_offers_to_come_back(
    client, engine, web_settings, smtp_server
):
    unsub, prefs = links(engine, web_settings, "reader.en@example.com")
    done = client.post(f"/u/{unsub}")
    assert "You are unsubscribed" in done.text
    assert "Changed your mind? Subscribe again" in done.text and 'href="/p/' in done.text
    page = client.get(f"/p/{prefs}")
    assert "You are unsubscribed: we send nothing to this address." in page.text
    assert 'id="preferences"' not in page.text  # no form that could not be saved
    r = client.post(f"/p/{prefs}/resubscribe", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "a confirmation link is on its way" in r.text
    sub, topics = reader(engine, "reader.en@example.com")
    assert sub.status == "pending" and len(topics) == 4
    with Session(engine) as s:
        assert is_suppressed(session=s, email="reader.en@example.com")  # until confirmed
    drain(engine, web_settings)
    (mail,) = smtp_server.recorder.to("reader.en@example.com")
    assert mail.message["Subject"] == "Confirm your subscription to the AI Industry Brief"
    link = re.search(
        r"http://127\.0\.0\.1(/confirm/\S+)", mail.message.get_body(("plain",)).get_content()
    )
    path = link.group(1)
    confirm = client.post(path, data={"csrf_token": csrf_of(client.get(path).text)})
    assert confirm.status_code == 200 and "You are subscribed" in confirm.text
    with Session(engine) as s:
        assert get_subscriber(session=s, email="reader.en@example.com").status == "active"
        assert not is_suppressed(session=s, email="reader.en@example.com")
    assert "Waiting" not in client.get(f"/p/{prefs}").text


def test_a_bounced_address_is_not_offered_to_come_back(client, engine, web_settings):
    from newsletter.audience.subscribers import suppress

    unsub, prefs = links(engine, web_settings, "reader.en@example.com")
    client.post(f"/u/{unsub}")
    with Session(engine) as s:
        suppress(session=s, email="reader.en@example.com", reason="bounced")
        s.commit()
    page = client.get(f"/p/{prefs}")
    assert "You are unsubscribed" in page.text and 'id="resubscribe"' not in page.text


def test_confirming_sends_a_welcome_that_says_what_arrives_and_when(
    client, engine, web_settings, smtp_server
):
    token = csrf_of(client.get("/?lang=zh").text)
    client.post(
        "/subscribe?lang=zh",
        data={
            "email": "new.zh@example.com",
            "name": "小明",
            "topics": ["capital", "hardware"],
            "frequency": "weekly",
            "language": "zh",
            "timezone": "Asia/Shanghai",
            "csrf_token": token,
        },
    )
    drain(engine, web_settings)
    (confirm_mail,) = smtp_server.recorder.to("new.zh@example.com")
    path = re.search(
        r"http://127\.0\.0\.1(/confirm/\S+)",
        confirm_mail.message.get_body(("plain",)).get_content(),
    ).group(1)
    form = csrf_of(client.get(path).text)
    assert "欢迎邮件已发出" in client.post(path, data={"csrf_token": form}).text
    client.post(path, data={"csrf_token": form})  # a double click: still one welcome
    drain(engine, web_settings)
    mails = smtp_server.recorder.to("new.zh@example.com")
    assert len(mails) == 2
    welcome = mails[1].message
    assert welcome["Subject"] == "欢迎订阅 AI 产业简报"
    text = welcome.get_body(("plain",)).get_content()
    assert "小明，你好：" in text
    assert "每周简报：每周一 08:00（Asia/Shanghai）。" in text
    assert "你关注的主题：资本与交易、芯片与硬件。" in text
    assert "http://127.0.0.1/u/" in text and "http://127.0.0.1/p/" in text
    html = welcome.get_body(("html",)).get_content()
    assert "每周一 08:00" in html and 'href="http://127.0.0.1/archive?lang=zh"' in html
