"""Every word the service writes, in each language it writes in: one catalogue for the
emails, the chat cards and the web pages.

`labels(lang)` is what emails and cards use; `page_labels(lang)` is the same words with
the pages' own (a page's "archive" and "preferences" are links, an email's are sentences).
"""

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
        "colon": ": ",
        "list_sep": ", ",
        "picks": "Editor's picks",
        "picks_note": "The month's headline events, for every reader.",
        "read": "Read the original",
        "also_in": "Also in",
        "importance.5": "Key",
        "importance.4": "Notable",
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
        "colon": "：",
        "list_sep": "、",
        "picks": "本月要闻",
        "picks_note": "本月最重要的动态，每位读者都会收到。",
        "read": "阅读原文",
        "also_in": "同属",
        "importance.5": "重大",
        "importance.4": "重要",
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


# the confirmation email's words
_CONFIRM: dict[str, dict[str, str]] = {
    "en": {
        "confirm_subject": "Confirm your subscription to the AI Industry Brief",
        "confirm_intro": "Someone (hopefully you) asked to receive the AI Industry Brief at this address.",
        "confirm_button": "Yes, subscribe me",
        "confirm_ignore": "If this was not you, ignore this email: nothing will be sent.",
    },
    "zh": {
        "confirm_subject": "请确认订阅 AI 产业简报",
        "confirm_intro": "有人（希望是你）用这个邮箱订阅了 AI 产业简报。",
        "confirm_button": "确认订阅",
        "confirm_ignore": "如果不是你本人操作，请忽略本邮件，我们不会再发送任何内容。",
    },
}
for _lang, _words in _CONFIRM.items():
    LABELS[_lang].update(_words)

# the welcome email a confirmed reader gets
_WELCOME: dict[str, dict[str, str]] = {
    "en": {
        "welcome_subject": "Welcome to the AI Industry Brief",
        "welcome_intro": "Your subscription is confirmed. Here is what will arrive, and when:",
        "welcome_when.monthly": "The monthly review, with the editor's sharp take: on the 1st of each month at {time} ({timezone}).",
        "welcome_when.weekly": "The weekly brief: every Monday at {time} ({timezone}).",
        "welcome_when.daily": "The daily brief: every day at {time} ({timezone}).",
        "welcome_when.instant": "An alert as soon as an event in your topics is recorded.",
        "welcome_topics": "Your topics: {topics}.",
        "welcome_archive": "Read past issues online",
    },
    "zh": {
        "welcome_subject": "欢迎订阅 AI 产业简报",
        "welcome_intro": "你的订阅已确认。以下是你将收到的内容和时间：",
        "welcome_when.monthly": "月度观察（附编辑锐评）：每月 1 日 {time}（{timezone}）。",
        "welcome_when.weekly": "每周简报：每周一 {time}（{timezone}）。",
        "welcome_when.daily": "每日简报：每天 {time}（{timezone}）。",
        "welcome_when.instant": "即时快讯：你关注的主题一有新动态就发送。",
        "welcome_topics": "你关注的主题：{topics}。",
        "welcome_archive": "在线阅读往期",
    },
}
for _lang, _words in _WELCOME.items():
    LABELS[_lang].update(_words)

# the web pages' words
_PAGES: dict[str, dict[str, str]] = {
    "en": {
        "brand": "AI Industry Brief",
        "tagline": "The AI industry, filtered to what you follow.",
        "subscribe": "Subscribe",
        "email": "Email address",
        "name": "Name (optional)",
        "topics": "Topics",
        "frequency": "How often",
        "language": "Language",
        "timezone": "Time zone",
        "freq.instant": "As it happens",
        "freq.daily": "Daily",
        "freq.weekly": "Weekly",
        "freq.monthly": "Monthly (with the editor's sharp take)",
        "lang.en": "English",
        "lang.zh": "中文",
        "check_inbox": "Check your inbox",
        "check_inbox_text": "If this address can subscribe, a confirmation link is on its way. Click it to start receiving the brief.",
        "confirm_heading": "Confirm your subscription",
        "confirm_text": "Start sending the AI Industry Brief to {email}?",
        "confirm_button": "Yes, subscribe me",
        "confirmed": "You are subscribed",
        "confirmed_text": "Thank you. Your first brief arrives with the next issue.",
        "preferences": "Your preferences",
        "save": "Save",
        "saved": "Saved. Your next brief follows these choices.",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_confirm": "Stop all emails to {email}?",
        "unsubscribed": "You are unsubscribed",
        "unsubscribed_text": "You will not receive any more emails from us.",
        "archive": "Archive",
        "archive_text": "Every brief we have sent, as it went out.",
        "feeds": "Feeds",
        "error": "Something is not right",
        "not_found": "There is no page at this address.",
        "not_allowed": "This page cannot be used that way.",
        "back": "Back to the start",
        "choose_topic": "Choose at least one topic.",
        "too_many": "Too many attempts. Please wait a little and try again.",
        "switch": "中文",
    },
    "zh": {
        "brand": "AI 产业简报",
        "tagline": "只看你关心的 AI 产业动态。",
        "subscribe": "订阅",
        "email": "电子邮箱",
        "name": "称呼（可选）",
        "topics": "主题",
        "frequency": "频率",
        "language": "语言",
        "timezone": "时区",
        "freq.instant": "即时",
        "freq.daily": "每日",
        "freq.weekly": "每周",
        "freq.monthly": "每月（含编辑锐评）",
        "lang.en": "English",
        "lang.zh": "中文",
        "check_inbox": "请查收邮件",
        "check_inbox_text": "如果该地址可以订阅，确认链接已发出。点击链接即可开始接收简报。",
        "confirm_heading": "确认订阅",
        "confirm_text": "开始向 {email} 发送 AI 产业简报吗？",
        "confirm_button": "确认订阅",
        "confirmed": "订阅成功",
        "confirmed_text": "谢谢！下一期简报将发送给你。",
        "preferences": "订阅偏好",
        "save": "保存",
        "saved": "已保存，下一期简报将按新的设置发送。",
        "unsubscribe": "退订",
        "unsubscribe_confirm": "确定不再向 {email} 发送任何邮件吗？",
        "unsubscribed": "已退订",
        "unsubscribed_text": "我们不会再给你发送邮件。",
        "archive": "往期",
        "archive_text": "我们发出的每一期简报。",
        "feeds": "订阅源",
        "error": "出了点问题",
        "not_found": "这个地址没有页面。",
        "not_allowed": "这个页面不能这样使用。",
        "back": "返回首页",
        "choose_topic": "请至少选择一个主题。",
        "too_many": "尝试次数过多，请稍后再试。",
        "switch": "English",
    },
}

# the public archive's words (issue pages and feeds)
_ARCHIVE: dict[str, dict[str, str]] = {
    "en": {
        "archive_text": "Every issue we have published: all topics, one page per period.",
        "archive_empty": "No issue has been published yet.",
        "issue_summary": "{n} events · {topics}",
        "issue_empty": "Nothing happened in these topics in this period.",
        "in_this_issue": "In this issue",
        "read_source": "Read at the source →",
        "key_event": "Key event",
        "read_in.zh": "阅读中文版",
        "read_in.en": "Read in English",
        "cta_heading": "Get the brief in your inbox",
        "cta_text": "Pick the topics you care about and how often: as it happens, daily, weekly or monthly with the editor's sharp take. Free, and one click to leave.",
    },
    "zh": {
        "archive_text": "已发布的每一期：全部主题，每期一页。",
        "archive_empty": "还没有发布任何一期。",
        "issue_summary": "共 {n} 条动态 · {topics}",
        "issue_empty": "本期这些主题没有新动态。",
        "in_this_issue": "本期目录",
        "read_source": "阅读原文 →",
        "key_event": "要闻",
        "read_in.zh": "阅读中文版",
        "read_in.en": "Read in English",
        "cta_heading": "订阅简报，直达邮箱",
        "cta_text": "选择你关心的主题和频率：即时、每日、每周，或附编辑锐评的月度观察。免费订阅，一键退订。",
    },
}
for _lang, _words in _ARCHIVE.items():
    _PAGES[_lang].update(_words)

# what the public pages say when something is wrong
_PAGE_ERRORS: dict[str, dict[str, str]] = {
    "en": {
        "err.link_invalid": "This link is not valid. Please use the newest link from our emails.",
        "err.link_expired": "This link has expired.",
        "err.link_gone": "This link no longer points to a subscription.",
        "err.link_older": "This link is older than your last unsubscribe; use the newest confirmation email.",
        "err.csrf": "The form expired or did not come from this site; reload the page and try again.",
        "err.cancelled": "This subscription was cancelled; subscribe again to restart it.",
        "err.not_active": "This subscription is not active.",
        "err.no_edition": "There is no such edition in the archive.",
        "err.no_issue": "There is no such issue in the archive.",
        "err.bad_period": "{frequency} issues are named like {example}.",
        "err.bad_frequency": "The archive has monthly, weekly and daily issues.",
        "err.bad_topic": "topic must be a topic slug such as open-source",
        "err.unknown_topic": "no topic named {topic}",
        "err.unknown_topics": "Unknown topic(s): {topics}.",
        "err.embed_origin": "This form may not post here from that site.",
        "invalid.email": "enter a valid address, e.g. name@example.com",
        "invalid.name": "too long",
        "invalid.other": "please check this field",
    },
    "zh": {
        "err.link_invalid": "这个链接无效，请使用我们邮件中的最新链接。",
        "err.link_expired": "这个链接已过期。",
        "err.link_gone": "这个链接对应的订阅已不存在。",
        "err.link_older": "这个链接早于你最近一次退订，请使用最新的确认邮件。",
        "err.csrf": "表单已过期或并非来自本站，请刷新页面后重试。",
        "err.cancelled": "该订阅已取消，请重新订阅。",
        "err.not_active": "该订阅当前未生效。",
        "err.no_edition": "往期中没有这一期。",
        "err.no_issue": "往期中没有这一期。",
        "err.bad_period": "这类往期的期号格式如 {example}。",
        "err.bad_frequency": "往期分为月度、每周和每日三类。",
        "err.bad_topic": "主题须为主题代号，例如 open-source。",
        "err.unknown_topic": "没有名为 {topic} 的主题。",
        "err.unknown_topics": "未知主题：{topics}。",
        "err.embed_origin": "该网站的表单不能提交到这里。",
        "invalid.email": "请输入有效的邮箱地址，例如 name@example.com。",
        "invalid.name": "过长。",
        "invalid.language": "请从列表中选择。",
        "invalid.frequency": "请从列表中选择。",
        "invalid.timezone": "请从列表中选择时区。",
        "invalid.topics": "请从列表中选择主题。",
        "invalid.other": "请检查这一项。",
    },
}
for _lang, _words in _PAGE_ERRORS.items():
    _PAGES[_lang].update(_words)

# choosing less than "stop everything", and coming back
_CHOICES: dict[str, dict[str, str]] = {
    "en": {
        "confirmed_text": "Thank you. A welcome email is on its way: it says what you will receive and when.",
        "unsubscribe_choose": "What would you like to change for {email}?",
        "just_a_topic": "Stop just one topic",
        "stop_topic": "Stop {topic}",
        "change_frequency": "Change how often",
        "stop_everything": "Stop everything",
        "unsubscribe_options": "You can stop one topic, receive fewer emails, or stop everything.",
        "unsubscribe_more": "Fewer emails or one topic less",
        "saved_heading": "Done",
        "topic_stopped": "You will no longer receive {topic}. You still follow: {topics}.",
        "frequency_changed": "From now on you receive: {frequency}.",
        "all_preferences": "See all your preferences",
        "come_back": "Changed your mind? Subscribe again",
        "unsubscribed_notice": "You are unsubscribed: we send nothing to this address.",
        "come_back_text": "Want the brief again? We will send a confirmation email; your subscription restarts when you click its link.",
        "resubscribe": "Subscribe again",
        "resubscribe_text": "If this address can subscribe again, a confirmation link is on its way. Click it to restart your subscription.",
        "pending_notice": "Waiting for your confirmation: click the link in the email we sent to restart your subscription.",
    },
    "zh": {
        "confirmed_text": "谢谢！欢迎邮件已发出，告诉你将收到哪些内容、何时收到。",
        "unsubscribe_choose": "你想为 {email} 做哪种调整？",
        "just_a_topic": "只退订某个主题",
        "stop_topic": "退订「{topic}」",
        "change_frequency": "调整频率",
        "stop_everything": "全部退订",
        "unsubscribe_options": "你可以只退订某个主题、减少邮件频率，或全部退订。",
        "unsubscribe_more": "减少邮件或退订单个主题",
        "saved_heading": "已完成",
        "topic_stopped": "你将不再收到「{topic}」。你仍关注：{topics}。",
        "frequency_changed": "从现在起你将收到：{frequency}。",
        "all_preferences": "查看全部订阅偏好",
        "come_back": "改变主意了？重新订阅",
        "unsubscribed_notice": "你已退订，我们不会向这个地址发送任何内容。",
        "come_back_text": "想重新接收简报？我们会发送一封确认邮件，点击其中的链接即可恢复订阅。",
        "resubscribe": "重新订阅",
        "resubscribe_text": "如果该地址可以重新订阅，确认链接已发出。点击链接即可恢复订阅。",
        "pending_notice": "等待确认：请点击我们发送的邮件中的链接以恢复订阅。",
    },
}
for _lang, _words in _CHOICES.items():
    _PAGES[_lang].update(_words)

LANGUAGES = tuple(LABELS)
_PAGE_LABELS = {lang: {**LABELS[lang], **_PAGES[lang]} for lang in LANGUAGES}


def labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def page_labels(language: str) -> dict[str, str]:
    return _PAGE_LABELS.get(language, _PAGE_LABELS["en"])


def format_date(day: dt.date, language: str) -> str:
    if language == "zh":
        return f"{day.month}月{day.day}日"
    return f"{day.day} {day:%b}"


def alert_title(lang: str, topic_names: list[str], n: int) -> str:
    t = labels(lang)
    if n == 1:
        return t["alert_title"].format(brand=t["brand"], topics=(" / ".join(topic_names)))
    return t["alert_title_many"].format(brand=t["brand"], n=n)
