"""Rendering: one Jinja2 environment; a digest segment rendered once into an Edition.

Per-recipient parts (greeting, signed links) are left as slots in the stored edition
and filled at send time (`personalise`, or `split_slots` for emails), so a retry sends the same bytes and the
database holds one copy per segment. Slots are delimited by a control character that
the text cleaning strips from every user-supplied string, and that the environment
also removes from every value a template prints except a slot itself: no stored
text, cleaned or not, can forge one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from newsletter.core.models import Event, Topic
from newsletter.core.periods import Period
from newsletter.ingest.events import PICKS_FREQUENCIES, is_pick, localised
from newsletter.ingest.takes import markdown_to_html
from newsletter.rendering import labels as i18n
from newsletter.rendering.click_links import Linker

SLOT = "\x1e"
# click_reader: the per-reader part of click links (only in editions made while an owner
# has per-reader click counts on): put in place of the link's random sentinel after
# rendering (see click_links.Linker), as a slot inside a macro's output would not survive
SLOTS = ("greeting", "unsubscribe_url", "preferences_url", "email", "click_reader")


_MARKERS = {f"{SLOT}{name}{SLOT}" for name in SLOTS}
_MARKER = re.compile(f"{SLOT}({'|'.join(SLOTS)}){SLOT}")


def slot(name: str) -> Markup:
    if name not in SLOTS:
        raise ValueError(f"unknown slot {name!r}")
    return Markup(f"{SLOT}{name}{SLOT}")


def no_forged_slots(value: Any) -> Any:
    """Jinja's finalize: a printed value keeps the slot delimiter only if it *is* a slot.

    So a title, topic name or take holding marker text prints harmlessly; a slot can
    come only from `slot()` in a template (not from a macro's output, which is a value
    like any other).
    """
    if isinstance(value, str) and SLOT in value and value not in _MARKERS:
        return value.replace(SLOT, "")
    return value


def make_environment(templates_dir: Path) -> Environment:
    """The one environment for email, webhook payloads and pages."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=select_autoescape(["html", "htm", "xml", "html.j2", "xml.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=no_forged_slots,
    )
    env.filters["localised"] = localised
    env.filters["clip"] = clip
    env.filters["slack"] = slack_escape
    env.filters["slack_url"] = slack_url
    env.filters["md"] = markdown_escape
    env.filters["md_url"] = markdown_url
    env.filters["date_label"] = i18n.format_date
    env.globals["slot"] = slot
    return env


def clip(value: str | None, limit: int) -> str:
    """At most `limit` characters, cut at a word where possible, with an ellipsis."""
    value = value or ""
    if len(value) <= limit:
        return value
    cut = value[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    if space > limit * 0.7:
        cut = cut[:space]
    return cut.rstrip() + "…"


def slack_escape(value: str | None) -> str:
    """Slack mrkdwn: &, < and > are control characters."""
    return (value or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_url(value: str) -> str:
    return slack_escape(value).replace("|", "%7C")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#>~|<!])")


def markdown_escape(value: str | None) -> str:
    """Chat markdown (Feishu, DingTalk, WeCom, Teams): user text never becomes markup."""
    return _MD_SPECIAL.sub(r"\\\1", value or "")


def markdown_url(value: str) -> str:
    return value.replace("(", "%28").replace(")", "%29").replace(" ", "%20")


def personalise(body: str, values: dict[str, str], *, html: bool) -> str:
    """Fill the slots of a stored edition for one recipient, in one pass (a value that
    holds marker text, e.g. a reader's name, is never filled in turn)."""

    def fill(m: re.Match[str]) -> str:
        value = values.get(m.group(1), "")
        return escape(value, quote=True) if html else value

    return _MARKER.sub(fill, body)


def split_slots(body: str) -> list[str]:
    """[text, slot name, text, slot name, ..., text]: a body with its slots marked, for
    code that fills them in its own way (emails encode the texts once per edition)."""
    return _MARKER.split(body) if SLOT in body else [body]


@dataclass
class Segment:
    """What a group of recipients share: everything a digest body depends on."""

    format: str
    frequency: str
    period: Period
    language: str
    topic_slugs: tuple[str, ...]

    @property
    def key(self) -> str:
        return "|".join(
            [
                self.format,
                self.frequency,
                self.period.key,
                self.language,
                ",".join(self.topic_slugs),
            ]
        )


@dataclass
class Rendered:
    subject: str
    body_html: str
    body_text: str
    content_hash: str


REGION_ORDER = ("global", "china")


def _importance_order(pair: tuple[Event, list[str]]) -> tuple:
    """Most important first, then by date (the order of the monthly review)."""
    event = pair[0]
    return (-(event.importance or 0), event.occurred_on, event.id or 0)


def _groups(items: list[dict[str, Any]], t: dict[str, str]) -> list[dict[str, Any]]:
    """A section's items by region (国际 / 国内) when it mixes regions, else one group."""
    regions = list(dict.fromkeys(i["region_code"] for i in items))
    if len(regions) < 2:
        return [{"name": "", "events": items}]
    regions.sort(key=lambda r: (REGION_ORDER.index(r) if r in REGION_ORDER else 99, r))
    return [
        {"name": t.get(f"region.{r}", r), "events": [i for i in items if i["region_code"] == r]}
        for r in regions
    ]


def digest_context(
    *,
    segment: Segment,
    topics: list[Topic],
    events: list[tuple[Event, list[str]]],
    take_markdown: str | None,
    base_url: str,
    links: Linker | None = None,
) -> dict[str, Any]:
    """The digest's sections: the editor's picks first (monthly), then each followed topic.

    An event appears once: among the picks, else under the first of the segment's topics
    it has, with chips naming the other followed topics it belongs to. Within a section,
    most important first, then by date; a section mixing regions is grouped by region.
    With `links` (click counting on), each event's link is a signed redirect naming the
    event and its section.
    """
    lang = segment.language
    t = i18n.labels(lang)
    kind = t[f"digest.{segment.frequency}"]
    period_label = segment.period.label(lang)
    by_slug = {topic.slug: topic for topic in topics}
    order = [s for s in segment.topic_slugs if s in by_slug]

    def topic_name(slug: str) -> str:
        return by_slug[slug].name_zh if lang == "zh" else by_slug[slug].name_en

    def item(event: Event, others: list[str], section: str) -> dict[str, Any]:
        importance = event.importance or 0
        return {
            "title": localised(event.title, lang),
            "summary": localised(event.summary, lang) if event.summary else "",
            "url": links(event.id, event.url, section) if links else event.url,
            "source": (event.sources or {}).get(lang) or event.source,
            "date": i18n.format_date(event.occurred_on, lang),
            "region": t.get(f"region.{event.region}", event.region),
            "region_code": event.region,
            "importance": importance,
            "importance_label": t.get(f"importance.{importance}", ""),
            "chips": [topic_name(s) for s in others],
        }

    with_picks = segment.frequency in PICKS_FREQUENCIES
    picks: list[dict[str, Any]] = []
    sections: dict[str, list[dict[str, Any]]] = {s: [] for s in order}
    for event, slugs in sorted(events, key=_importance_order):
        followed = [s for s in order if s in slugs]
        if with_picks and is_pick(event):
            picks.append(item(event, followed, "picks"))
        elif followed:
            sections[followed[0]].append(item(event, followed[1:], followed[0]))
    section_list: list[dict[str, Any]] = []
    if picks:
        section_list.append(
            {"slug": "picks", "name": t["picks"], "picks": True, "groups": _groups(picks, t)}
        )
    section_list += [
        {"slug": s, "name": topic_name(s), "picks": False, "groups": _groups(items, t)}
        for s, items in sections.items()
        if items
    ]
    for section in section_list:
        section["events"] = [e for g in section["groups"] for e in g["events"]]
    count = sum(len(s["events"]) for s in section_list)
    subject = t["subject"].format(brand=t["brand"], kind=kind, period=period_label)
    first_titles = " · ".join(e["title"] for s in section_list for e in s["events"][:1])
    names = t["list_sep"].join(topic_name(s) for s in order)
    return {
        "lang": lang,
        "t": t,
        "kind": kind,
        "frequency": segment.frequency,
        "period_label": period_label,
        "subject": subject,
        "preheader": f"{t['events_count'].format(n=count)} — {first_titles}"[:180],
        "sections": section_list,
        "event_count": count,
        "take_html": Markup(markdown_to_html(take_markdown)) if take_markdown else None,
        "take_text": take_markdown,
        "topic_names": names,
        "intro": t["intro"].format(period=period_label),
        "why": t["why"].format(kind_lower=kind if lang == "zh" else kind.lower(), topics=names),
        "archive_url": base_url.rstrip("/") + "/archive",
        "reader_sentinel": links.sentinel if links else "",
    }


def alert_context(
    *,
    language: str,
    topics: list[Topic],
    topic_slugs: tuple[str, ...],
    events,
    base_url: str,
    day,
    links: Linker | None = None,
) -> dict[str, Any]:
    """An instant alert email: the digest layout, for the events that just arrived."""
    from newsletter.core.periods import period_containing

    segment = Segment("email", "daily", period_containing("daily", day), language, topic_slugs)
    context = digest_context(
        segment=segment,
        topics=topics,
        events=events,
        take_markdown=None,
        base_url=base_url,
        links=links,
    )
    t = context["t"]
    n = context["event_count"]
    first = context["sections"][0]["events"][0]["title"] if n else ""
    kind = t["digest.instant"]
    context.update(
        kind=kind,
        frequency="instant",
        subject=(
            f"{t['brand']} · {first}"
            if n == 1
            else t["alert_title_many"].format(brand=t["brand"], n=n)
        )[:200],
        intro=t["alert_intro"],
        why=t["why"].format(
            kind_lower=kind if language == "zh" else kind.lower(), topics=context["topic_names"]
        ),
    )
    return context


_INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Inline the stylesheet into style attributes (what every mail client reads), but keep
    its @media rules in a <style> block: dark mode (prefers-color-scheme) and the phone
    layout (max-width) cannot be inlined, and clients that support them read them there."""
    return _INLINER.inline(html)


def render_digest(env: Environment, context: dict[str, Any], kind: str = "digest") -> Rendered:
    html = env.get_template(f"email/{kind}.html.j2").render(context)
    html = inline_css(html)
    text = env.get_template(f"email/{kind}.txt.j2").render(context)
    sentinel = context.get("reader_sentinel")
    if sentinel:  # per-reader click links: their reader part is filled in per message
        marker = slot("click_reader")
        html, text = html.replace(sentinel, marker), text.replace(sentinel, marker)
    digest = hashlib.sha256(
        json.dumps([context["subject"], html, text], ensure_ascii=False).encode()
    ).hexdigest()
    return Rendered(subject=context["subject"], body_html=html, body_text=text, content_hash=digest)
