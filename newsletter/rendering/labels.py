"""Words the templates need, in each language we write in."""

from __future__ import annotations

import datetime as dt

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "brand": "AI Industry Brief",
        "digest.daily": "Daily brief",
        "digest.weekly": "Weekly brief",
        "digest.monthly": "Monthly review",
        "digest.instant": "Alert",
        "alert_intro": "New in the topics you follow:",
        "subject": "{brand} · {kind} · {period}",
        "events_count": "{n} events in your topics",
        "sharp_take": "Sharp take",
        "read_more": "Read more",
        "source": "Source",
        "greeting_named": "Hi {name},",
        "greeting": "Hello,",
        "intro": "Here is what happened in {period} in the topics you follow.",
        "why": "You receive this {kind_lower} because you follow: {topics}.",
        "preferences": "Change topics, frequency or language",
        "unsubscribe": "Unsubscribe",
        "archive": "Read past issues online",
        "region.global": "International",
        "region.china": "China",
        "other": "Other",
        "alert_title": "{brand} · new in {topics}",
        "alert_title_many": "{brand} · {n} new events",
        "test_title": "{brand} · test message",
    },
    "zh": {
        "brand": "AI 产业简报",
        "digest.daily": "每日简报",
        "digest.weekly": "每周简报",
        "digest.monthly": "月度观察",
        "digest.instant": "即时快讯",
        "alert_intro": "你关注的主题有新动态：",
        "subject": "{brand} · {kind} · {period}",
        "events_count": "你关注的主题共有 {n} 条动态",
        "sharp_take": "锐评",
        "read_more": "阅读全文",
        "source": "来源",
        "greeting_named": "{name}，你好：",
        "greeting": "你好：",
        "intro": "以下是{period}你所关注主题的要闻。",
        "why": "你收到这份{kind_lower}，是因为你关注了：{topics}。",
        "preferences": "修改主题、频率或语言",
        "unsubscribe": "退订",
        "archive": "在线阅读往期",
        "region.global": "国际",
        "region.china": "国内",
        "other": "其他",
        "alert_title": "{brand} · {topics}新动态",
        "alert_title_many": "{brand} · {n} 条新动态",
        "test_title": "{brand} · 测试消息",
    },
}


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def format_date(day: dt.date, language: str) -> str:
    if language == "zh":
        return f"{day.month}月{day.day}日"
    return f"{day.day} {day:%b}"
