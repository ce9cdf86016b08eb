"""A real HTTP server on 127.0.0.1 that plays each chat platform's webhook receiver.

It checks signatures exactly as each platform documents them, checks the payload's
shape, and answers in the platform's own style (including errors inside an HTTP 200).
Scripted answers (status, headers, body) or "sleep:<seconds>" can be queued per path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook


@dataclass
class Request:
    platform: str
    path: str
    query: dict
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Platforms:
    secrets: dict[str, str] = field(default_factory=dict)  # path -> secret
    requests: list[Request] = field(default_factory=list)
    script: dict[str, list] = field(default_factory=dict)  # path -> queued answers
    lock: threading.Lock = field(default_factory=threading.Lock)

    def for_path(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _check_slack(p):
    blocks = p.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50 or not p.get("text"):
        return 400, "invalid_blocks"
    for b in blocks:
        if b["type"] == "section" and len(b["text"]["text"]) > 3000:
            return 400, "invalid_blocks"
        if b["type"] == "header" and (
            b["text"]["type"] != "plain_text" or len(b["text"]["text"]) > 150
        ):
            return 400, "invalid_blocks"
    return 200, "ok"


def _check_discord(p):
    embeds = p.get("embeds", [])
    total = sum(
        len(e.get("title", ""))
        + len(e.get("description", ""))
        + len(e.get("footer", {}).get("text", ""))
        for e in embeds
    )
    if (
        len(embeds) > 10
        or total > 6000
        or len(p.get("content", "")) > 2000
        or p.get("allowed_mentions") != {"parse": []}
    ):
        return 400, json.dumps({"code": 50035, "message": "Invalid Form Body"})
    return 204, ""


def _check_teams(p):
    try:
        (att,) = p["attachments"]
        card = att["content"]
        ok = (
            p["type"] == "message"
            and att["contentType"] == "application/vnd.microsoft.card.adaptive"
            and card["type"] == "AdaptiveCard"
            and card["version"] == "1.4"
            and isinstance(card["body"], list)
            and all("type" in el for el in card["body"])
            and len(json.dumps(p).encode()) <= 28_000
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    return (202, "") if ok else (400, "Bad card")


class Handler(BaseHTTPRequestHandler):
    platforms: Platforms

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        parts = urlsplit(self.path)
        platform = parts.path.strip("/").split("/")[0]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = Request(
            platform,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        pf = self.platforms
        with pf.lock:
            pf.requests.append(req)
            queued = pf.script.get(parts.path)
            answer = queued.pop(0) if queued else None
        if isinstance(answer, str) and answer.startswith("sleep:"):
            time.sleep(float(answer.split(":")[1]))
            answer = None
        if answer is None:
            answer = self.platform_answer(req, pf.secrets.get(parts.path))
        status, headers, text = answer if len(answer) == 3 else (answer[0], {}, answer[1])
        data = text.encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def platform_answer(self, req: Request, secret: str | None):
        p = req.json
        if req.platform == "slack":
            return _check_slack(p)
        if req.platform == "discord":
            return _check_discord(p)
        if req.platform == "teams":
            return _check_teams(p)
        if req.platform == "feishu":
            if secret:
                ts = p.get("timestamp", "")
                key = f"{ts}\n{secret}".encode()
                want = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
                if p.get("sign") != want or abs(time.time() - int(ts or 0)) > 3600:
                    return 200, json.dumps(
                        {
                            "code": 19021,
                            "msg": "sign match fail or timestamp is not within one hour from current time",
                        }
                    )
            ok = p.get("msg_type") == "interactive" and "card" in p and len(req.body) <= 20_000
            return 200, json.dumps(
                {"code": 0, "msg": "success", "data": {}}
                if ok
                else {"code": 9499, "msg": "Bad Request"}
            )
        if req.platform == "dingtalk":
            if secret:
                ts = req.query.get("timestamp", [""])[0]
                sign = req.query.get("sign", [""])[0]  # parse_qs has URL-decoded it once
                want = base64.b64encode(
                    hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), hashlib.sha256).digest()
                ).decode()
                if sign != want or abs(time.time() * 1000 - int(ts or 0)) > 3_600_000:
                    return 200, json.dumps({"errcode": 310000, "errmsg": "sign not match"})
            if len(req.body) > 20_000:
                return 200, json.dumps(
                    {"errcode": 460101, "errmsg": "message too long, exceed 20000 bytes"}
                )
            return 200, json.dumps({"errcode": 0, "errmsg": "ok"})
        if req.platform == "wecom":
            content = p.get("markdown", {}).get("content", "")
            if len(content.encode()) > 4096:
                return 200, json.dumps(
                    {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
                )
            return 200, json.dumps({"errcode": 0, "errmsg": "ok"})
        if req.platform == "generic":
            try:
                Webhook(secret).verify(
                    req.body, {k: v for k, v in req.headers.items() if k.startswith("webhook-")}
                )
            except Exception as exc:  # noqa: BLE001
                return 401, f"bad signature: {exc}"
            return 200, "ok"
        return 404, "no such webhook"


class ChatReceiver:
    def __init__(self):
        self.platforms = Platforms()
        handler = type("H", (Handler,), {"platforms": self.platforms})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
