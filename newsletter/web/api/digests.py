"""/api/v1/takes and /api/v1/digests: the editor's sharp take (and its approval), digest
preview, proofs to editors and send-now."""

from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path, Query

from newsletter.core.periods import PeriodError, parse_period
from newsletter.ingest.takes import TakeError, approve_take, get_take, markdown_to_html, set_take
from newsletter.pipeline import plan_period
from newsletter.planning.digests import DigestError, NothingToSend, preview_digest
from newsletter.planning.proofs import ProofSendError, send_proof
from newsletter.web.api.common import admin_router, errors, invalid, note, status_on
from newsletter.web.api.models import (
    MONTH_PATTERN,
    PERIOD_PATTERN,
    DigestFrequency,
    DigestPreviewPublic,
    DigestProofIn,
    DigestProofPublic,
    DigestSendIn,
    DigestSendPublic,
    Language,
    TakeIn,
    TakePublic,
)
from newsletter.web.api.subscribers import subscriber_or_404
from newsletter.web.deps import AdminDep, EnvDep, SessionDep, SettingsDep

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
        state=take.state,
        approved_at=take.approved_at,
        approved_by=take.approved_by,
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
    session: SessionDep, admin: AdminDep, period: MonthPath, language: Language, take_in: TakeIn
) -> TakePublic:
    before = get_take(session=session, period=period, language=language, fallback=False)
    was = (before.body_markdown, before.state) if before else None
    take = set_take(session=session, period=period, language=language, body=take_in.body_markdown)
    if was != (take.body_markdown, take.state):
        note(session, admin, "take.edit", f"{period} {language}", "saved as a draft")
    return take_public(take)


@takes.post(
    "/{period}/{language}/approve",
    response_model=TakePublic,
    summary="Approve the sharp take of a month in one language",
    description="The scheduled monthly send waits for the approval of each language's take "
    "(until NEWSLETTER_TAKE_DEADLINE_HOURS). Approving an approved take changes nothing; "
    "saving a changed text makes it a draft again. 404 when there is no such take.",
    responses=errors(404, 422),
)
def approve(
    session: SessionDep, admin: AdminDep, period: MonthPath, language: Language
) -> TakePublic:
    with status_on(404, TakeError):
        was = get_take(session=session, period=period, language=language, fallback=False)
        before = was.state if was else None
        take = approve_take(session=session, period=period, language=language, by=admin.name)
    if before != "approved":
        note(session, admin, "take.approve", f"{period} {language}", "approved")
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
    "/proof",
    response_model=DigestProofPublic,
    summary="Send a proof of a digest to editors' addresses",
    description="The digest exactly as the subscriber `email` would receive it (or as a "
    "reader of `topics` in `language` would), sent now through the email channel to the "
    '`to` addresses only, its subject starting with "[Proof]". Nothing is queued or '
    "counted for the reader, and the proof's unsubscribe links do nothing. It shows the "
    "sharp take even while that is a draft. 404 for an unknown subscriber; 409 when the "
    "digest would have no events; 502 when the mail relay did not take it.",
    responses=errors(400, 404, 409, 422, 502),
)
def proof(
    session: SessionDep, admin: AdminDep, env: EnvDep, settings: SettingsDep, body: DigestProofIn
) -> DigestProofPublic:
    if body.email:
        subscriber_or_404(session, body.email)
    with status_on(409, NothingToSend), status_on(502, ProofSendError):
        sent = send_proof(
            session=session,
            env=env,
            settings=settings,
            frequency=body.frequency,
            period_key=body.period,
            to=body.to,
            email=body.email,
            topics=body.topics,
            language=body.language,
        )
    note(session, admin, "digest.proof", body.period, f"{sent.view} to {', '.join(sent.to)}")
    return DigestProofPublic(
        to=sent.to, subject=sent.subject, event_count=sent.event_count, view=sent.view
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
    session: SessionDep, admin: AdminDep, env: EnvDep, settings: SettingsDep, send: DigestSendIn
) -> DigestSendPublic:
    summary = plan_period(
        session=session,
        env=env,
        settings=settings,
        frequency=send.frequency,
        period_key=send.period,
        dry_run=send.dry_run,
    )
    if not send.dry_run:
        note(session, admin, "digest.send", f"{summary.frequency} {summary.period}",
             f"{summary.enqueued} queued for {summary.recipients} readers")  # fmt: skip
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
