"""`?lang=zh` pages are Chinese throughout: topic descriptions, form errors, and the
400/403/404/410/422 pages."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import get_subscriber, unsubscribe
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.web import csrf_of


@pytest.fixture
def client(engine, web_settings):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return TestClient(create_app(settings=web_settings, engine=engine))


def main_text(html: str) -> str:
    """What a reader sees in the page's main part, tags dropped."""
    main = re.search(r"<main>(.*)</main>", html, re.S).group(1)
    main = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", main, flags=re.S)
    return re.sub(r"<[^>]+>", " ", main)


def assert_chinese(html: str, *allowed: str) -> None:
    text = main_text(html)
    for word in allowed:
        text = text.replace(word, "")
    english = re.findall(r"[A-Za-z]{4,}(?: [A-Za-z]{2,})+", text)
    assert not english, english


def test_topic_descriptions_follow_the_page_language(client):
    zh = client.get("/?lang=zh").text
    assert "法律法规、监管、出口管制、标准与全球 AI 治理。" in zh
    assert "Laws, regulation" not in zh
    assert_chinese(zh, "English", "Asia", "Europe", "America", "Australia", "Sao_Paulo")
    assert "Laws, regulation" in client.get("/?lang=en").text


def test_form_errors_are_in_chinese(client):
    token = csrf_of(client.get("/?lang=zh").text)
    r = client.post(
        "/subscribe?lang=zh",
        data={"email": "not-an-email", "topics": ["capital", "nope"], "csrf_token": token},
    )
    assert r.status_code == 422
    errors = re.search(r'<div class="errors" role="alert">(.*?)</div>\s*<form', r.text, re.S)
    assert "电子邮箱：请输入有效的邮箱地址" in errors.group(1)
    r = client.post(
        "/subscribe?lang=zh",
        data={"email": "ok@example.com", "topics": ["nope"], "csrf_token": token},
    )
    assert r.status_code == 422 and "未知主题：nope" in r.text and "unknown topic" not in r.text
    r = client.post(
        "/subscribe?lang=zh",
        data={"email": "a" * 400 + "@example.com", "topics": ["capital"], "csrf_token": token},
    )
    assert r.status_code == 422 and "电子邮箱：" in r.text
    assert_chinese(r.text)


@pytest.mark.parametrize(
    "method, path, status, words",
    [
        ("get", "/u/garbage?lang=zh", 400, "这个链接无效"),
        ("get", "/p/garbage?lang=zh", 400, "这个链接无效"),
        ("post", "/subscribe?lang=zh", 403, "表单已过期"),
        ("get", "/archive/monthly/2025-06?lang=zh", 404, "往期中没有这一期"),
        ("get", "/archive/monthly/2025-13?lang=zh", 404, "2025-07"),
        ("get", "/archive/feed.rss?topic=%01&lang=zh", 400, "主题须为主题代号"),
        ("get", "/no-such-page?lang=zh", 404, "这个地址没有页面"),
    ],
)
def test_error_pages_are_in_chinese(client, method, path, status, words):
    r = getattr(client, method)(path)
    assert r.status_code == status and words in r.text, r.text
    assert '<html lang="zh">' in r.text and "出了点问题" in r.text and "返回首页" in r.text
    assert_chinese(r.text, "HTTP")


def test_an_old_link_of_a_chinese_reader_gets_a_chinese_410(client, engine, web_settings):
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="reader.zh@example.com")
        unsubscribe(session=s, subscriber=sub)
        s.commit()
        sub.status = "pending"  # they signed up again; an old link would confirm nothing
        s.add(sub)
        s.commit()
        token = make_token(web_settings.secret_key, "preferences", sub.id, sub.email)
    page = client.get(f"/p/{token}")
    assert "等待确认" in page.text and 'id="preferences"' not in page.text
    r = client.post(f"/p/{token}", data={"csrf_token": csrf_of(client.get("/?lang=zh").text)})
    assert r.status_code == 410 and "该订阅当前未生效" in r.text
    assert '<html lang="zh">' in r.text
