"""Web security of issue 10: the secret key (item 1), forwarded headers (20), the
confirmation link and coming back after unsubscribing (21), masked secrets and a
protected /metrics (23)."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from playwright.sync_api import expect
from pydantic import SecretStr
from sqlmodel import Session, select

from newsletter.audience.endpoints import EndpointIn, add_endpoint, mask, mask_url
from newsletter.audience.reader_links import make_token
from newsletter.audience.subscribers import (
    get_subscriber,
    is_suppressed,
    suppress,
    suppression_reason,
)
from newsletter.core.admin_tokens import create_token
from newsletter.core.keys import ADMIN_SESSION, CSRF, READER_LINKS, SecretKeyError, derive_key
from newsletter.core.models import AdminToken
from newsletter.core.settings import Settings
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.topics.catalogue import get_topic
from newsletter.web.app import create_app
from tests.support.env import TEST_SECRET_KEY
from tests.support.smtp_server import free_port
from tests.support.web import csrf_of
from tests.support.workers import drain

OLD_DEFAULT = "change-me-in-production"


@pytest.fixture
def seeded(engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    return engine


@pytest.fixture
def client(seeded, web_settings) -> TestClient:
    return TestClient(create_app(settings=web_settings, engine=seeded))


@pytest.fixture
def admin_token(seeded) -> str:
    with Session(seeded) as s:
        _, token = create_token(session=s, name="editor")
        s.commit()
    return token


def admin_login(client: TestClient, token: str) -> str:
    """Log in through the form; returns the session cookie's value."""
    form = client.get("/admin/login")
    r = client.post(
        "/admin/login",
        data={"token": token, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client.cookies.get("newsletter_admin")


def rename_topic(client: TestClient, csrf: str, name: str):
    data = {"name_en": name, "name_zh": "改", "include": "x", "exclude": "", "regex": ""}
    return client.post(
        "/admin/topics/hardware", data=data | {"csrf_token": csrf}, follow_redirects=False
    )


def topic_name(engine) -> str:
    with Session(engine) as s:
        return get_topic(session=s, slug="hardware").name_en


# --- item 1: the secret key -------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["", OLD_DEFAULT, "too-short-but-random-7f3a", "a" * 64, "changeme" + "x1y2z3w4" * 4],
)
def test_the_web_app_refuses_a_missing_default_short_or_weak_key(db_url, monkeypatch, key):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    settings = Settings(_env_file=None, database_url=db_url, secret_key=key)
    with pytest.raises(SecretKeyError, match="NEWSLETTER_SECRET_KEY") as err:
        create_app(settings=settings)
    assert "openssl rand -hex 32" in str(err.value)


@pytest.mark.parametrize("command", [("serve",), ("worker", "--until-empty")])
@pytest.mark.parametrize("key", [None, OLD_DEFAULT, "short"])
def test_serve_and_worker_exit_non_zero_with_how_to_set_the_key(cli, monkeypatch, command, key):
    if key is None:
        monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    else:
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", key)
    r = cli(*command)
    assert r.exit_code == 1
    assert "Error: NEWSLETTER_SECRET_KEY" in r.stderr and "NEWSLETTER_SECRET_KEY_FILE" in r.stderr
    assert "Traceback" not in r.output


def test_the_key_can_come_from_a_file(db_url, monkeypatch, tmp_path):
    monkeypatch.delenv("NEWSLETTER_SECRET_KEY")
    key_file = tmp_path / "secret"
    key_file.write_text("k3y-" + "0123456789abcdef" * 3 + "\n")
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY_FILE", str(key_file))
    settings = Settings(_env_file=None, database_url=db_url)
    assert settings.secret_key == "k3y-" + "0123456789abcdef" * 3
    assert TestClient(create_app(settings=settings)).get("/healthz").status_code == 200
    missing = Settings(_env_file=None, database_url=db_url, secret_key_file=tmp_path / "nope")
    with pytest.raises(SecretKeyError, match="NEWSLETTER_SECRET_KEY_FILE .* cannot be read"):
        create_app(settings=missing)


def test_a_cookie_forged_with_the_old_default_key_opens_nothing(client, seeded, admin_token):
    """The attack of the issue: sign {tid} with the default key, derive the CSRF token."""
    with Session(seeded) as s:
        tid = s.exec(select(AdminToken.id).where(AdminToken.name == "editor")).one()
    before = topic_name(seeded)
    for key in (OLD_DEFAULT, TEST_SECRET_KEY):  # the old default, and even the real key
        forged = URLSafeTimedSerializer(key, salt="newsletter.admin").dumps({"tid": tid, "n": "x"})
        csrf_key = hashlib.sha256(f"newsletter.admin|{key}".encode()).digest()
        csrf = hmac.new(csrf_key, f"csrf|{forged}".encode(), hashlib.sha256).hexdigest()
        client.cookies.clear()
        client.cookies.set("newsletter_admin", forged, path="/admin")
        r = rename_topic(client, csrf, "Pwned")
        assert r.status_code == 303 and r.headers["location"] == "/admin/login", key
        page = client.get("/admin/topics", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/admin/login")
    assert topic_name(seeded) == before


def test_a_session_cookie_replayed_after_logout_is_refused(client, seeded, admin_token):
    cookie = admin_login(client, admin_token)
    page = client.get("/admin/")
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    out = client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    client.cookies.clear()
    client.cookies.set("newsletter_admin", cookie, path="/admin")  # the saved cookie, replayed
    r = client.get("/admin/topics", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
    assert rename_topic(client, csrf, "After logout").headers["location"] == "/admin/login"
    assert topic_name(seeded) != "After logout"


def test_a_session_ends_when_its_token_is_revoked_on_the_cli(client, seeded, admin_token, cli):
    cookie = admin_login(client, admin_token)
    csrf = csrf_of(client.get("/admin/").text)
    r = cli("admin", "token", "revoke", "editor")
    assert r.exit_code == 0, r.output
    client.cookies.clear()
    client.cookies.set("newsletter_admin", cookie, path="/admin")
    assert client.get("/admin/", follow_redirects=False).status_code == 303
    assert rename_topic(client, csrf, "After revoke").status_code == 303
    assert topic_name(seeded) != "After revoke"
    # another token's session is unaffected
    with Session(seeded) as s:
        _, other = create_token(session=s, name="second")
        s.commit()
    client.cookies.clear()
    admin_login(client, other)
    assert client.get("/admin/").status_code == 200


def test_a_reader_link_signed_with_another_purposes_key_is_refused(client, seeded, web_settings):
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email="reader.en@example.com")
    good = make_token(web_settings.secret_key, "unsubscribe", sub.id, sub.email)
    h = URLSafeTimedSerializer(
        derive_key(web_settings.secret_key, READER_LINKS), salt="newsletter.unsubscribe"
    ).loads(good)[1]
    forged = {
        key_name: URLSafeTimedSerializer(key, salt="newsletter.unsubscribe").dumps([sub.id, h])
        for key_name, key in [
            ("csrf", derive_key(web_settings.secret_key, CSRF)),
            ("admin session", derive_key(web_settings.secret_key, ADMIN_SESSION)),
            ("old default", OLD_DEFAULT),
        ]
    }
    # links signed with the master key itself: only old unsubscribe links, which must
    # keep working, are accepted that way (nothing signs with the master key any more)
    master = URLSafeTimedSerializer(web_settings.secret_key, salt="newsletter.preferences")
    assert client.get(f"/p/{master.dumps([sub.id, h])}").status_code == 400
    for name, token in forged.items():
        assert client.get(f"/u/{token}").status_code == 400, name
        r = client.post(f"/u/{token}", content="List-Unsubscribe=One-Click")
        assert r.status_code == 400 and "not valid" in r.text, name
    with Session(seeded) as s:
        assert get_subscriber(session=s, email="reader.en@example.com").status == "active"
    assert client.get(f"/u/{good}").status_code == 200  # the real link still works


def test_unsubscribe_links_in_emails_sent_before_the_upgrade_keep_working(
    client, seeded, web_settings
):
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email="reader.en@example.com")
    h = hashlib.sha256(sub.email.encode()).hexdigest()[:16]
    old = URLSafeTimedSerializer(web_settings.secret_key, salt="newsletter.unsubscribe")
    r = client.post(f"/u/{old.dumps([sub.id, h])}", content="List-Unsubscribe=One-Click")
    assert r.status_code == 200 and "unsubscribed" in r.text.lower()
    assert status_of(seeded, "reader.en@example.com") == "unsubscribed"


# --- item 20: forwarded headers ---------------------------------------------------------------


def serve_like_the_service(settings, engine):
    """The app under the uvicorn configuration `newsletter serve` uses, in a thread."""
    from newsletter.core.health import Health
    from newsletter.service.runner import _web_server

    port = free_port()
    server = _web_server(engine, settings, "127.0.0.1", port, Health())
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def signup_codes(base: str, forwarded_for: list[str]) -> list[int]:
    with httpx.Client(base_url=base) as http:
        csrf = csrf_of(http.get("/").text)
        return [
            http.post(
                "/subscribe",
                data={"email": f"r{i}@example.com", "topics": ["capital"], "csrf_token": csrf},
                headers={"X-Forwarded-For": ip},
            ).status_code
            for i, ip in enumerate(forwarded_for)
        ]


@pytest.mark.parametrize(
    "proxies, expected",
    [([], [200, 200, 200, 429, 429]), (["127.0.0.1"], [200, 200, 200, 200, 200])],
)
def test_x_forwarded_for_counts_only_from_configured_proxies(
    seeded, web_settings, proxies, expected
):
    settings = web_settings.model_copy(
        update={"signup_per_ip_per_hour": 3, "trusted_proxies": proxies}
    )
    server, thread, base = serve_like_the_service(settings, seeded)
    try:
        codes = signup_codes(base, [f"203.0.113.{i}" for i in range(5)])
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    # by default the connecting address is the client, whatever the header says;
    # behind a configured proxy each forwarded client has its own allowance
    assert codes == expected


def test_trusted_proxies_must_be_addresses_or_networks(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
    assert Settings(_env_file=None).trusted_proxies == ["10.0.0.0/8", "192.0.2.7"]
    monkeypatch.setenv("NEWSLETTER_TRUSTED_PROXIES", "proxy.internal")
    with pytest.raises(ValueError, match="'proxy.internal' is not an IP address or network"):
        Settings(_env_file=None)


# --- item 21: confirming, and coming back ---------------------------------------------------


def subscribe(client: TestClient, email: str, topics=("capital",)):
    csrf = csrf_of(client.get("/").text)
    r = client.post("/subscribe", data={"email": email, "topics": list(topics), "csrf_token": csrf})
    assert r.status_code == 200, r.text
    return r


def confirmation_link(smtp_server, email: str) -> str:
    mails = smtp_server.recorder.to(email)
    assert mails, f"no confirmation email reached {email}"
    text = mails[-1].message.get_body(("plain",)).get_content()
    return re.search(r"http://127\.0\.0\.1(:\d+)?(/confirm/\S+)", text).group(2)


def status_of(engine, email: str) -> str:
    with Session(engine) as s:
        return get_subscriber(session=s, email=email).status


def test_a_get_of_the_confirmation_link_does_not_confirm(client, seeded, web_settings, smtp_server):
    subscribe(client, "scanned@example.com")
    drain(seeded, web_settings)
    path = confirmation_link(smtp_server, "scanned@example.com")
    scanner = TestClient(client.app)  # a link scanner: fresh client, follows the link
    for _ in range(3):
        page = scanner.get(path)
        assert page.status_code == 200 and 'action="/confirm/' in page.text
        assert scanner.head(path).status_code in (200, 405)
    assert status_of(seeded, "scanned@example.com") == "pending"
    # a POST needs the page's CSRF token (a cross-site form cannot confirm either)
    assert scanner.post(path, data={}).status_code == 403
    assert status_of(seeded, "scanned@example.com") == "pending"
    r = client.post(path, data={"csrf_token": csrf_of(client.get(path).text)})
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert status_of(seeded, "scanned@example.com") == "active"
    assert "You are subscribed" in client.get(path).text  # the link stays friendly


def test_a_reader_who_unsubscribed_can_come_back_through_double_opt_in(
    client, seeded, web_settings, smtp_server
):
    email = "reader.en@example.com"
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email=email)
    unsub = make_token(web_settings.secret_key, "unsubscribe", sub.id, sub.email)
    assert client.post(f"/u/{unsub}", content="List-Unsubscribe=One-Click").status_code == 200
    with Session(seeded) as s:
        assert suppression_reason(session=s, email=email) == "unsubscribed"

    subscribe(client, email, ("hardware",))
    assert status_of(seeded, email) == "pending"
    drain(seeded, web_settings)
    path = confirmation_link(smtp_server, email)  # the email really arrives
    with Session(seeded) as s:
        assert is_suppressed(session=s, email=email)  # until the reader confirms
    r = client.post(path, data={"csrf_token": csrf_of(client.get(path).text)})
    assert r.status_code == 200
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email=email)
        assert (sub.status, sub.unsubscribed_at) == ("active", None)
        assert not is_suppressed(session=s, email=email)


def test_a_confirmation_link_from_before_an_unsubscribe_confirms_no_later_signup(
    client, seeded, web_settings, smtp_server, monkeypatch
):
    import time as time_module

    email = "reader.en@example.com"
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email=email)
    real_time = time_module.time
    with monkeypatch.context() as m:  # a link from an earlier signup, a minute ago
        m.setattr(time_module, "time", lambda: real_time() - 60)
        old = make_token(web_settings.secret_key, "confirm", sub.id, sub.email)
    unsub = make_token(web_settings.secret_key, "unsubscribe", sub.id, sub.email)
    assert client.post(f"/u/{unsub}", content="List-Unsubscribe=One-Click").status_code == 200
    subscribe(client, email, ("hardware",))  # someone signs the address up again
    assert status_of(seeded, email) == "pending"
    csrf = csrf_of(client.get("/").text)
    r = client.post(f"/confirm/{old}", data={"csrf_token": csrf})
    assert r.status_code == 410 and "newest confirmation email" in r.text
    assert status_of(seeded, email) == "pending"
    drain(seeded, web_settings)
    path = confirmation_link(smtp_server, email)  # the new link does confirm
    r = client.post(path, data={"csrf_token": csrf_of(client.get(path).text)})
    assert r.status_code == 200 and status_of(seeded, email) == "active"


@pytest.mark.parametrize("reason", ["bounced", "complaint", "removed"])
def test_bounced_complained_or_removed_addresses_stay_suppressed(
    client, seeded, web_settings, smtp_server, reason
):
    email = "reader.en@example.com"
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email=email)
        unsub = make_token(web_settings.secret_key, "unsubscribe", sub.id, sub.email)
    assert client.post(f"/u/{unsub}", content="List-Unsubscribe=One-Click").status_code == 200
    with Session(seeded) as s:
        suppress(session=s, email=email, reason=reason)  # after the self-unsubscribe
        s.commit()
        assert suppression_reason(session=s, email=email) == reason
    subscribe(client, email)
    drain(seeded, web_settings)
    assert smtp_server.recorder.to(email) == []
    assert status_of(seeded, email) == "unsubscribed"
    # an old confirmation link cannot bring the address back either
    confirm = make_token(web_settings.secret_key, "confirm", sub.id, sub.email)
    assert client.get(f"/confirm/{confirm}").status_code == 410
    csrf = csrf_of(client.get("/").text)
    assert client.post(f"/confirm/{confirm}", data={"csrf_token": csrf}).status_code == 410
    with Session(seeded) as s:
        assert suppression_reason(session=s, email=email) == reason


def test_confirm_and_come_back_in_a_browser(live_server, seeded, page, smtp_server):
    """Unsubscribe on the page, sign up again, and confirm with the button."""
    email = "reader.zh@example.com"
    with Session(seeded) as s:
        sub = get_subscriber(session=s, email=email)
    token = make_token(live_server.settings.secret_key, "unsubscribe", sub.id, sub.email)
    page.goto(f"{live_server.url}/u/{token}?lang=en")
    page.click("#stop-all button")
    expect(page.locator("h1")).to_have_text("已退订")
    assert status_of(seeded, email) == "unsubscribed"

    page.goto(live_server.url + "/?lang=en")
    page.fill("#email", email)
    page.select_option("#language", "zh")
    page.check("input[name=topics][value=hardware]")
    page.click("#subscribe button[type=submit]")
    expect(page.locator("h1")).to_have_text("Check your inbox")
    drain(seeded, live_server.settings)
    page.goto(live_server.url + confirmation_link(smtp_server, email))
    expect(page.locator("h1")).to_have_text("确认订阅")
    assert status_of(seeded, email) == "pending"
    page.click("#confirm button[type=submit]")
    expect(page.locator("h1")).to_have_text("订阅成功")
    assert status_of(seeded, email) == "active"
    with Session(seeded) as s:
        assert not is_suppressed(session=s, email=email)


# --- item 23: masked secrets, /metrics behind a token ----------------------------------------


def test_secrets_show_only_their_last_four_characters(client, seeded, admin_token, cli):
    assert mask("feishu-secret-value") == "••••alue"
    assert mask("short-secret") == "••••" and mask(None) == "-"
    url = "https://open.feishu.cn/open-apis/bot/v2/hook/5f1c0d2e-aaaa-bbbb-cccc-1234567890ab"
    assert mask_url(url) == "https://open.feishu.cn/••••90ab"
    url = url.replace("https://open.feishu.cn", "http://127.0.0.1:9")  # no DNS needed
    settings = Settings(
        _env_file=None, webhook_allow_http=True, webhook_allow_networks=["127.0.0.0/8"]
    )
    with Session(seeded) as s:
        add_endpoint(
            session=s,
            settings=settings,
            ep_in=EndpointIn(
                name="cn-team",
                platform="feishu",
                url=url,
                secret="feishu-secret-value",
                topics=["capital"],
            ),
        )
        s.commit()
    api = client.get("/api/v1/webhooks", headers={"Authorization": f"Bearer {admin_token}"})
    (hook,) = api.json()["data"]
    assert hook["secret"] == "••••alue" and hook["url"] == "http://127.0.0.1:9/••••90ab"
    listed = cli("webhooks", "list", "--format", "json").output
    assert '"secret": "••••alue"' in listed and '"url": "http://127.0.0.1:9/••••90ab"' in listed
    for shown in (api.text, listed, cli("webhooks", "list").output):
        assert "feishu-s" not in shown and "5f1c0d2e" not in shown and "-value" not in shown


def test_metrics_can_require_a_bearer_token(seeded, web_settings, monkeypatch):
    from prometheus_client import CollectorRegistry

    from newsletter.core import metrics

    # the process-wide registry keeps a collector per engine it has seen: scrape into a
    # throwaway one so this test's engine does not linger for the tests after it
    monkeypatch.setattr(metrics, "REGISTRY", CollectorRegistry(auto_describe=True))
    monkeypatch.setattr(metrics, "_registered", set(), raising=False)
    open_app = TestClient(create_app(settings=web_settings, engine=seeded))
    assert open_app.get("/metrics").status_code == 200  # unset: open as before
    settings = web_settings.model_copy(
        update={"metrics_token": SecretStr("m3trics-t0ken-for-prometheus")}
    )
    app = TestClient(create_app(settings=settings, engine=seeded))
    r = app.get("/metrics")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "bearer token is required" in r.text
    for wrong in ("m3trics-t0ken-for-prometheuS", "x", "m3trics-t0ken-for-prometheus-and-more"):
        r = app.get("/metrics", headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 403 and "metrics token is wrong" in r.text
    r = app.get("/metrics", headers={"Authorization": "Bearer m3trics-t0ken-for-prometheus"})
    assert r.status_code == 200 and "# HELP" in r.text
    assert app.get("/healthz").status_code == 200  # only /metrics is protected
