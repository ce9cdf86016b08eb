"""Which transport under httpx for webhooks: httpx's default (httpcore) against aiohttp's
(httpx-aiohttp), and bare aiohttp as the floor, posting the same bodies to the same local
receiver with the same number of requests in flight; beside wrk into that receiver.

    python bench/webhook_transports.py [--requests 4000] [--concurrency 64]

Prints requests/s and this process's CPU per request (less sensitive than requests/s to
other load on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import httpx
from common import free_port
from httpx_aiohttp import AiohttpTransport
from webhook_fanout import ensure_wrk, start_receiver, wrk_limit

BODY = b'{"type":"event.alert","data":{"title":"' + b"x" * 400 + b'"}}'
HEADERS = {"Content-Type": "application/json"}


async def timed(post, n: int, concurrency: int) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await post(i)

    await asyncio.gather(*(one(i) for i in range(min(n, 500))))  # connections, warm-up
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - t0), (time.process_time() - cpu0) / n * 1e6


async def with_httpx(transport, base: str, n: int, concurrency: int):
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:

        async def post(i: int) -> None:
            r = await client.post(f"{base}/hook/{i % 1000}", content=BODY, headers=HEADERS)
            r.raise_for_status()

        return await timed(post, n, concurrency)


async def with_aiohttp(base: str, n: int, concurrency: int):
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            async with session.post(f"{base}/hook/{i % 1000}", data=BODY, headers=HEADERS) as r:
                await r.read()
                r.raise_for_status()

        return await timed(post, n, concurrency)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    args = ap.parse_args()
    ensure_wrk()
    port = free_port()
    receiver = start_receiver(port)
    base, n, c = f"http://127.0.0.1:{port}", args.requests, args.concurrency
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    runs = {
        "httpx, default transport (httpcore)": lambda: with_httpx(
            httpx.AsyncHTTPTransport(limits=limits), base, n, c
        ),
        "httpx over aiohttp (httpx-aiohttp)": lambda: with_httpx(
            AiohttpTransport(
                client=lambda: aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))
            ),
            base,
            n,
            c,
        ),
        "bare aiohttp (no httpx)": lambda: with_aiohttp(base, n, c),
    }
    try:
        print(f"{n} POSTs of {len(BODY)} bytes, {c} in flight, one local receiver")
        print(f"{'client':<40}{'req/s':>10}{'CPU us/req':>12}")
        for name, run in runs.items():
            rate, cpu = asyncio.run(run())
            print(f"{name:<40}{rate:>10,.0f}{cpu:>12,.0f}", flush=True)
        limit = wrk_limit(port, len(BODY), c)
        if limit:
            print(f"{f'wrk -c{c} into the same receiver':<40}{limit:>10,.0f}")
    finally:
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    main()
