"""Chat webhooks over httpx: each platform's signature, the SSRF guard at send time,
and each platform's way of saying no (some say it inside an HTTP 200).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

import httpx

from ...ssrf import UnsafeURLError, check_url, pin
from .base import PermanentDeliveryError, TemporaryDeliveryError

MAX_BODY = 64 * 1024  # we read at most this much of an answer


def feishu_sign(secret: str, timestamp: int) -> str:
    """Feishu/Lark: the string "<ts>\\n<secret>" is the HMAC key; the message is empty."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: HMAC-SHA256(key=secret, msg="<ts_ms>\\n<secret>"), base64, then URL-encoded."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode())


def standard_webhooks_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1: HMAC-SHA256 over "<id>.<ts>.<body>" with the base64 key of whsec_."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


@dataclass
class PreparedRequest:
    url: str
    body: bytes
    headers: dict[str, str]


def prepare(
    platform: str,
    url: str,
    payload: dict[str, Any],
    *,
    secret: str | None,
    msg_id: str,
    now: float | None = None,
) -> PreparedRequest:
    """The exact bytes and headers to send, signed as the platform documents."""
    now = time.time() if now is None else now
    payload = dict(payload)
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "newsletter-webhooks/1",
    }
    if platform == "feishu" and secret:
        ts = int(now)
        payload["timestamp"], payload["sign"] = str(ts), feishu_sign(secret, ts)
    if platform == "dingtalk" and secret:
        ts_ms = int(now * 1000)
        sep = "&" if urlsplit(url).query else "?"
        url = f"{url}{sep}timestamp={ts_ms}&sign={dingtalk_sign(secret, ts_ms)}"
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if platform == "generic":
        ts = int(now)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(ts)
        if secret:
            headers["webhook-signature"] = standard_webhooks_sign(secret, msg_id, ts, body)
    return PreparedRequest(url, body, headers)


def retry_after_seconds(response: httpx.Response, data: Any) -> float | None:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            if when:
                return max(0.0, when.timestamp() - time.time())
    if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
        seconds = float(data["retry_after"])
        return seconds / 1000 if seconds > 1000 else seconds  # some report milliseconds
    return None


# body codes inside an HTTP 200: (temporary codes, codes that mean the webhook is gone)
BODY_CODES = {
    "feishu": ("code", {11232}, set()),
    "dingtalk": ("errcode", {130101, 410100, -1}, {300001}),
    "wecom": ("errcode", {45009, -1}, {93000}),
}
GONE_STATUS = {404, 410}


def interpret(platform: str, response: httpx.Response) -> str:
    """Return a short success description, or raise the right delivery error."""
    text = response.text[:MAX_BODY]
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    status = response.status_code
    summary = f"HTTP {status}: {text[:300]}".strip()
    if status == 429 or status in (502, 503, 504) or status >= 500:
        raise TemporaryDeliveryError(
            summary, code=status, retry_after=retry_after_seconds(response, data)
        )
    if 300 <= status < 400:
        raise PermanentDeliveryError(f"{summary} (redirects are not followed)", code=status)
    if status >= 400:
        gone = status in GONE_STATUS or (
            platform == "slack"
            and text.strip()
            in (
                "no_service",
                "no_team",
                "channel_not_found",
                "channel_is_archived",
                "team_disabled",
                "no_active_hooks",
            )
        )
        raise PermanentDeliveryError(summary, code=status, disable=gone)
    if platform in BODY_CODES:
        field, temporary, gone = BODY_CODES[platform]
        code = data.get(field, data.get("StatusCode")) if isinstance(data, dict) else None
        if code is None:
            raise TemporaryDeliveryError(f"{summary} (no {field} in the answer)", code=status)
        if code != 0:
            message = f"{platform} {field} {code}: {data.get('msg') or data.get('errmsg') or ''}"
            if code in temporary:
                raise TemporaryDeliveryError(
                    message, code=status, retry_after=60 if platform != "feishu" else 5
                )
            raise PermanentDeliveryError(message, code=status, disable=code in gone)
    return summary


class WebhookChannel:
    """Posts prepared payloads; one shared client, no redirects, no proxies from the environment."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        allow_http: bool = False,
        allow_networks: list[str] | None = None,
        in_flight: int = 4,
    ):
        self.allow_http, self.allow_networks = allow_http, allow_networks or []
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
        )
        # httpx slows down as requests in flight grow (encode/httpx#3215): cap them
        self._in_flight = asyncio.Semaphore(in_flight)
        self.total_timeout = timeout

    async def post(self, platform: str, request: PreparedRequest) -> str:
        try:
            target = await asyncio.to_thread(
                check_url,
                request.url,
                allow_http=self.allow_http,
                allow_networks=self.allow_networks,
            )
            pinned = pin(request.url, target)  # connect to the checked address, not a new lookup
        except UnsafeURLError as exc:
            raise PermanentDeliveryError(f"refused by the SSRF guard: {exc}") from exc
        try:
            async with self._in_flight:
                response = await asyncio.wait_for(
                    self.client.post(
                        pinned.url,
                        content=request.body,
                        headers={**request.headers, **pinned.headers},
                        extensions=pinned.extensions,
                    ),
                    timeout=self.total_timeout,
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise TemporaryDeliveryError(f"timed out: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise TemporaryDeliveryError(f"connection problem: {exc!r}") from exc
        return interpret(platform, response)

    async def aclose(self) -> None:
        await self.client.aclose()
