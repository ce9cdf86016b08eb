"""Chat payloads: render a platform's template for a list of events, check it against the
platform's limits, and split into several messages only when the limits require it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from jinja2 import Environment, TemplateError

from .. import i18n
from ..events import localised
from ..models import Event, Topic

PLATFORMS = ("slack", "discord", "teams", "feishu", "dingtalk", "wecom", "generic")
KINDS = ("alert", "digest")


class PayloadError(ValueError):
    """A template that renders something the platform would reject (or not JSON at all)."""


def _size(payload: Any) -> int:
    return len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _slack(p: dict) -> str | None:
    blocks = p.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        return "Slack payload needs a non-empty blocks list"
    if len(blocks) > 50:
        return f"Slack allows 50 blocks, this has {len(blocks)}"
    for b in blocks:
        text = (b.get("text") or {}).get("text", "") if isinstance(b, dict) else ""
        limit = 150 if b.get("type") == "header" else 3000
        if len(text) > limit:
            return f"Slack {b.get('type')} text is {len(text)} characters (limit {limit})"
    if len(json.dumps(blocks, ensure_ascii=False)) > 12_000:
        return "Slack blocks exceed about 12,000 characters in all"
    return None


def _discord(p: dict) -> str | None:
    embeds = p.get("embeds", [])
    if len(p.get("content") or "") > 2000:
        return "Discord content is over 2000 characters"
    if len(embeds) > 10:
        return f"Discord allows 10 embeds, this has {len(embeds)}"
    total = 0
    for e in embeds:
        title, desc = e.get("title") or "", e.get("description") or ""
        footer = (e.get("footer") or {}).get("text") or ""
        if len(title) > 256 or len(desc) > 4096 or len(footer) > 2048:
            return "a Discord embed field is over its limit"
        total += len(title) + len(desc) + len(footer)
    if total > 6000:
        return f"Discord embeds hold {total} characters (limit 6000)"
    return None


def _teams(p: dict) -> str | None:
    try:
        (att,) = p["attachments"]
        card = att["content"]
    except (KeyError, TypeError, ValueError):
        return "Teams payload needs a message envelope with one attachment"
    if (
        p.get("type") != "message"
        or att.get("contentType") != "application/vnd.microsoft.card.adaptive"
    ):
        return "Teams envelope must be type=message with an Adaptive Card attachment"
    if (
        card.get("type") != "AdaptiveCard"
        or card.get("version") != "1.4"
        or not isinstance(card.get("body"), list)
    ):
        return "Teams card must be an AdaptiveCard, version 1.4, with a body"
    if _size(p) > 26_000:
        return "Teams message is over 26 KB (the limit is 28 KB)"
    return None


def _feishu(p: dict) -> str | None:
    if p.get("msg_type") != "interactive" or "card" not in p:
        return "Feishu payload must be msg_type=interactive with a card"
    return "Feishu body is over 18 KB (the limit is 20 KB)" if _size(p) > 18_000 else None


def _dingtalk(p: dict) -> str | None:
    if p.get("msgtype") != "markdown" or not (p.get("markdown") or {}).get("text"):
        return "DingTalk payload must be msgtype=markdown with text"
    return "DingTalk message is over 19,000 bytes" if _size(p) > 19_000 else None


def _wecom(p: dict) -> str | None:
    content = (p.get("markdown") or {}).get("content")
    if p.get("msgtype") != "markdown" or not content:
        return "WeCom payload must be msgtype=markdown with content"
    n = len(content.encode("utf-8"))
    return f"WeCom markdown is {n} bytes (limit 4096)" if n > 4096 else None


def _generic(p: dict) -> str | None:
    if not isinstance(p.get("type"), str) or "data" not in p:
        return "generic payload needs type and data"
    return "generic payload is over 64 KB" if _size(p) > 65_536 else None


CHECKS: dict[str, Callable[[dict], str | None]] = {
    "slack": _slack,
    "discord": _discord,
    "teams": _teams,
    "feishu": _feishu,
    "dingtalk": _dingtalk,
    "wecom": _wecom,
    "generic": _generic,
}


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
