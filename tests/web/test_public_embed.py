"""The embeddable sign-up form: origin allow-list, honeypot, rate limits, double opt-in,
one answer for every address; and the snippet of docs/embed.md posted from a page on
another 127.0.0.1 port in Chromium."""

import re

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.audience.subscribers import get_subscriber, subscriber_topics
from newsletter.core.models import Subscriber
from newsletter.core.settings import Settings
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.web.app import create_app
from tests.support.env import ROOT
from tests.support.http import RouteServer
from tests.support.workers import drain

PARTNER = "http://partner.example"


@pytest.fixture
def client(engine, web_settings):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    settings = web_settings.model_copy(update={"embed_origins": [PARTNER]})
    return TestClient(create_app(settings=settings, engine=engine))


def post(client, origin=PARTNER, **data):
    headers = {"Origin": origin} if origin else {}
    accept = data.pop("accept", None)
    if accept:
        headers["Accept"] = accept
    return client.post("/subscribe/embed", data=data, headers=headers)


def count(engine):
    with Session(engine) as s:
        return s.execute(select(func.count()).select_from(Subscriber)).scalar_one()


def test_a_listed_site_signs_a_reader_up_through_double_opt_in(
    client, engine, web_settings, smtp_server
):
    r = post(client, email="partner.reader@example.com", topics=["capital"], language="zh")
    assert r.status_code == 200 and "请查收邮件" in r.text
    assert r.headers["access-control-allow-origin"] == PARTNER
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="partner.reader@example.com")
        assert sub.status == "pending" and sub.language == "zh"
        assert [t.slug for t in subscriber_topics(session=s, subscriber=sub)] == ["capital"]
    drain(engine, web_settings)
    (mail,) = smtp_server.recorder.to("partner.reader@example.com")
    assert mail.message["Subject"] == "请确认订阅 AI 产业简报"


def test_no_topics_means_every_topic_and_json_answers_for_scripts(client, engine):
    r = post(client, email="all@example.com", accept="application/json")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="all@example.com")
        assert len(subscriber_topics(session=s, subscriber=sub)) == 4
    bad = post(client, email="nope", accept="application/json")
    assert bad.status_code == 422 and bad.json()["status"] == "error"
    assert "email" in bad.json()["errors"][0]
    unknown = post(client, email="x@example.com", topics=["nope"])
    assert unknown.status_code == 422 and "nope" in unknown.text


def test_the_answer_never_tells_who_subscribes(client, engine, web_settings, smtp_server):
    strip = lambda r: re.sub(r'value="[^"]+"', "", r.text)  # noqa: E731
    known = post(client, email="reader.en@example.com")
    new = post(client, email="someone.new@example.com")
    trapped = post(client, email="bot@example.com", website="http://spam.example")
    assert known.status_code == new.status_code == trapped.status_code == 200
    assert strip(known) == strip(new) == strip(trapped)
    with Session(engine) as s:
        assert get_subscriber(session=s, email="bot@example.com") is None  # the honeypot
        assert get_subscriber(session=s, email="reader.en@example.com").status == "active"
    drain(engine, web_settings)
    assert smtp_server.recorder.to("reader.en@example.com") == []
    assert smtp_server.recorder.to("bot@example.com") == []


def test_other_sites_are_refused(client, engine):
    before = count(engine)
    for origin in ("http://evil.example", "null", "http://partner.example:8080"):
        r = post(client, origin=origin, email="victim@example.com")
        assert r.status_code == 403 and "may not post here" in r.text, origin
    referer = client.post(
        "/subscribe/embed",
        data={"email": "victim@example.com"},
        headers={"Referer": "http://evil.example/page.html"},
    )
    assert referer.status_code == 403
    assert count(engine) == before
    assert (
        client.options("/subscribe/embed", headers={"Origin": "http://evil.example"}).status_code
        == 403
    )
    ok = client.options("/subscribe/embed", headers={"Origin": PARTNER})
    assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == PARTNER
    # the site's own pages may post without being listed
    own = post(client, origin="http://127.0.0.1", email="own.site@example.com")
    assert own.status_code == 200


def test_origins_written_with_their_default_port_or_in_unicode_still_match(engine, web_settings):
    """Browsers send `https://host` (no :443) and IDN hosts in punycode: an operator who
    writes the port, or the host as people read it, is not refused their own form."""
    settings = web_settings.model_copy(
        update={
            "base_url": "http://127.0.0.1:80/brief/",
            "embed_origins": Settings.model_validate(
                {"embed_origins": "https://Partner.example:443,https://bücher.example"}
            ).embed_origins,
        }
    )
    for bad in ("https://example.org/page", "ftp://example.org", "https://user@example.org"):
        with pytest.raises(ValidationError, match="is not an origin"):
            Settings.model_validate({"embed_origins": bad})
    client = TestClient(create_app(settings=settings, engine=engine))
    for n, origin in enumerate(
        ("https://partner.example", "https://xn--bcher-kva.example", "http://127.0.0.1")
    ):
        assert post(client, origin=origin, email=f"o{n}@example.com").status_code == 200, origin
    assert (
        post(client, origin="https://partner.example:8443", email="x@example.com").status_code
        == 403
    )


def test_rate_limits_per_address_and_per_ip(client, engine, web_settings):
    codes = [post(client, email="same@example.com").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = web_settings.model_copy(
        update={"embed_origins": [PARTNER], "signup_per_ip_per_hour": 2}
    )
    other = TestClient(create_app(settings=limited, engine=engine))
    codes = [post(other, email=f"n{i}@example.com").status_code for i in range(3)]
    assert codes == [200, 200, 429]
    assert "Too many attempts" in post(other, email="n9@example.com").text


# --- in Chromium, from a page of another site --------------------------------------------


@pytest.fixture
def partner_site():
    routes: dict = {}
    server = RouteServer(routes)
    server.routes = routes
    yield server
    server.close()


@pytest.fixture
def web_settings(web_settings, partner_site):
    return web_settings.model_copy(update={"embed_origins": [partner_site.url]})


def snippet(base: str) -> str:
    """The first HTML block of docs/embed.md, pointed at the service under test."""
    doc = (ROOT / "docs" / "embed.md").read_text(encoding="utf-8")
    html = re.search(r"```html\n(.*?)```", doc, re.S).group(1)
    return html.replace("https://brief.example.org", base)


def test_the_documented_snippet_works_from_another_site(
    live_server, engine, browser, partner_site, smtp_server
):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    page_html = (
        f"<!DOCTYPE html><html><body><h1>Partner</h1>{snippet(live_server.url)}</body></html>"
    )
    partner_site.routes["/signup.html"] = (200, {"Content-Type": "text/html"}, page_html)
    context = browser.new_context()
    page = context.new_page()
    page.goto(partner_site.url + "/signup.html")
    page.fill("#ai-brief-email", "from.partner@example.com")
    with page.expect_popup() as popup_info:
        page.click(".ai-brief-signup button[type=submit]")
    answer = popup_info.value
    expect(answer.locator("h1")).to_have_text("Check your inbox")
    with Session(engine) as s:
        sub = get_subscriber(session=s, email="from.partner@example.com")
        assert sub.status == "pending"
        assert [t.slug for t in subscriber_topics(session=s, subscriber=sub)] == [
            "governance",
            "open-source",
        ]
    drain(engine, live_server.settings)
    assert len(smtp_server.recorder.to("from.partner@example.com")) == 1
    # a bot that fills the hidden field is answered the same, and nothing happens
    page.goto(partner_site.url + "/signup.html")
    page.fill("#ai-brief-email", "bot@example.com")
    page.evaluate("document.querySelector('input[name=website]').value = 'http://spam'")
    with page.expect_popup() as popup_info:
        page.click(".ai-brief-signup button[type=submit]")
    expect(popup_info.value.locator("h1")).to_have_text("Check your inbox")
    with Session(engine) as s:
        assert get_subscriber(session=s, email="bot@example.com") is None
    # the script variant: fetch with CORS from the partner's page
    page.goto(partner_site.url + "/signup.html")
    result = page.evaluate(
        """async (url) => {
            const body = new FormData();
            body.append("email", "by.script@example.com");
            const r = await fetch(url, {method: "POST", body, headers: {Accept: "application/json"}});
            return [r.status, (await r.json()).status];
        }""",
        live_server.url + "/subscribe/embed",
    )
    assert result == [200, "ok"]
    context.close()


def test_a_site_not_on_the_list_is_refused_in_the_browser(live_server, engine, browser):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    stranger_html = f"<!DOCTYPE html><html><body>{snippet(live_server.url)}</body></html>"
    stranger = RouteServer({"/signup.html": (200, {"Content-Type": "text/html"}, stranger_html)})
    try:
        context = browser.new_context()
        page = context.new_page()
        page.goto(stranger.url + "/signup.html")
        page.fill("#ai-brief-email", "victim@example.com")
        with page.expect_popup() as popup_info:
            page.click(".ai-brief-signup button[type=submit]")
        expect(popup_info.value.locator("[role=alert]")).to_contain_text("may not post here")
        with Session(engine) as s:
            assert get_subscriber(session=s, email="victim@example.com") is None
        context.close()
    finally:
        stranger.close()
