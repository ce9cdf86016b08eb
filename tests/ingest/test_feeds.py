"""Feeds served from 127.0.0.1: RSS 2.0, Atom, a broken entry, 304, 500 and not-XML."""

import json

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.core.models import Event, Feed
from newsletter.core.settings import Settings
from newsletter.ingest.events import event_as_dict
from newsletter.ingest.feeds import FeedError, add_feed
from newsletter.pipeline import poll_feeds
from newsletter.topics.catalogue import ensure_default_topics
from tests.support.http import RouteServer

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>AI Wire</title><link>https://wire.example.com/</link><description>x</description>
<item><title>Chipmaker unveils a new AI accelerator</title><link>https://wire.example.com/a</link>
<description>&lt;p&gt;The &lt;b&gt;chip&lt;/b&gt; targets inference.&lt;/p&gt;</description>
<pubDate>Tue, 15 Jul 2025 09:00:00 GMT</pubDate></item>
<item><title>Lab raises $2 billion in new funding</title><link>https://wire.example.com/b</link>
<pubDate>Wed, 16 Jul 2025 09:00:00 GMT</pubDate></item>
<item><title>An entry with no link at all</title></item>
</channel></rss>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>监管动态</title><id>urn:x</id><updated>2025-07-20T00:00:00Z</updated>
<entry><title>欧盟发布通用人工智能模型指南</title><id>urn:1</id><link href="https://cn.example.com/1"/>
<updated>2025-07-18T08:00:00Z</updated><summary>指南明确了合规义务。</summary></entry>
</feed>"""


@pytest.fixture
def feed_server():
    server = RouteServer(
        {
            "/rss.xml": (200, {"Content-Type": "application/rss+xml", "ETag": '"v1"'}, RSS),
            "/atom.xml": (200, {"Content-Type": "application/atom+xml"}, ATOM),
            "/error": (500, {}, "boom"),
            "/notxml": (200, {"Content-Type": "text/html"}, "<html><body>Hello {{</body>"),
        },
        default=(404, {}, "nope"),
    )
    yield server
    server.close()


@pytest.fixture
def settings(db_url):
    return Settings(database_url=db_url, webhook_allow_networks=["127.0.0.0/8"])


def add_feeds(engine, settings, server):
    feeds = [  # path, name, region, language
        ("/rss.xml", "wire", "global", "en"),
        ("/atom.xml", "cn", "china", "zh"),
        ("/error", "broken", "global", "en"),
        ("/notxml", "html", "global", "en"),
    ]
    with Session(engine) as s:
        ensure_default_topics(session=s)
        for path, name, region, language in feeds:
            add_feed(
                session=s,
                settings=settings,
                url=server.url + path,
                name=name,
                region=region,
                language=language,
            )
        s.commit()


def test_feeds_become_matched_events_and_bad_feeds_do_not_stop_others(
    engine, settings, feed_server
):
    add_feeds(engine, settings, feed_server)
    results = {r.feed: r for r in poll_feeds(engine=engine, settings=settings)}
    assert (results["wire"].status, len(results["wire"].new_ids), results["wire"].invalid) == (
        "new",
        2,
        1,
    )
    assert (results["cn"].status, len(results["cn"].new_ids)) == ("new", 1)
    assert results["broken"].status == "error" and "HTTP 500" in results["broken"].error
    assert results["html"].status == "error" and "not a feed" in results["html"].error
    with Session(engine) as s:
        events = {
            e.url: event_as_dict(session=s, event=e) for e in s.execute(select(Event)).scalars()
        }
        feeds = {f.name: f for f in s.execute(select(Feed)).scalars()}
    chip = events["https://wire.example.com/a"]
    assert chip["summary"] == {"en": "The chip targets inference."}  # markup dropped
    assert (
        chip["occurred_on"] == "2025-07-15"
        and chip["source"] == "wire"
        and "hardware" in chip["topics"]
    )
    assert "capital" in events["https://wire.example.com/b"]["topics"]
    zh = events["https://cn.example.com/1"]
    assert (
        zh["region"] == "china"
        and zh["title"] == {"zh": "欧盟发布通用人工智能模型指南"}
        and "governance" in zh["topics"]
    )
    assert feeds["wire"].etag == '"v1"' and feeds["broken"].consecutive_failures == 1
    assert feeds["broken"].next_poll_at > feeds["wire"].next_poll_at  # backs off


def test_conditional_get_and_repolls_add_nothing(engine, settings, feed_server):
    add_feeds(engine, settings, feed_server)
    poll_feeds(engine=engine, settings=settings)
    again = {r.feed: r for r in poll_feeds(engine=engine, settings=settings, only="wire")}
    assert again["wire"].status == "not-modified"
    cn = poll_feeds(engine=engine, settings=settings, only="cn")[0]
    assert cn.status == "new" and cn.new_ids == [] and cn.duplicates == 1


def test_feed_cli_and_ssrf(engine, cli, feed_server, monkeypatch):
    cli("sample", "load")
    with pytest.raises(FeedError, match="loopback"), Session(engine) as s:
        add_feed(
            session=s,
            settings=Settings(),
            url="http://127.0.0.1:9/x",
            name=None,
            region="global",
            language="en",
        )
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", json.dumps(["127.0.0.0/8"]))
    assert cli("feeds", "add", feed_server.url + "/rss.xml", "--name", "wire").exit_code == 0
    out = cli("feeds", "poll", "wire")
    assert out.exit_code == 0 and "wire: new, 2 new, 0 duplicate, 1 invalid" in out.output
    assert cli("feeds", "add", feed_server.url + "/error", "--name", "bad").exit_code == 0
    bad = cli("feeds", "poll", "bad")
    assert bad.exit_code == 1 and "HTTP 500" in bad.output
    assert "wire" in cli("feeds", "list").output
    assert cli("feeds", "remove", "bad").exit_code == 0


def feed_row(engine, name: str) -> Feed | None:
    with Session(engine) as s:
        return s.execute(select(Feed).where(Feed.name == name)).scalar()


def test_feeds_edit_cli_changes_what_is_given_and_refuses_bad_input(
    engine, cli, feed_server, monkeypatch
):
    cli("sample", "load")
    monkeypatch.setenv("NEWSLETTER_WEBHOOK_ALLOW_NETWORKS", json.dumps(["127.0.0.0/8"]))
    assert cli("feeds", "add", feed_server.url + "/rss.xml", "--name", "wire").exit_code == 0
    assert cli("feeds", "add", feed_server.url + "/atom.xml", "--name", "cn").exit_code == 0
    assert cli("feeds", "poll", "wire").exit_code == 0
    # the list shows what the last poll brought: 2 new events for wire, not polled yet for cn
    listed = cli("feeds", "list").output
    header = " ".join("".join(c.strip() for c in line.split("┃")) for line in listed.splitlines())
    assert "new" in header
    cells = {
        row[1]: row[6]  # name -> last new
        for line in listed.splitlines()
        if len(row := [c.strip() for c in line.split("│")]) > 6 and row[1]
    }
    assert cells == {"cn": "-", "wire": "2"}, listed

    done = cli("feeds", "edit", "wire", "--new-name", "ai-wire", "--region", "China")
    assert done.exit_code == 0, done.stderr
    assert "Updated feed ai-wire: name ai-wire, region china." in done.output
    feed = feed_row(engine, "ai-wire")
    assert feed is not None and (feed.region, feed.language) == ("china", "en")
    assert feed.url == feed_server.url + "/rss.xml"
    assert cli("feeds", "edit", "ai-wire", "--region", "china").output.startswith(
        "Feed ai-wire unchanged."
    )
    # a new URL: checked like a new feed's, polled afresh
    moved = cli("feeds", "edit", "ai-wire", "--url", feed_server.url + "/rss.xml?v=2")
    assert moved.exit_code == 0 and feed_row(engine, "ai-wire").etag is None, moved.stderr

    bad = [  # (arguments, what the error says)
        (["nope", "--region", "eu"], "no feed named 'nope'"),
        (["ai-wire"], "nothing to change"),
        (["ai-wire", "--new-name", "x", "--language", "english!"], "language 'english!'"),
        (["ai-wire", "--new-name", "cn"], "a feed named 'cn' exists already"),
        (["ai-wire", "--new-name", "a/b"], "cannot contain '/'"),
        (["ai-wire", "--url", "ftp://example.com/feed", "--new-name", "x"], "refusing feed URL"),
        (["ai-wire", "--url", feed_server.url + "/atom.xml"], "the feed 'cn' has this URL"),
        (["ai-wire", "--region", "Not a region"], "region must be"),
    ]
    for args, says in bad:
        r = cli("feeds", "edit", *args)
        assert r.exit_code == 1 and says in r.stderr, (args, r.stderr)
    # nothing stored by any of them
    feed = feed_row(engine, "ai-wire")
    assert (feed.url, feed.region, feed.language) == (
        feed_server.url + "/rss.xml?v=2",
        "china",
        "en",
    )
    assert feed_row(engine, "x") is None
