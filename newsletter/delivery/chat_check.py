"""`webhooks test`: render a sample card with the endpoint's templates and send it now."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import Session

from newsletter.audience.endpoints import endpoint_secret, endpoint_topics, get_endpoint
from newsletter.core.models import Event, EventTopic, Topic, utcnow
from newsletter.delivery.channels.webhook import WebhookChannel, prepare
from newsletter.rendering import labels as i18n
from newsletter.rendering.cards import event_items, render_messages


async def send_test(*, session: Session, settings, env, name: str) -> str:
    ep = get_endpoint(session=session, name=name)
    slugs = [t.slug for t in endpoint_topics(session=session, endpoint=ep)]
    event = (
        session.execute(
            select(Event)
            .join(EventTopic, EventTopic.event_id == Event.id)
            .join(Topic, Topic.id == EventTopic.topic_id)
            .where(Topic.slug.in_(slugs))
            .order_by(Event.occurred_on.desc(), Event.id.desc())
            .limit(1)
        ).scalar()
        or session.execute(select(Event).order_by(Event.id.desc()).limit(1)).scalar()
    )
    if event is None:
        raise ValueError("there are no events to show in a test message; import some first")
    topics = list(session.execute(select(Topic).order_by(Topic.position)).scalars())
    t = i18n.labels(ep.language)
    messages = render_messages(
        env,
        platform=ep.platform,
        kind="alert",
        lang=ep.language,
        title=t["test_title"].format(brand=t["brand"]),
        items=event_items([(event, slugs[:1])], topics, ep.language),
        archive_url=settings.base_url.rstrip("/") + "/archive",
        timestamp=utcnow().isoformat(timespec="seconds"),
    )
    channel = WebhookChannel(
        timeout=settings.webhook_timeout,
        connect_timeout=settings.webhook_connect_timeout,
        allow_http=settings.webhook_allow_http,
        allow_networks=settings.webhook_allow_networks,
    )
    try:
        answer = ""
        for n, payload in enumerate(messages, start=1):
            request = prepare(
                ep.platform,
                ep.url,
                payload,
                secret=endpoint_secret(ep),
                msg_id=f"msg_test_{int(utcnow().timestamp())}_{n}",
            )
            answer = await channel.post(ep.platform, request)
        return answer
    finally:
        await channel.aclose()
