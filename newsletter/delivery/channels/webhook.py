"""Chat webhooks over httpx: each platform's signature, the SSRF guard at connect time,
and each platform's way of saying no (some say it inside an HTTP 200).

Connections are kept alive (at most `in_flight` idle ones in all) and shared by every
endpoint on the same host. Each one is pinned to an address that passed the SSRF guard:
a host name is resolved, in the channel's own threads, when a connection is opened (a
checked answer is reused for up to 10 s), every address it resolves to is checked (any
inside address refuses the name, so DNS rebinding cannot pick one), and the socket is
checked again against the address it is about to connect to, which also covers
addresses written in the URL.
httpx is the client API; its transport is aiohttp's (httpx-aiohttp), which measured
several times faster than httpx's default transport with tens of requests in flight
(`bench/webhook_transports.py`: about a fifth of the CPU per request).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from newsletter.core import platforms
from newsletter.core.ssrf import (
    UnresolvedError,
    UnsafeURLError,
    _networks,
    check_address,
    check_form,
    checked_addresses,
)
from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.rendering.cards import encode

MAX_BODY = 64 * 1024  # we read at most this much of an answer


@dataclass
class PreparedRequest:
    url: str
    body: bytes
    headers: dict[str, str]


BASE_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "User-Agent": "newsletter-webhooks/1",
}


def prepare(
    platform: str,
    url: str,
    payload: dict[str, Any] | bytes,
    *,
    secret: str | None,
    msg_id: str,
    now: float | None = None,
) -> PreparedRequest:
    """The exact bytes and headers to send, signed as the platform documents.

    `payload` is the card, or its bytes from `cards.encode` (encoded once, sent to many)."""
    now = time.time() if now is None else now
    out = platforms.Outgoing(
        url, payload if isinstance(payload, bytes) else encode(payload), dict(BASE_HEADERS)
    )
    sign = platforms.get(platform).sign
    if sign is not None:
        sign(out, secret, msg_id, now)
    return PreparedRequest(out.url, out.body, out.headers)


def retry_after_seconds(response: httpx.Response, data: Any) -> float | None:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError, OverflowError):
                pass  # neither seconds nor a date: our own backoff decides
    if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
        seconds = float(data["retry_after"])
        return seconds / 1000 if seconds > 1000 else seconds  # some report milliseconds
    return None


GONE_STATUS = {404, 410}


def interpret(platform: str, response: httpx.Response, text: str | None = None) -> str:
    """Return a short success description, or raise the right delivery error."""
    text = response.text[:MAX_BODY] if text is None else text
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
    entry = platforms.get(platform)
    if status >= 400:
        gone = status in GONE_STATUS or text.strip() in entry.gone_answers
        raise PermanentDeliveryError(summary, code=status, disable=gone)
    codes = entry.body_codes
    if codes is not None:
        body = data if isinstance(data, dict) else {}
        code = body.get(codes.field, body.get("StatusCode"))
        if code is None:
            raise TemporaryDeliveryError(f"{summary} (no {codes.field} in the answer)", code=status)
        if code != 0:
            message = (
                f"{platform} {codes.field} {code}: {body.get('msg') or body.get('errmsg') or ''}"
            )
            if code in codes.temporary:
                raise TemporaryDeliveryError(message, code=status, retry_after=codes.retry_after)
            raise PermanentDeliveryError(message, code=status, disable=code in codes.gone)
    return summary


class _Guard:
    """The SSRF guard where connections are made: names through `resolve`, every socket
    through `socket_for` just before it connects."""

    def __init__(self, allow_networks: list[str], lookups: int = 64):
        self.allow_networks = list(allow_networks)
        self.allow = _networks(allow_networks)
        # lookups in threads of their own: asyncio's default threads run the worker's
        # database calls, and a name whose DNS hangs must not hold those (nor they it)
        self.lookups = ThreadPoolExecutor(lookups, thread_name_prefix="webhook-dns")

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict]:
        lookup = functools.partial(
            checked_addresses, host, port, allow_networks=self.allow_networks
        )
        addresses = await asyncio.get_running_loop().run_in_executor(self.lookups, lookup)
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in addresses
        ]

    def socket_for(self, addr_info) -> socket.socket:
        family, type_, proto, _, address = addr_info
        check_address(ipaddress.ip_address(str(address[0]).split("%")[0]), self.allow)
        return socket.socket(family=family, type=type_, proto=proto)


def _aiohttp_session(guard: _Guard, in_flight: int):
    import aiohttp
    from aiohttp.abc import AbstractResolver

    class Resolver(AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return await guard.resolve(host, port, family)

        async def close(self) -> None:
            return None

    class Connector(aiohttp.TCPConnector):
        """aiohttp bounds the connections in use, not the idle ones kept alive: endpoints
        on many hosts (or ports) would each hold a file descriptor for keepalive_timeout.
        This keeps at most `in_flight` idle connections, closing the longest kept first."""

        def _release(self, key, protocol, *, should_close=False):
            super()._release(key, protocol, should_close=should_close)
            conns = self._conns
            idle = sum(map(len, conns.values()))
            while idle > in_flight:
                oldest = next(iter(conns))  # keys in the order they were first kept
                proto, _ = conns[oldest].popleft()
                if not conns[oldest]:
                    del conns[oldest]
                proto.close()
                idle -= 1

    connector = Connector(
        limit=in_flight,
        limit_per_host=0,
        resolver=Resolver(),
        use_dns_cache=True,  # holds only answers that passed the guard
        ttl_dns_cache=10,
        socket_factory=guard.socket_for,
        happy_eyeballs_delay=None,  # one address at a time: a refusal is raised, not raced
        ssl=httpx.create_ssl_context(),
        keepalive_timeout=30,
    )
    # no proxies or .netrc from the environment (trust_env), no cookies kept between sends
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
    )


class WebhookChannel:
    """Posts prepared requests; one shared client, no redirects, no proxies from the
    environment, up to `in_flight` requests at once over kept-alive connections."""

    def __init__(
        self,
        *,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        allow_http: bool = False,
        allow_networks: list[str] | None = None,
        in_flight: int = 64,
    ):
        from aiohttp import ClientError
        from httpx_aiohttp import AiohttpTransport

        self._bad_answer = ClientError

        self.allow_http = allow_http
        self._guard = guard = _Guard(allow_networks or [], lookups=in_flight)
        # the aiohttp session is made on first use, inside the event loop that uses it
        transport = AiohttpTransport(client=lambda: _aiohttp_session(guard, in_flight))
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
            trust_env=False,
        )
        self._in_flight = asyncio.Semaphore(in_flight)
        self._timeout = self.client.timeout.as_dict()
        self._headers = httpx.Headers({"Accept": "*/*", "Accept-Encoding": "identity"})
        self._urls: dict[str, httpx.URL] = {}
        self.total_timeout = timeout

    async def post(self, platform: str, request: PreparedRequest) -> str:
        try:
            check_form(request.url, allow_http=self.allow_http)
            async with self._in_flight, asyncio.timeout(self.total_timeout):
                text, response = await self._exchange(request)
        except UnresolvedError as exc:  # checked when the URL was added: DNS may be down
            raise TemporaryDeliveryError(str(exc)) from exc
        except UnsafeURLError as exc:
            raise PermanentDeliveryError(f"refused by the SSRF guard: {exc}") from exc
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise PermanentDeliveryError(f"refused by the SSRF guard: {exc}") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError | None):
                raise TemporaryDeliveryError(f"timed out: {exc!r}") from exc
            # httpx-aiohttp maps every dropped connection to ConnectTimeout
            raise TemporaryDeliveryError(f"connection problem: {exc!r}") from exc
        except httpx.HTTPError as exc:
            raise TemporaryDeliveryError(f"connection problem: {exc!r}") from exc
        except self._bad_answer as exc:
            # what httpx-aiohttp leaves unmapped: an answer aiohttp cannot parse
            # its message only: its str() holds the URL, and a chat webhook's URL is a secret
            what = getattr(exc, "message", "") or type(exc).__name__
            raise TemporaryDeliveryError(f"not a valid HTTP answer: {what}") from exc
        return interpret(platform, response, text)

    async def _exchange(self, request: PreparedRequest):
        """Send, and read at most MAX_BODY of the answer."""
        # a Request made directly: the client's merging of default headers, cookies and
        # parameters (build_request) cost as much as the rest of httpx's part of a send
        headers = self._headers.copy()
        headers.update(request.headers)
        req = httpx.Request(
            "POST",
            self._url(request.url),
            content=request.body,
            headers=headers,
            extensions={"timeout": self._timeout},
        )
        response = await self.client.send(req, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_raw():  # identity encoding asked for
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY:
                    break
        finally:
            await response.aclose()
        body = b"".join(chunks)[:MAX_BODY]
        try:
            return body.decode(response.encoding or "utf-8", "replace"), response
        except (LookupError, UnicodeError):  # a charset that is no text encoding ("zlib")
            return body.decode("utf-8", "replace"), response

    def _url(self, url: str) -> httpx.URL:
        """Parsed once per endpoint URL (parsing costs more than the rest of a request)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) >= 4096:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    async def aclose(self) -> None:
        await self.client.aclose()
        self._guard.lookups.shutdown(wait=False, cancel_futures=True)
