"""/api/v1/takes and /api/v1/digests: the editor's sharp take, digest preview and send-now."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query

from newsletter.core.periods import PeriodError, parse_period
from newsletter.ingest.takes import get_take, markdown_to_html, set_take
from newsletter.pipeline import plan_period
from newsletter.planning.digests import DigestError, preview_digest
from newsletter.web.api.common import admin_router, errors, invalid, status_on
from newsletter.web.api.models import (
    MONTH_PATTERN,
    PERIOD_PATTERN,
    DigestFrequency,
    DigestPreviewPublic,
    DigestSendIn,
    DigestSendPublic,
    Language,
    TakeIn,
    TakePublic,
)
from newsletter.web.api.subscribers import subscriber_or_404
from newsletter.web.deps import EnvDep, SessionDep, SettingsDep

takes = admin_router("/takes", "takes")
digests = admin_router("/digests", "digests")

MonthPath = Annotated[str, Path(pattern=MONTH_PATTERN, examples=["2025-07"])]


def take_public(take) -> TakePublic:
    return TakePublic(
        period=take.period,
        language=take.language,
        body_markdown=take.body_markdown,
        html=markdown_to_html(take.body_markdown),
        updated_at=take.updated_at,
    )


@takes.get(
    "/{period}/{language}",
    response_model=TakePublic,
    summary="Read the sharp take of a month in one language",
    responses=errors(404, 422),
)
def read_take(session: SessionDep, period: MonthPath, language: Language) -> TakePublic:
    take = get_take(session=session, period=period, language=language, fallback=False)
    if take is None:
        raise HTTPException(404, f"no {language} sharp take for {period}")
    return take_public(take)


@takes.put(
    "/{period}/{language}",
    response_model=TakePublic,
    summary="Write the sharp take of a month (Markdown; raw HTML is shown as text)",
    responses=errors(400, 422),
)
def write_take(
    session: SessionDep, period: MonthPath, language: Language, take_in: TakeIn
) -> TakePublic:
    take = set_take(session=session, period=period, language=language, body=take_in.body_markdown)
    return take_public(take)


@digests.get(
    "/preview",
    response_model=DigestPreviewPublic,
    summary="Exactly the digest one subscriber would receive (rendered now, stored nowhere)",
    description="404 for an unknown subscriber; 409 when they have no events in the period.",
    responses=errors(404, 409, 422),
)
def preview(
    session: SessionDep,
    env: EnvDep,
    settings: SettingsDep,
    frequency: DigestFrequency,
    period: Annotated[str, Query(pattern=PERIOD_PATTERN, examples=["2025-07"])],
    email: Annotated[str, Query(max_length=320)],
) -> DigestPreviewPublic:
    try:
        parse_period(frequency, period)
    except PeriodError as exc:
        raise invalid(("query", "period"), str(exc)) from exc
    sub = subscriber_or_404(session, email)
    with status_on(409, DigestError):
        shown = preview_digest(
            session=session,
            env=env,
            settings=settings,
            frequency=frequency,
            period_key=period,
            email=sub.email,
        )
    return DigestPreviewPublic(
        email=sub.email,
        subject=shown.subject,
        html=shown.html,
        text=shown.text,
        event_count=shown.event_count,
    )


@digests.post(
    "/send",
    response_model=DigestSendPublic,
    summary="Plan and queue a digest now for every reader and digest webhook",
    description="Idempotent: a second call for the same period queues nothing new. "
    "`dry_run` only counts.",
    responses=errors(422),
)
def send_now(
    session: SessionDep, env: EnvDep, settings: SettingsDep, send: DigestSendIn
) -> DigestSendPublic:
    summary = plan_period(
        session=session,
        env=env,
        settings=settings,
        frequency=send.frequency,
        period_key=send.period,
        dry_run=send.dry_run,
    )
    return DigestSendPublic(
        frequency=summary.frequency,
        period=summary.period,
        dry_run=send.dry_run,
        recipients=summary.recipients,
        enqueued=summary.enqueued,
        already_enqueued=0 if send.dry_run else summary.already_enqueued,
        skipped_empty=summary.skipped_empty,
        endpoints=summary.endpoints,
        endpoint_rows=summary.endpoint_rows,
        segments=summary.segments,
    )
