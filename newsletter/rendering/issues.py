"""Public issues: one period's events under every topic, in one language, for the archive
page and the feeds (never a reader's email: no greeting, no "topics you follow")."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from newsletter.core.models import Event, Topic
from newsletter.core.periods import Period
from newsletter.ingest.events import localised
from newsletter.ingest.takes import markdown_to_html
from newsletter.rendering import labels as i18n

OTHER = "other"  # the section of events no topic matched


def issue_context(
    *,
    period: Period,
    language: str,
    topics: list[Topic],
    events: list[tuple[Event, list[str]]],
    take_markdown: str | None,
    only_topic: str | None = None,
) -> dict[str, Any]:
    """Sections in topic order; an event sits under its first topic, with chips naming
    its others. `events` come most important first, then by date (`period_events`)."""
    t = i18n.page_labels(language)
    zh = language == "zh"
    names = {tp.slug: (tp.name_zh if zh else tp.name_en) for tp in topics}
    order = [tp.slug for tp in topics]
    sections: dict[str, list[dict[str, Any]]] = {s: [] for s in [*order, OTHER]}
    for event, slugs in events:
        known = [s for s in slugs if s in names]
        home = known[0] if known else OTHER
        if only_topic and only_topic not in known:
            continue
        if only_topic:
            home = only_topic
        sections[home].append(
            {
                "id": event.id,
                "title": localised(event.title, language),
                "summary": localised(event.summary, language) if event.summary else "",
                "url": event.url,
                "source": event.source,
                "date": i18n.format_date(event.occurred_on, language),
                "region": event.region,
                "region_label": t.get(f"region.{event.region}", event.region),
                "importance": event.importance or 0,
                "also": [names[s] for s in known if s != home],
            }
        )
    section_list = []
    for slug, items in sections.items():
        if not items:
            continue
        regions = {e["region"] for e in items}
        section_list.append(
            {
                "slug": slug,
                "name": names.get(slug, t["other"]),
                "events": items,
                # 国际 / 国内 groups only when a section mixes them
                "groups": _by_region(items, t) if len(regions) > 1 else [("", items)],
            }
        )
    count = sum(len(s["events"]) for s in section_list)
    kind = t[f"digest.{period.frequency}"]
    label = period.label(language)
    sep = "、" if zh else ", "
    take = take_markdown if period.frequency == "monthly" else None
    return {
        "lang": language,
        "frequency": period.frequency,
        "period": period.key,
        "period_label": label,
        "kind": kind,
        "title": f"{t['brand']} · {kind} · {label}",
        "summary": t["issue_summary"].format(
            n=count,
            topics=sep.join(f"{s['name']} {len(s['events'])}" for s in section_list) or "—",
        ),
        "sections": section_list,
        "event_count": count,
        "take_html": Markup(markdown_to_html(take)) if take else None,
        "take_text": take,
    }


def _by_region(items: list[dict[str, Any]], t: dict[str, str]) -> list[tuple[str, list]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["region"], []).append(item)
    ordered = sorted(groups, key=lambda r: (r != "global", r != "china", r))
    return [(t.get(f"region.{r}", r), groups[r]) for r in ordered]


def issue_text(context: dict[str, Any]) -> str:
    """The issue as plain text (a feed's `content_text`)."""
    lines = [context["title"], "", context["summary"], ""]
    for section in context["sections"]:
        lines += [f"## {section['name']}", ""]
        for e in section["events"]:
            lines.append(f"- {e['title']} ({e['date']}, {e['source'] or e['region_label']})")
            if e["summary"]:
                lines.append(f"  {e['summary']}")
            lines.append(f"  {e['url']}")
        lines.append("")
    if context["take_text"]:
        lines += [f"## {i18n.page_labels(context['lang'])['sharp_take']}", "", context["take_text"]]
    return "\n".join(lines).strip() + "\n"


def issue_html(env: Environment, context: dict[str, Any], base: str) -> str:
    """The issue's sections and take as an HTML fragment (a feed item's content)."""
    t = i18n.page_labels(context["lang"])
    return env.get_template("web/public/issue_body.html.j2").render(
        issue=context, t=t, lang=context["lang"], base=base, nav=False
    )
