"""The welcome message a reader gets once their subscription is confirmed: what will
arrive, when, and how to change it."""

from __future__ import annotations

import css_inline
from sqlmodel import Session

from newsletter.audience.subscribers import subscriber_topics
from newsletter.core.models import DeliveryRow, Subscriber, SubscriberRow
from newsletter.core.settings import Settings
from newsletter.delivery.messages import (
    BuiltMessage,
    MessageError,
    _envelope,
    assemble,
    dkim_sign,
    greeting,
    links_for,
)
from newsletter.delivery.return_path import return_path
from newsletter.rendering.labels import LANGUAGES, labels


def welcome_context(
    settings: Settings, subscriber: Subscriber, topic_names: list[str]
) -> dict[str, object]:
    lang = subscriber.language if subscriber.language in LANGUAGES else "en"
    t = labels(lang)
    sep = "、" if lang == "zh" else ", "
    when = t[f"welcome_when.{subscriber.frequency}"].format(
        time=settings.digest_send_time, timezone=subscriber.timezone
    )
    links = links_for(settings, subscriber)
    return {
        "lang": lang,
        "t": t,
        "subject": t["welcome_subject"],
        "preheader": when,
        "greeting": greeting(subscriber, t),
        "topics": t["welcome_topics"].format(topics=sep.join(topic_names)),
        "when": when,
        "archive_url": f"{settings.base_url.rstrip('/')}/archive?lang={lang}",
        "preferences_url": links["preferences_url"],
        "unsubscribe_url": links["unsubscribe_url"],
    }


def build_welcome_email(
    session: Session, settings: Settings, env, delivery: DeliveryRow, row: SubscriberRow
) -> BuiltMessage:
    subscriber = session.get(Subscriber, row.id)
    if subscriber is None:
        raise MessageError("the subscriber is gone")
    topics = subscriber_topics(session=session, subscriber=subscriber)
    zh = subscriber.language == "zh"
    context = welcome_context(
        settings, subscriber, [tp.name_zh if zh else tp.name_en for tp in topics]
    )
    t = context["t"]
    assert isinstance(t, dict)
    headers, from_addr, domain, digest, message_id = _envelope(
        settings, delivery, row, t["welcome_subject"], to_name=subscriber.name or ""
    )
    headers.append(("Content-Language", str(context["lang"])))
    html = css_inline.inline(env.get_template("email/welcome.html.j2").render(context))
    text = env.get_template("email/welcome.txt.j2").render(context)
    data = dkim_sign(settings, assemble(headers, text, html, boundary=f"=_nl_{digest}"), domain)
    return BuiltMessage(
        sender=return_path(settings, from_addr, delivery.id or 0, delivery.created_at),
        recipient=subscriber.email,
        message_id=message_id,
        data=data,
    )
