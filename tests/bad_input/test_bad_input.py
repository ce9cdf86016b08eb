"""Hostile input end to end: feeds, naughty strings, markup in titles, CR/LF in headers.
None may crash, inject a header, run a script, or lose what is stored."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.core.models import Event, Topic
from newsletter.core.settings import Settings
from newsletter.ingest.feeds import add_feed
from newsletter.pipeline import poll_feeds
from newsletter.rendering.cards import event_items, render_messages
from newsletter.rendering.editions import make_environment
from newsletter.topics.catalogue import ensure_default_topics
from tests.support.planning import plan_in

NAUGHTY = [
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }}",
    "{% raw %}",
    "'; DROP TABLE event; --",
    "\u202eevil\u202c",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒g̲͚̐o̜̪ͫ",
    "𝕋𝕖𝕤𝕥 😀",
    "\x00nul\x07bell",
    "a\r\nBcc: victim@example.net",
    "\u2028line sep",
    "null",
    "undefined",
    "-1",
    "1e309",
    "../../etc/passwd",
    "%s%s%s%n",
    "\\\\",
    "`rm -rf /`",
    "*bold* [link](javascript:x)",
    "@everyone @here",
    "<@U123>",
    "x" * 400,
]

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<rss version="2.0"><channel><title>&lol9;</title><item><title>&lol9;</title><link>https://x.example/1</link></item></channel></rss>"""

HUGE = (
    "<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item><title>"
    + "A" * 3000
    + "</title><link>https://x.example/huge</link><description>"
    + "B" * 200_000
    + "</description></item></channel></rss>"
)

LATIN1 = (
    "<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel><title>t</title>"
    "<item><title>Régulation européenne des puces</title><link>https://x.example/fr</link></item>"
    "</channel></rss>"
).encode("iso-8859-1")
LYING = (
    "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
    "<item><title>Caf\xe9 chips</title><link>https://x.example/lie</link></item></channel></rss>"
).encode("latin-1")


@pytest.fixture
def hostile_feeds():
    routes = {
        "/laughs": BILLION_LAUGHS.encode(),
        "/huge": HUGE.encode(),
        "/latin1": LATIN1,
        "/lying": LYING,
        "/big": b"<rss>" + b"x" * 6_000_000 + b"</rss>",
    }

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            body = routes.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hostile_feeds_are_contained(engine, db_url, hostile_feeds):
    settings = Settings(database_url=db_url, webhook_allow_networks=["127.0.0.0/8"])
    with Session(engine) as s:
        ensure_default_topics(session=s)
        for name in ("laughs", "huge", "latin1", "lying", "big"):
            add_feed(
                session=s,
                settings=settings,
                url=f"{hostile_feeds}/{name}",
                name=name,
                region="global",
                language="en",
            )
        s.commit()
    results = {r.feed: r for r in poll_feeds(engine=engine, settings=settings)}
    assert results["big"].status == "error" and "larger than" in results["big"].error
    assert results["latin1"].status == "new" and len(results["latin1"].new_ids) == 1
    assert results["huge"].status in (
        "new",
        "error",
    )  # a 3,000-character title is refused, not truncated silently
    with Session(engine) as s:
        titles = [e.title["en"] for e in s.execute(select(Event)).scalars()]
        assert "Régulation européenne des puces" in titles
        assert all(len(t) <= 500 for t in titles)
        assert not any("lollollol" in t for t in titles)  # no entity expansion reached storage
        summaries = [len(e.summary.get("en", "")) for e in s.execute(select(Event)).scalars()]
        assert all(n <= 5000 for n in summaries)


def test_naughty_strings_through_the_cli_import(cli, tmp_path):
    cli("sample", "load")
    before = len(json.loads(cli("events", "list", "--format", "json").output))
    records = [
        {
            "title": {"en": s, "zh": s},
            "summary": {"en": s},
            "source": s[:200],
            "url": f"https://n.example/{i}",
            "occurred_on": "2025-07-20",
        }
        for i, s in enumerate(NAUGHTY)
    ]
    path = tmp_path / "naughty.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    result = cli("events", "import", str(path))
    assert result.exit_code in (0, 1)
    rows = json.loads(cli("events", "list", "--format", "json").output)
    assert len(rows) >= before + len(NAUGHTY) - 2
    stored = {r["url"]: r for r in rows}
    crlf = stored[
        f"https://n.example/{NAUGHTY.index('a' + chr(13) + chr(10) + 'Bcc: victim@example.net')}"
    ]
    assert crlf["title"]["en"] == "a Bcc: victim@example.net"
    assert (
        stored["https://n.example/0"]["title"]["en"] == "<script>alert('x')</script>"
    )  # kept as text
    for i in range(len(NAUGHTY)):
        if f"https://n.example/{i}" in stored:
            assert cli("events", "show", str(stored[f"https://n.example/{i}"]["id"])).exit_code == 0


def test_markup_in_titles_is_inert_in_emails_and_cards(engine, db_url):
    from newsletter.core.periods import parse_period
    from newsletter.planning.digests import DigestRenderer
    from newsletter.rendering.editions import Segment

    settings = Settings(database_url=db_url)
    env = make_environment(settings.templates_dir)
    with Session(engine) as s:
        ensure_default_topics(session=s)
        from newsletter.ingest.files import import_records

        import_records(
            session=s,
            records=iter(
                [
                    (
                        "1",
                        {
                            "title": "<script>alert('chip')</script> GPU ban",
                            "summary": "<img src=x onerror=alert(1)> @everyone *boom*",
                            "url": "https://x.example/s",
                            "occurred_on": "2025-07-05",
                            "source": "<b>Wire</b>",
                        },
                    )
                ]
            ),
        )
        s.commit()
        renderer = DigestRenderer(
            session=s, env=env, settings=settings, period=parse_period("monthly", "2025-07")
        )
        events = renderer.events
        topics = list(s.execute(select(Topic)).scalars())
    rendered = renderer.render(
        Segment("email", "monthly", renderer.period, "en", ("governance", "hardware")), events
    )
    assert "<script>" not in rendered.body_html and "&lt;script&gt;" in rendered.body_html
    assert "<img" not in rendered.body_html and "<b>Wire</b>" not in rendered.body_html
    items = event_items(events, topics, "en")
    for platform in ("slack", "discord", "teams", "feishu", "dingtalk", "wecom", "generic"):
        (msg,) = render_messages(
            env, platform=platform, kind="alert", lang="en", title="t", items=items
        )
        text = json.dumps(msg, ensure_ascii=False)
        if platform == "slack":
            assert "<script>" not in text and "&lt;script&gt;" in text
        if platform == "discord":
            assert msg["allowed_mentions"] == {"parse": []}
        if platform in ("feishu", "dingtalk", "wecom", "teams"):
            assert "\\\\*boom\\\\*" in text  # markdown cannot be smuggled in


def test_crlf_in_a_signup_name_never_reaches_a_header(engine, db_url, smtp_server):
    from newsletter.audience.subscribers import SubscriberIn, add_subscriber
    from newsletter.pipeline.sample import load_sample
    from tests.support.workers import drain

    settings = Settings(database_url=db_url, smtp_url=smtp_server.url)
    with Session(engine) as s:
        load_sample(session=s)
        sub = add_subscriber(
            session=s,
            sub_in=SubscriberIn(
                email="crlf@example.com",
                name="Eve\r\nBcc: all@example.net\r\nSubject: owned",
                topics="capital",
            ),
        )
        assert "\n" not in sub.name and "\r" not in sub.name

        plan_in(s, settings)
        s.commit()
    drain(engine, settings)
    (got,) = smtp_server.recorder.to("crlf@example.com")
    assert got.message["Bcc"] is None and got.message.get_all("Subject") == [got.message["Subject"]]
    assert "owned" not in got.message["Subject"]


def test_bad_email_addresses_are_refused_everywhere(cli, tmp_path):
    cli("sample", "load")
    for bad in [
        "a@b",
        "x@example.com\r\nBcc: y@example.com",
        "<x@example.com>",
        "x@@example.com",
        "",
        "x" * 400 + "@example.com",
    ]:
        r = cli("subscribers", "add", bad, "--topics", "capital")
        assert r.exit_code != 0
    with Session(
        __import__("newsletter.core.db", fromlist=["make_engine"]).make_engine(
            __import__("os").environ["NEWSLETTER_DATABASE_URL"]
        )
    ) as s:
        from newsletter.core.models import Subscriber

        assert s.execute(select(func.count()).select_from(Subscriber)).scalar_one() == 0
