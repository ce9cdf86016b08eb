"""The monthly digest as a reader sees it: sent through a real SMTP server on 127.0.0.1,
the received HTML part opened in headless Chromium on a phone and a desktop, in light and
dark mode. With NEWSLETTER_UPDATE_SCREENSHOTS=1 the screenshots go to docs/screenshots/."""

from __future__ import annotations

import re
from email.header import decode_header, make_header

import pytest
from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.subscribers import SubscriberIn, add_subscriber
from newsletter.core.models import Event
from newsletter.pipeline.sample import load_sample
from newsletter.topics.catalogue import TopicIn, create_topic
from tests.support.planning import plan
from tests.support.settings import mail_settings
from tests.support.workers import drain

READERS = {
    "zh": ("li@example.com", "李雷", "zh", "governance,capital"),
    "en": ("ada@example.com", "Ada", "en", "hardware,open-source"),
    # follows only a topic with no July events: gets the editor's picks alone
    "none": ("zed@example.com", "", "en", "robotics"),
}
PINNED = ("WAIC 2025 opens", "Panshi")  # events no topic matches, pinned by an editor


@pytest.fixture
def mail(engine, db_url, smtp_server):
    """{reader key: received message}, the July 2025 monthly digest of each reader."""
    settings = mail_settings(
        db_url, smtp_server.url, mail_from="AI Industry Brief <brief@news.example.org>"
    )
    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        create_topic(
            session=s,
            topic_in=TopicIn(
                slug="robotics",
                name_en="Robotics",
                name_zh="机器人",
                rules={"include": ["robot arm"]},
            ),
        )
        for event in s.execute(select(Event)).scalars():
            if event.title.get("en", "").startswith(PINNED[0]) or PINNED[1] in event.title.get(
                "en", ""
            ):
                event.pinned = True
        for email_, name, lang, topics in READERS.values():
            add_subscriber(
                session=s,
                sub_in=SubscriberIn(email=email_, name=name, language=lang, topics=topics),
            )
        s.commit()
    plan(engine, settings)
    drain(engine, settings)
    got = {}
    for key, (email_, *_rest) in READERS.items():
        (received,) = smtp_server.recorder.to(email_)
        got[key] = received.message
    return got


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def events_by_title(engine, lang: str) -> dict[str, Event]:
    with Session(engine) as s:
        return {e.title.get(lang) or e.title["en"]: e for e in s.execute(select(Event)).scalars()}


# --- what the page looks like ------------------------------------------------------------

LUMINANCE_JS = """
(selector) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  return [...document.querySelectorAll(selector)].slice(0, 5).map((el) => ({
    text: el.textContent.trim().slice(0, 30),
    color: rgb(getComputedStyle(el).color).slice(0, 3),
    background: background(el),
  }));
}
"""


def contrast(a: list[float], b: list[float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(rgb):
        def channel(c):
            c = c / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b_ = (channel(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b_

    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


MUTED = [".brand", ".note", ".group", ".event-meta", ".chip", ".imp", ".footer", ".read"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_digest_fits_phones_and_desktops_in_light_and_dark(mail, browser, screenshot_dir, lang):
    html = html_of(mail[lang])
    assert '<meta name="color-scheme" content="light dark">' in html
    backgrounds = {}
    for width in (320, 390, 1200):
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": width, "height": 2000}, color_scheme=scheme
            )
            page = context.new_page()
            page.set_content(html)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{lang} {scheme}: the page is {scroll} px wide at {width}"
            backgrounds[(width, scheme)] = page.evaluate(
                "getComputedStyle(document.querySelector('.card')).backgroundColor"
            )
            for selector in MUTED:
                for item in page.evaluate(LUMINANCE_JS, selector):
                    ratio = contrast(item["color"], item["background"])
                    assert ratio >= 4.5, f"{lang} {scheme} {selector} {item}: {ratio:.2f}:1"
            if width < 1000:
                # a thumb can hit every link that is not inside a sentence
                for selector in (".read", ".footer a"):
                    heights = page.eval_on_selector_all(
                        selector, "els => els.map(e => e.getBoundingClientRect().height)"
                    )
                    assert heights and min(heights) >= 44, (selector, heights)
                sizes = page.eval_on_selector_all(
                    ".event-summary, .lead, .event-title",
                    "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))",
                )
                assert min(sizes) >= 15
                card = page.eval_on_selector(".card", "e => e.getBoundingClientRect().width")
                assert card == width  # edge to edge on a phone
            else:
                card = page.eval_on_selector(".card", "e => e.getBoundingClientRect().width")
                assert card == 600
            if width != 320:
                page.screenshot(path=str(screenshot_dir / f"digest-{lang}-{width}-{scheme}.png"))
            context.close()
    for width in (320, 390, 1200):  # the dark-mode rules reached the received message
        assert backgrounds[(width, "light")] != backgrounds[(width, "dark")]


def test_links_look_like_links_and_each_item_has_a_read_link(mail):
    for key in ("zh", "en"):
        html = html_of(mail[key])
        items = html.count('class="event"')
        read = re.findall(r'<a class="read" href="(https://[^"]+)"[^>]*>([^<]+)</a>', html)
        assert len(read) == items > 0
        assert all(("阅读原文" if key == "zh" else "Read the original") in t for _, t in read)
        assert "text-decoration: underline" in re.search(
            r'<a class="read"[^>]*style="([^"]*)"', html
        ).group(1)


# --- what is in it, in which order -------------------------------------------------------


def sections(text: str) -> dict[str, list[str]]:
    """{section name: item titles (with a [region] line before each region's items)}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"^== (.+) ==$", line):
            current = out.setdefault(m.group(1), [])
        elif current is not None and (m := re.match(r"^-- (.+) --$", line)):
            current.append(f"[{m.group(1)}]")
        elif current is not None and (m := re.match(r"^\* (.+?)(?: \[[^\]]+\])?$", line)):
            current.append(m.group(1))
    return out


def test_topics_order_by_importance_then_date_grouped_by_region(mail, engine):
    events = events_by_title(engine, "zh")
    got = sections(text_of(mail["zh"]))
    assert list(got)[:1] == ["本月要闻"] and "锐评" in got
    governance = got["治理与政策"]
    # the section mixes regions: international first, then China, each under its heading
    assert governance[0] == "[国际]" and "[国内]" in governance
    split = governance.index("[国内]")
    for region, group in (("global", governance[1:split]), ("china", governance[split + 1 :])):
        assert group
        keys = [(-(events[t].importance or 0), events[t].occurred_on) for t in group]
        assert keys == sorted(keys)
        assert {events[t].region for t in group} == {region}
    html = html_of(mail["zh"])
    # importance 4 marked, quietly (importance 5 events are all among the picks)
    assert html.count('<span class="imp"') >= 5 and "重要" in html


def test_picks_reach_a_reader_whose_topics_match_nothing(mail, engine):
    text = text_of(mail["none"])
    got = sections(text)
    assert list(got) == ["Editor's picks", "Sharp take"]
    picks = [t for t in got["Editor's picks"] if not t.startswith("[")]
    events = events_by_title(engine, "en")
    wanted = {t for t, e in events.items() if e.pinned or e.importance == 5}
    assert set(picks) == wanted
    assert any(t.startswith(PINNED[0]) for t in picks)  # pinned, no topic, importance 4
    assert any("Gemini Deep Think" in t for t in picks)  # importance 5, no topic
    # and the same picks open every other monthly digest, counted once
    for key in ("zh", "en"):
        assert list(sections(text_of(mail[key])))[0] in ("本月要闻", "Editor's picks")


def test_an_event_in_two_followed_topics_appears_once_with_a_chip(mail, engine):
    events = events_by_title(engine, "zh")
    text = text_of(mail["zh"])
    both = [t for t, e in events.items() if e.url and "New Zealand" in e.title.get("en", "")]
    (title,) = both  # governance and capital, importance 3: not a pick
    url = events[title].url
    assert text.count(url) == 1
    html = html_of(mail["zh"])
    assert html.count(f'class="read" href="{url}"') == 1
    block = html[html.index(f'href="{url}"') :]
    block = block[: block.index('class="read"')]
    assert re.search(r'<span class="chip"[^>]*>资本与投资</span>', block) or "资本" in block
    assert "同属：" in text


def test_chinese_readers_get_chinese_chrome(mail):
    zh, en = mail["zh"], mail["en"]
    assert zh["From"].addresses[0].display_name == "AI 产业简报"
    assert en["From"].addresses[0].display_name == "AI Industry Brief"
    assert str(make_header(decode_header(zh["List-Id"]))).startswith("AI 产业简报 · 月度观察")
    assert zh["Subject"] == "AI 产业简报 · 月度观察 · 2025年7月"
    text, html = text_of(zh), html_of(zh)
    assert "来源：" in text and "来源: " not in text and "来源：" in html
    assert "阅读原文" in html and "本月要闻" in html and "Read" not in text
    assert 'lang="zh"' in html


def test_mailto_unsubscribe_only_when_the_bounce_domain_is_configured(engine, db_url):
    from newsletter.planning.digests import preview_digest
    from newsletter.rendering.editions import make_environment

    with Session(engine, expire_on_commit=False) as s:
        load_sample(session=s)
        add_subscriber(session=s, sub_in=SubscriberIn(email="x@example.com", topics="capital"))
        s.commit()
        for domain, expected in ((None, 1), ("bounces.news.example.org", 2)):
            settings = mail_settings(db_url, bounce_domain=domain)
            preview = preview_digest(
                session=s,
                env=make_environment(settings.templates_dir),
                settings=settings,
                frequency="monthly",
                period_key="2025-07",
                email="x@example.com",
            )
            header = re.search(rb"List-Unsubscribe: (.*?)\r\n(?!\s)", preview.message, re.S)
            links = header.group(1).decode().split(",")
            assert len(links) == expected
            assert links[0].strip().startswith("<https://news.example.org/u/")
            if domain:
                assert "mailto:unsubscribe@bounces.news.example.org" in links[1]
