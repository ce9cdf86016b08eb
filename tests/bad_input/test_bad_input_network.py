"""Hostile network input: DNS rebinding on feeds, IPv6 disguises of inside addresses,
URLs that hide what they are, and archive feeds asked for with hostile query strings."""

import asyncio
import ipaddress
import json
import re
import socket
import threading
import xml.etree.ElementTree as ET

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Delivery, DeliveryAttempt, Event, Feed
from newsletter.core.settings import Settings
from newsletter.core.ssrf import UnsafeURLError, check_url
from newsletter.core.text import normalise_url
from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.webhook import PreparedRequest, WebhookChannel
from newsletter.delivery.worker import Worker
from newsletter.ingest.feeds import add_feed
from newsletter.ingest.files import import_records
from newsletter.pipeline import poll_feeds
from newsletter.pipeline.sample import add_demo_readers, load_sample
from newsletter.topics.catalogue import ensure_default_topics
from newsletter.web.app import create_app
from tests.support.http import RouteServer
from tests.support.planning import plan_in
from tests.support.web import api_client

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Inside</title><link>https://inside.example/</link>
<description>x</description><item><title>Secret from the inside network</title>
<link>https://inside.example/secret</link><pubDate>Tue, 15 Jul 2025 09:00:00 GMT</pubDate></item>
</channel></rss>"""

PUBLIC = "93.184.216.34"  # a global address; nothing here may ever connect to it


def inside_server(routes=None) -> RouteServer:
    """An HTTP server on 127.0.0.1 standing for a service inside the network (RSS on any
    path not in `routes`)."""
    return RouteServer(routes, default=(200, {"Content-Type": "application/rss+xml"}, RSS))


@pytest.fixture
def inside():
    server = inside_server()
    yield server
    server.close()


class Rebinding:
    """A resolver for `*.rebind.test` that answers a public address first and 127.0.0.1
    afterwards (what an attacker's DNS with a zero TTL does); other names resolve as usual.

    The connection to the public address cannot be made here, so it is refused at the
    socket and recorded: that is where a pinned request goes."""

    def __init__(self, monkeypatch):
        self.lookups = 0
        self.public_connects: list[tuple[str, int]] = []
        real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

        def getaddrinfo(host, port, *args, **kwargs):
            if isinstance(host, bytes):
                host = host.decode()
            if not str(host).endswith("rebind.test"):
                return real_getaddrinfo(host, port, *args, **kwargs)
            self.lookups += 1
            ip = PUBLIC if self.lookups == 1 else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, int(port or 80)))]

        def create_connection(address, *args, **kwargs):
            if address[0] == PUBLIC:
                self.public_connects.append(address)
                raise ConnectionRefusedError(111, "Connection refused (no internet in tests)")
            return real_connect(address, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(socket, "create_connection", create_connection)


def store_feed(engine, url, name="rebound"):
    """A feed row as an earlier check accepted it (the URL is checked again at poll time)."""
    with Session(engine) as s:
        ensure_default_topics(session=s)
        s.add(Feed(url=url, name=name))
        s.commit()


# --- item 9: feeds are pinned to the address that was checked ---------------------------------


def test_feed_dns_rebinding_never_reaches_the_inside(engine, db_url, inside, monkeypatch):
    settings = Settings(database_url=db_url)  # no allow-list: only public addresses
    dns = Rebinding(monkeypatch)
    with Session(engine) as s:
        ensure_default_topics(session=s)
        add_feed(
            session=s,
            settings=settings,
            url=f"http://feed.rebind.test:{inside.port}/rss.xml",
            name="rebound",
            region="global",
            language="en",
        )  # checked: the name resolves to a public address
        s.commit()
    dns.lookups = 0  # at poll time, too, the guard's lookup is answered with a public address
    (result,) = poll_feeds(engine=engine, settings=settings, only="rebound")
    assert inside.requests == []  # the second answer (127.0.0.1) was never used
    assert dns.lookups == 1 and dns.public_connects == [(PUBLIC, inside.port)]
    assert result.status == "error" and "ConnectError" in result.error
    with Session(engine) as s:
        feed = s.execute(select(Feed)).scalar_one()
        assert feed.consecutive_failures == 1 and "ConnectError" in feed.last_error
        assert s.execute(select(Event)).first() is None


def test_feed_redirect_hops_are_checked_and_pinned(engine, db_url, monkeypatch):
    dns = Rebinding(monkeypatch)
    hops = {}
    server = inside_server(hops)
    try:
        base = f"http://127.0.0.1:{server.port}"
        hops["/to-rebind"] = (302, {"Location": f"http://x.rebind.test:{server.port}/x"}, "")
        hops["/to-mapped"] = (301, {"Location": f"http://[::ffff:127.0.0.2]:{server.port}/y"}, "")
        hops["/to-6to4"] = (307, {"Location": f"http://[2002:7f00:2::]:{server.port}/z"}, "")
        hops["/to-local"] = (302, {"Location": "/rss.xml"}, "")
        # the feed host itself is allowed; nothing else on the inside is
        settings = Settings(database_url=db_url, webhook_allow_networks=["127.0.0.1/32"])
        for name in ("to-rebind", "to-mapped", "to-6to4", "to-local"):
            store_feed(engine, f"{base}/{name}", name=name)
        results = {r.feed: r for r in poll_feeds(engine=engine, settings=settings)}
        assert [p for p, _ in server.requests if p not in hops] == ["/rss.xml"]
        assert dns.public_connects == [(PUBLIC, server.port)]
        assert "ConnectError" in results["to-rebind"].error
        assert "IPv4-mapped form of 127.0.0.2" in results["to-mapped"].error
        assert "6to4 form of 127.0.0.2, a loopback address" in results["to-6to4"].error
        assert results["to-local"].status == "new" and len(results["to-local"].new_ids) == 1
        # the pinned request still names the host it asked for
        assert ("/rss.xml", f"127.0.0.1:{server.port}") in server.requests
    finally:
        server.close()


def test_an_allowed_local_feed_is_still_fetched_with_conditional_get(engine, db_url):
    server = inside_server(
        {"/rss.xml": (200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, RSS)}
    )
    try:
        settings = Settings(database_url=db_url, webhook_allow_networks=["127.0.0.0/8"])
        with Session(engine) as s:
            ensure_default_topics(session=s)
            add_feed(
                session=s,
                settings=settings,
                url=f"http://127.0.0.1:{server.port}/rss.xml",
                name="local",
                region="global",
                language="en",
            )
            s.commit()
        (first,) = poll_feeds(engine=engine, settings=settings)
        assert first.status == "new" and len(first.new_ids) == 1
        with Session(engine) as s:
            assert s.execute(select(Feed)).scalar_one().etag == '"v1"'
    finally:
        server.close()


def test_feed_size_cap_holds_on_the_pinned_connection(engine, db_url):
    big = RSS.replace(
        "<description>x</description>", "<description>" + "x" * 5000 + "</description>"
    )
    server = inside_server({"/big.xml": (200, {"Content-Type": "application/rss+xml"}, big)})
    try:
        settings = Settings(
            database_url=db_url, webhook_allow_networks=["127.0.0.0/8"], feed_max_bytes=1000
        )
        store_feed(engine, f"http://127.0.0.1:{server.port}/big.xml", name="big")
        (result,) = poll_feeds(engine=engine, settings=settings)
        assert result.status == "error" and "larger than 1000 bytes" in result.error
    finally:
        server.close()


# --- item 16: IPv6 disguises of inside addresses, and port 0 ---------------------------------

DISGUISES = [
    ("[::127.0.0.1]", "IPv4-compatible form of 127.0.0.1, a loopback"),
    ("[::ffff:127.0.0.1]", "IPv4-mapped form of 127.0.0.1, a loopback"),
    ("[::ffff:0:a00:1]", "IPv4-translated form of 10.0.0.1, a private"),
    ("[64:ff9b::7f00:1]", "NAT64 form of 127.0.0.1, a loopback"),
    ("[64:ff9b::a9fe:a9fe]", "NAT64 form of 169.254.169.254, a cloud metadata"),
    ("[64:ff9b:1::a00:1]", "local-use NAT64 address"),
    ("[2002:7f00:1::]", "6to4 form of 127.0.0.1, a loopback"),
    ("[2002:c0a8:101::1]", "6to4 form of 192.168.1.1, a private"),
    ("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "Teredo address"),
]


@pytest.mark.parametrize("host,reason", DISGUISES)
def test_ipv6_forms_of_inside_addresses_are_refused(host, reason):
    with pytest.raises(UnsafeURLError, match=reason):
        check_url(f"https://{host}/x")
    with pytest.raises(UnsafeURLError, match=reason):  # also on a name resolving to it
        check_url(
            "https://sneaky.example/x",
            resolve=lambda h, p, type=0: [(10, 1, 6, "", (host.strip("[]"), p, 0, 0))],
        )


def test_public_addresses_in_ipv6_forms_still_pass():
    for host in ("[64:ff9b::808:808]", "[2002:808:808::1]", "[::ffff:8.8.8.8]", "[2606:4700::1]"):
        address = check_url(f"https://{host}/x").address
        assert ipaddress.ip_address(address) == ipaddress.ip_address(host.strip("[]"))


@pytest.mark.parametrize("port", ["0", "65536", "99999", "-1", "x"])
def test_bad_ports_are_refused(port):
    with pytest.raises(UnsafeURLError, match="bad port"):
        check_url(f"https://hooks.example.com:{port}/x", resolve=lambda *a, **k: [])


@pytest.fixture
def api(engine, db_url, tmp_path):
    settings = Settings(database_url=db_url, outbox_dir=tmp_path / "outbox")
    with Session(engine) as s:
        ensure_default_topics(session=s)
        s.commit()
    return api_client(settings, engine, name="network-tests")


@pytest.mark.parametrize("host,reason", DISGUISES + [("hooks.example.com:0", "bad port")])
def test_disguised_urls_are_refused_when_added(api, cli, engine, host, reason):
    url = f"https://{host}/x"
    r = api.post(
        "/api/v1/webhooks",
        json={"name": "team", "platform": "slack", "url": url, "topics": ["hardware"]},
    )
    assert r.status_code == 400 and reason in r.json()["detail"], r.text
    r = api.post("/api/v1/feeds", json={"url": url, "name": "wire"})
    assert r.status_code == 400 and reason in r.json()["detail"], r.text
    out = cli(
        "webhooks", "add", "team", "--platform", "slack", "--url", url, "--topics", "hardware"
    )
    assert out.exit_code == 1 and "refusing webhook URL" in out.output
    assert "Traceback" not in out.output
    out = cli("feeds", "add", url, "--name", "wire")
    assert out.exit_code == 1 and "refusing feed URL" in out.output
    with Session(engine) as s:
        assert s.execute(select(Feed)).first() is None


@pytest.mark.parametrize("host,reason", DISGUISES + [("127.0.0.1:0", "bad port")])
def test_disguised_urls_are_refused_at_send_time(host, reason):
    """A URL stored before this check existed is refused by the guard before connecting."""
    channel = WebhookChannel(allow_http=True)

    async def post():
        try:
            return await channel.post("slack", PreparedRequest(f"http://{host}/x", b"{}", {}))
        finally:
            await channel.aclose()

    with pytest.raises(PermanentDeliveryError, match="refused by the SSRF guard") as info:
        asyncio.run(post())
    assert reason in str(info.value)


def test_a_name_resolving_inside_is_refused_when_connecting(inside):
    """A stored URL whose name now resolves inside is refused before any connection; with
    the network allowed, two sends reach the same server."""

    async def post(channel, n):
        try:
            return [
                await channel.post(
                    "slack", PreparedRequest(f"http://localhost:{inside.port}/x", b"{}", {})
                )
                for _ in range(n)
            ]
        finally:
            await channel.aclose()

    with pytest.raises(PermanentDeliveryError, match="refused by the SSRF guard.*loopback"):
        asyncio.run(post(WebhookChannel(allow_http=True), 1))
    assert inside.requests == []
    allowed = WebhookChannel(allow_http=True, allow_networks=["127.0.0.0/8", "::1/128"])
    assert len(asyncio.run(post(allowed, 2))) == 2
    assert [path for path, _ in inside.requests] == ["/x", "/x"]
    assert inside.requests[0][1] == f"localhost:{inside.port}"  # the name, not the address


def test_a_stored_disguised_webhook_fails_its_delivery_with_the_reason(
    sample, db_url, inside, monkeypatch
):
    from newsletter.audience.endpoints import EndpointIn, add_endpoint

    allowed = Settings(
        database_url=db_url,
        webhook_allow_http=True,
        webhook_allow_networks=["127.0.0.0/8"],
        retry_base_seconds=0.02,
        retry_max_seconds=0.1,
    )
    with Session(sample) as s:
        ep = add_endpoint(
            session=s,
            settings=allowed,
            ep_in=EndpointIn(
                name="team",
                platform="slack",
                url=f"http://127.0.0.1:{inside.port}/hook",
                topics="governance,capital,hardware,open-source",
                mode="monthly",
            ),
        )
        ep.url = f"http://[::127.0.0.1]:{inside.port}/hook"  # as an older version stored it
        s.add(ep)
        s.commit()
        plan_in(s, allowed)
        s.commit()
    strict = allowed.model_copy(update={"webhook_allow_networks": []})
    asyncio.run(Worker(engine=sample, settings=strict).run(until_empty=True, poll_seconds=0.05))
    with Session(sample) as s:
        hooks = select(Delivery).where(Delivery.channel == "slack")
        statuses = {d.status for d in s.execute(hooks).scalars()}
        errors = [
            a.error
            for a in s.execute(
                select(DeliveryAttempt).where(
                    DeliveryAttempt.delivery_id.in_(hooks.with_only_columns(Delivery.id))
                )
            ).scalars()
        ]
    assert statuses == {"failed"}
    assert errors and all("IPv4-compatible form of 127.0.0.1" in e for e in errors)
    assert inside.requests == []


def test_a_stored_disguised_feed_is_refused_at_poll_time(engine, db_url, inside):
    settings = Settings(database_url=db_url)
    store_feed(engine, f"http://[64:ff9b::7f00:1]:{inside.port}/rss.xml")
    (result,) = poll_feeds(engine=engine, settings=settings)
    assert result.status == "error" and "NAT64 form of 127.0.0.1, a loopback" in result.error
    assert inside.requests == []


# --- item 17: URL normalisation keeps what matters and refuses what hides ---------------------


def test_normalise_url_keeps_ipv6_brackets_and_ports():
    assert (
        normalise_url("HTTP://[2001:DB8::1]:8080/a?b=1#frag") == "http://[2001:db8::1]:8080/a?b=1"
    )
    assert normalise_url("https://[::1]/") == "https://[::1]/"
    assert normalise_url(" https://Example.COM:443/x\n") == "https://example.com:443/x"


@pytest.mark.parametrize(
    "url,reason",
    [
        ("https://example.com:0/x", "bad port"),
        ("https://[::1]:0/x", "bad port"),
        ("https://example.com:65536/x", "bad port"),
        ("https://example.com:http/x", "bad port"),
        ("https://example.com/\u202egpj.exe", "bidirectional control character (U+202E)"),
        ("https://exa\u202dmple.com/", "bidirectional control character (U+202D)"),
        ("https://example.com/\u2066x\u2069", "bidirectional control character (U+2066)"),
        ("https://example.com/\u200fx", "bidirectional control character (U+200F)"),
        ("https://example.com/\u200bx", "invisible formatting character (U+200B)"),
        ("https://example.com/\x85x", "control character (U+0085)"),
        ("https://example.com/a\x00b", "control character (U+0000)"),
        ("https://example.com/a\tb", "control character (U+0009)"),
        ("https://example.com/a\u3000b", "space (U+3000)"),
        ("https://example.com/a\u00a0b", "space (U+00A0)"),
        ("https://example.com/a b", "space (U+0020)"),
    ],
)
def test_normalise_url_refuses_hidden_characters_and_bad_ports(url, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        normalise_url(url)


def test_bad_event_urls_are_a_per_record_error(api, engine):
    good = {"title": "Chipmaker ships a new accelerator", "occurred_on": "2025-07-01"}
    records = [
        ("record 1", {**good, "url": "https://example.com/\u202egpj.exe"}),
        ("record 2", {**good, "url": "https://example.com:0/x", "title": "Another headline"}),
        ("record 3", {**good, "url": "https://[2001:db8::1]:8443/ok", "title": "A third headline"}),
    ]
    with Session(engine) as s:
        report = import_records(session=s, records=records)
        s.commit()
    reasons = {p.where: p.reason for p in report.invalid}
    assert "bidirectional control character (U+202E)" in reasons["record 1"]
    assert "bad port" in reasons["record 2"] and report.new == 1
    with Session(engine) as s:
        assert s.execute(select(Event.url)).scalars().all() == ["https://[2001:db8::1]:8443/ok"]
    r = api.post("/api/v1/events", json={**good, "url": "https://example.com/\u202ex"})
    assert r.status_code in (400, 422) and "U+202E" in r.text, r.text
    r = api.post("/api/v1/events", json={**good, "url": "https://[::1]:0/x"})
    assert r.status_code in (400, 422) and "bad port" in r.text, r.text
    upload = "\n".join(
        json.dumps({**good, "title": f"Upload {i}", "url": url})
        for i, url in enumerate(["https://example.com/\u202ex", "https://example.com/fine"])
    )
    r = api.post(
        "/api/v1/events/import", files={"file": ("events.jsonl", upload, "application/x-ndjson")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["new"] == 1 and len(body["invalid"]) == 1 and "U+202E" in json.dumps(body)


def test_event_import_cli_reports_a_bad_url_per_record(cli, tmp_path):
    cli("sample", "load")
    path = tmp_path / "bad.jsonl"
    lines = [
        {"title": "Bidi", "occurred_on": "2025-07-01", "url": "https://example.com/\u202ex"},
        {"title": "Fine", "occurred_on": "2025-07-01", "url": "https://[2001:db8::2]/fine"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    out = cli("events", "import", str(path))
    assert "U+202E" in out.output and "Traceback" not in out.output
    assert "1 new" in out.output, out.output


# --- item 19: archive feeds stay well-formed whatever is asked or stored ----------------------


@pytest.fixture
def archive(engine, web_settings):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        plan_in(s, web_settings)
        s.commit()
    asyncio.run(
        Worker(engine=engine, settings=web_settings).run(until_empty=True, poll_seconds=0.05)
    )
    with Session(engine) as s:  # stored text with controls XML 1.0 cannot carry
        event = (
            s.execute(select(Event).order_by(Event.importance.desc().nulls_last(), Event.id))
            .scalars()
            .first()
        )
        event.title = {"en": "Brief\x01\x08\x0b\x1f ok \ufffe", "zh": "简报\x01 ok"}
        event.summary = {"en": "body\x01\x1e text"}  # (PostgreSQL stores no NUL)
        s.add(event)
        s.commit()
    return TestClient(create_app(settings=web_settings, engine=engine))


HOSTILE_QUERIES = [
    "topic=%01",
    "topic=%00",
    "topic=%1B%5B31m",
    "topic=%EF%BF%BE",
    "topic=%ED%A0%80",
    "topic=%FF",
    "topic=<x>&amp;",
    "topic=]]>",
    "topic=" + "a" * 5000,
    "topic=open-source&topic=%01",
    "topic=",
    "topic",
    "%01=%01",
    "topic=no-such-topic",
]


def test_archive_feeds_parse_for_hostile_query_strings(archive):
    for query in HOSTILE_QUERIES:
        for kind in ("rss", "atom", "json"):
            r = archive.get(f"/archive/feed.{kind}?{query}")
            assert r.status_code < 500, (kind, query, r.text)
            if r.status_code == 200:
                if kind == "json":
                    json.loads(r.text)
                else:
                    ET.fromstring(r.content)
            else:
                assert r.status_code in (400, 404) and "topic" in r.text, (kind, query, r.text)


def test_archive_feeds_drop_control_characters_and_refuse_bad_topics(archive):
    for kind in ("rss", "atom"):
        r = archive.get(f"/archive/feed.{kind}")
        assert r.status_code == 200
        ET.fromstring(r.content)  # well-formed although stored text has controls
        parsed = feedparser.parse(r.content)
        assert not parsed.bozo and "Brief ok" in parsed.entries[0].content[0].value
        topic = archive.get(f"/archive/feed.{kind}?topic=open-source")
        assert topic.status_code == 200 and len(feedparser.parse(topic.content).entries) >= 1
    feed = json.loads(archive.get("/archive/feed.json").text)  # JSON escapes what it holds
    assert feed["items"] and "body\x01 text" in feed["items"][0]["content_text"]
    bad = archive.get("/archive/feed.rss?topic=%01")
    assert bad.status_code == 400 and "topic must be a topic slug" in bad.text
    unknown = archive.get("/archive/feed.atom?topic=no-such-topic")
    assert unknown.status_code == 404 and "no topic named no-such-topic" in unknown.text


class KeepAliveReceivers:
    """`n` HTTP/1.1 receivers on 127.0.0.1 (one port each, so each is a host of its own to
    the client) that keep every connection open and count the open ones."""

    def __init__(self):
        self.open = 0
        self.servers = []

    async def start(self, n):
        for _ in range(n):
            self.servers.append(await asyncio.start_server(self.serve, "127.0.0.1", 0))
        return [s.sockets[0].getsockname()[1] for s in self.servers]

    async def serve(self, reader, writer):
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self):
        for s in self.servers:
            s.close()


def test_idle_connections_are_bounded_across_hosts():
    """Endpoints on many hosts (or ports) leave at most `in_flight` idle connections open
    between sends: each kept-alive one is a file descriptor, and the database and the mail
    server need theirs too."""

    async def run():
        receivers = KeepAliveReceivers()
        ports = await receivers.start(24)
        channel = WebhookChannel(allow_http=True, allow_networks=["127.0.0.0/8"], in_flight=4)
        try:
            for _ in range(2):
                for port in ports:
                    url = f"http://127.0.0.1:{port}/x"
                    assert (await channel.post("generic", PreparedRequest(url, b"{}", {}))) == (
                        "HTTP 200: ok"
                    )
            await asyncio.sleep(0.2)  # the receivers see the closed ones
            return receivers.open
        finally:
            await channel.aclose()
            await receivers.close()

    assert asyncio.run(run()) <= 4


def test_name_lookups_do_not_share_the_database_threads(inside):
    """Host names are looked up in the channel's own threads: the worker's database calls
    run in asyncio's default threads, and neither may wait for the other (a name whose DNS
    hangs must not hold the claims and results of every other delivery)."""
    from concurrent.futures import ThreadPoolExecutor

    async def run():
        loop = asyncio.get_running_loop()
        default = ThreadPoolExecutor(2)
        loop.set_default_executor(default)
        release = threading.Event()
        busy = [asyncio.to_thread(release.wait, 10) for _ in range(2)]  # database calls
        busy = [asyncio.ensure_future(b) for b in busy]
        await asyncio.sleep(0.1)
        channel = WebhookChannel(
            allow_http=True, allow_networks=["127.0.0.0/8", "::1/128"], timeout=2
        )
        try:
            url = f"http://localhost:{inside.port}/x"
            return await channel.post("slack", PreparedRequest(url, b"{}", {}))
        finally:
            release.set()
            await asyncio.gather(*busy)
            await channel.aclose()

    assert asyncio.run(run()).startswith("HTTP 200")
    assert [path for path, _ in inside.requests] == ["/x"]


async def post_to_raw_server(answer: bytes | None, path: str = "/x") -> str:
    """One webhook post to a bare TCP server on 127.0.0.1 that reads the request and
    writes `answer` (hangs up without a word when None): the channel's answer."""

    async def serve(reader, writer):
        await reader.read(65536)
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{path}"
    channel = WebhookChannel(allow_http=True, allow_networks=["127.0.0.0/8"], timeout=5)
    try:
        return await channel.post("slack", PreparedRequest(url, b"{}", {}))
    finally:
        await channel.aclose()
        server.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nok",
    ],
)
def test_an_answer_that_is_not_http_is_a_temporary_failure(answer):
    """A receiver (or something in front of it) answering bytes that are not HTTP fails
    the send for now, like a dropped connection: not as a crash that fails the rows for
    good."""

    with pytest.raises(TemporaryDeliveryError, match="not a valid HTTP answer") as info:
        asyncio.run(post_to_raw_server(answer, "/T000/B000/XXXX-token"))
    assert "token" not in str(info.value)  # the URL (a secret for chat webhooks) is not kept


@pytest.mark.parametrize("charset", ["zlib", "rot13", "idna", "undefined"])
def test_an_answer_in_a_charset_that_is_not_text_is_read_as_utf8(charset):
    """The charset of an answer is the receiver's choice: one Python cannot decode text
    with (a compression codec, an unknown name) is read as UTF-8, so a 200 is still a
    send and a 503 still a try-again, not a crash that fails the rows for good."""

    def answer(status: int) -> bytes:
        return (
            f"HTTP/1.1 {status} X\r\nContent-Type: text/plain; charset={charset}\r\n"
            "Content-Length: 2\r\n\r\nok".encode()
        )

    assert asyncio.run(post_to_raw_server(answer(200))) == "HTTP 200: ok"
    with pytest.raises(TemporaryDeliveryError, match="HTTP 503: ok"):
        asyncio.run(post_to_raw_server(answer(503)))


def test_a_receiver_that_hangs_up_is_a_connection_problem_not_a_timeout():
    """httpx-aiohttp calls every dropped connection a ConnectTimeout; the attempt says what
    happened (a receiver hanging up at once is not one that is slow)."""

    with pytest.raises(TemporaryDeliveryError, match="connection problem.*disconnected"):
        asyncio.run(post_to_raw_server(None))


def test_a_name_that_does_not_resolve_now_is_tried_again():
    """A stored endpoint's name that DNS cannot answer for now (a resolver down, a lapsed
    zone) fails the send for now, not the rows for good; adding such a URL is refused."""
    url = "http://no-such-host.invalid/x"
    with pytest.raises(UnsafeURLError, match="cannot resolve"):
        check_url(url, allow_http=True)
    channel = WebhookChannel(allow_http=True)

    async def post():
        try:
            return await channel.post("slack", PreparedRequest(url, b"{}", {}))
        finally:
            await channel.aclose()

    with pytest.raises(TemporaryDeliveryError, match="cannot resolve no-such-host.invalid"):
        asyncio.run(post())
