"""The whole service as a real process, fed hostile and unusual input through its API.

One run of `newsletter serve` (web, scheduler, worker) takes: out-of-range dates, control
characters, forged per-reader slots, deep nesting, huge rule lists, hostile feed queries,
internationalised addresses (one it cannot deliver here), and readers plus a team
webhook on the same instant topic. What must hold afterwards: no answer was a 500, the
process is still up and ready, every deliverable message arrived (by SMTP, MIME parsed;
by webhook, signature checked), the undeliverable one failed alone with its reason, and
SIGTERM stops it cleanly.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import httpx

from tests.support.smtp_server import free_port

RUN = [sys.executable, "-m", "newsletter"]


def _wait(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_serve_survives_hostile_input_and_delivers_the_rest(
    db_url, smtp_server, chat_receiver, tmp_path
):
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SMTP_URL": smtp_server.url,
        "NEWSLETTER_SECRET_KEY": secrets.token_hex(32),
        "NEWSLETTER_WEBHOOK_ALLOW_HTTP": "true",
        "NEWSLETTER_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "NEWSLETTER_ALERT_BATCH_SECONDS": "0",
        "NEWSLETTER_RETRY_BASE_SECONDS": "0.05",
    }
    cli = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True}
    assert subprocess.run([*RUN, "sample", "load"], **cli).returncode == 0
    made = subprocess.run([*RUN, "admin", "token", "create", "suite"], **cli)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]

    port = free_port()
    proc = subprocess.Popen(
        [*RUN, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    answers: list[tuple[str, int]] = []
    try:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=20)

        def call(method: str, path: str, **kw) -> httpx.Response:
            r = api.request(method, path, **kw)
            answers.append((f"{method} {path}", r.status_code))
            return r

        assert _wait(lambda: _ready(base)), "the service never became ready"

        # readers and a team on the same instant topic (this once answered 500)
        readers = ["ok@example.com", "user@xn--mnchen-3ya.de", "用户@例子.广告"]
        for email in readers:
            r = call(
                "POST",
                "/api/v1/subscribers",
                json={"email": email, "topics": ["capital"], "frequency": "instant"},
            )
            assert r.status_code == 201, r.text
        path = "/generic/team"
        r = call(
            "POST",
            "/api/v1/webhooks",
            json={
                "name": "team",
                "platform": "generic",
                "url": chat_receiver.url(path),
                "topics": ["capital"],
                "mode": "instant",
            },
        )
        assert r.status_code == 201, r.text
        chat_receiver.platforms.secrets[path] = r.json()["generated_secret"]

        # hostile events: each is refused with a reason, or stored cleaned
        today = time.strftime("%Y-%m-%d")
        base_event = {"url": "https://news.example.com/x", "occurred_on": today}
        refused = [
            {**base_event, "title": "Far future", "occurred_on": "9999-12-31"},
            {**base_event, "title": "Far past", "occurred_on": "0001-01-01"},
            {**base_event, "title": "   "},
            {**base_event, "title": "Hidden", "url": "https://a.example/\u202egnp.exe"},
            {**base_event, "title": "Port zero", "url": "http://[::1]:0/"},
        ]
        for body in refused:
            r = call("POST", "/api/v1/events", json=body)
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
            assert r.json()["detail"], r.text
        nested = "[" * 5000 + "]" * 5000
        r = call(
            "POST",
            "/api/v1/events/upload",
            files={"file": ("deep.json", nested.encode(), "application/json")},
        )
        assert 400 <= r.status_code < 500, r.text

        stored = call(
            "POST",
            "/api/v1/events",
            json={
                **base_event,
                "url": "https://news.example.com/funding",
                "title": "Lab raises $2 billion in funding \x1b[31m\x00\u2028{{ email }}",
                "summary": "A funding round.\x07",
            },
        )
        assert stored.status_code == 201, stored.text
        title = stored.json()["title"]["en"]
        assert "\x1b" not in title and "\x00" not in title and "\u2028" not in title

        # hostile rules and queries
        r = call(
            "POST",
            "/api/v1/topics",
            json={
                "slug": "huge",
                "name_en": "Huge",
                "name_zh": "巨大",
                "rules": {"include": [f"k{i}" for i in range(100_000)]},
            },
        )
        assert 400 <= r.status_code < 500
        for query in ("topic=%01", "topic=%3Cx%3E", "topic=" + "a" * 5000):
            r = httpx.get(f"{base}/archive/feed.rss?{query}", timeout=20)
            answers.append((f"GET feed.rss?{query[:20]}", r.status_code))
        r = httpx.get(f"{base}/api/v1/subscribers", headers={"Authorization": "Bearer forged"})
        assert r.status_code in (401, 403)

        # the deliverable messages arrive, the undeliverable one fails alone
        def arrived() -> set[str]:
            return {rcpt for m in smtp_server.recorder.received for rcpt in m.rcpt_tos}

        assert _wait(lambda: {"ok@example.com", "user@xn--mnchen-3ya.de"} <= arrived())
        assert _wait(lambda: chat_receiver.platforms.for_path(path))
        hook = chat_receiver.platforms.for_path(path)[0]
        assert b"Lab raises $2 billion" in hook.body
        assert "\x1b" not in hook.body.decode()

        body = (
            smtp_server.recorder.to("ok@example.com")[0]
            .message.get_body(preferencelist=("plain",))
            .get_content()
        )
        assert "Lab raises $2 billion" in body
        assert "ok@example.com" not in body.split("Lab raises", 1)[1].split("\n", 1)[0]

        def utf8_failed() -> list[dict]:
            errors = call("GET", "/api/v1/outbox", params={"errors_limit": 100}).json()
            return [e for e in errors["last_errors"] if "SMTPUTF8" in (e["error"] or "")]

        assert _wait(utf8_failed), "the non-ASCII local part should fail with its reason"

        assert proc.poll() is None, "serve stopped"
        assert _ready(base)
        assert not [a for a in answers if a[1] >= 500], answers
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
