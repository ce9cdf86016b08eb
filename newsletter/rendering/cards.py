"""Chat payloads: render a platform's template for a list of events, check it against the
platform's limits, and split into several messages only when the limits require it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, TemplateError

from newsletter.core import platforms
from newsletter.core.models import Event, Topic
from newsletter.ingest.events import localised
from newsletter.rendering import labels as i18n

PLATFORMS = platforms.NAMES
KINDS = ("alert", "digest")


class PayloadError(ValueError):
    """A template that renders something the platform would reject (or not JSON at all)."""


CHECKS: dict[str, Callable[[dict], str | None]] = {
    name: p.check for name, p in platforms.PLATFORMS.items()
}


def encode(payload: dict) -> bytes:
    """The bytes sent for a card: compact UTF-8 JSON, encoded once per card."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_items(
    events: list[tuple[Event, list[str]]], topics: list[Topic], lang: str
) -> list[dict[str, Any]]:
    t = i18n.labels(lang)
    names = {tp.slug: (tp.name_zh if lang == "zh" else tp.name_en) for tp in topics}
    items = []
    for e, slugs in events:
        region = t.get(f"region.{e.region}", e.region)
        topic_names = [names.get(s, s) for s in slugs]
        meta = " · ".join(
            x
            for x in [
                i18n.format_date(e.occurred_on, lang),
                region,
                e.source,
                " / ".join(topic_names),
            ]
            if x
        )
        items.append(
            {
                "id": e.id,
                "title": localised(e.title, lang),
                "summary": localised(e.summary, lang) if e.summary else "",
                "url": e.url,
                "source": e.source,
                "region": region,
                "region_code": e.region,
                "occurred_on": e.occurred_on.isoformat(),
                "date": i18n.format_date(e.occurred_on, lang),
                "topics": list(slugs),
                "meta": meta,
            }
        )
    return items


def render_one(env: Environment, platform: str, kind: str, context: dict[str, Any]) -> dict:
    """Render and parse one message; raises PayloadError if it is not valid for the platform."""
    name = f"webhooks/{platform}.{kind}.json.j2"
    try:
        text = env.get_template(name).render(context)
    except TemplateError as exc:
        raise PayloadError(f"template {name} failed: {exc}") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"template {name} rendered invalid JSON (line {exc.lineno}: {exc.msg})"
        ) from exc
    if not isinstance(payload, dict):
        raise PayloadError(f"template {name} must render a JSON object")
    problem = CHECKS[platform](payload)
    if problem:
        raise PayloadError(f"template {name}: {problem}")
    return payload


def render_messages(
    env: Environment,
    *,
    platform: str,
    kind: str,
    lang: str,
    title: str,
    items: list[dict[str, Any]],
    take: str | None = None,
    period: str = "",
    archive_url: str = "",
    timestamp: str = "",
) -> list[dict]:
    """As few messages as the platform's limits allow, each valid on its own."""
    t = i18n.labels(lang)

    def ctx(chunk, part, parts, with_take):
        heading = title if parts == 1 else f"{title} ({part}/{parts})"
        fallback = heading + ": " + "; ".join(i["title"] for i in chunk)[:3000]
        return {
            "platform": platform,
            "kind": kind,
            "lang": lang,
            "t": t,
            "title": heading,
            "fallback": fallback,
            "events": chunk,
            "take": take if with_take else None,
            "period": period,
            "archive_url": archive_url,
            "timestamp": timestamp,
            "part": part,
            "parts": parts,
            "event_type": "digest.published" if kind == "digest" else "event.alert",
        }

    chunks: list[list[dict]] = []
    current: list[dict] = []
    for item in items:
        trial = current + [item]
        try:
            # measured with the longest heading a part can get, "(99/99)"
            render_one(env, platform, kind, ctx(trial, 99, 99, with_take=not chunks))
            current = trial
        except PayloadError:
            if not current:
                raise
            chunks.append(current)
            current = [item]
    if current or not chunks:
        chunks.append(current)
    total = len(chunks)
    return [
        render_one(env, platform, kind, ctx(c, n, total, with_take=n == 1))
        for n, c in enumerate(chunks, start=1)
    ]
