"""The pipeline's verbs: what the CLI, the API, the scheduler, the benchmarks and the
tests call, so that each step runs in one place.

    ingest:  records -> validated events, stored once, matched to topics, alerts queued
    plan:    a period -> email digests for readers and chat digests for team endpoints

Each verb is the stages below it in order (`ingest`, `topics`, `audience`, `planning`);
nothing here renders or sends: the worker (`delivery/`) drains what these queue.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from jinja2 import Environment
from sqlalchemy import Engine
from sqlmodel import Session

from newsletter.audience import endpoints, subscribers
from newsletter.core.models import Event, Subscriber, WebhookEndpoint
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.delivery.outbox import BULK_ROWS, refresh_statistics
from newsletter.feedback import clicks
from newsletter.ingest import feeds, files
from newsletter.ingest.events import AddResult, EventIn, add_event, delete_event
from newsletter.ingest.files import ImportReport, Records
from newsletter.planning import alerts, chat_digests, digests, proofs, send_times
from newsletter.planning.digests import DigestRenderer, SendSummary, check_frequency


@dataclass
class Ingested:
    """What an ingest stored, and how many instant alerts it queued."""

    report: ImportReport
    alerts: int


def ingest_records(
    *,
    session: Session,
    settings: Settings,
    records: Records,
    progress: Callable[[], None] | None = None,
) -> Ingested:
    """Validate, store (duplicates skipped), match, and queue instant alerts."""
    report = files.import_records(session=session, records=records, progress=progress)
    return Ingested(report, queue_alerts(session=session, settings=settings, ids=report.new_ids))


def ingest_file(
    *,
    session: Session,
    settings: Settings,
    path: Path,
    fmt: str | None = None,
    progress: Callable[[], None] | None = None,
) -> Ingested:
    """`ingest_records` for an event file (JSON, JSON Lines, YAML or CSV)."""
    report = files.import_file(session=session, path=path, fmt=fmt, progress=progress)
    return Ingested(report, queue_alerts(session=session, settings=settings, ids=report.new_ids))


def ingest_event(
    *, session: Session, settings: Settings, event_in: EventIn
) -> tuple[AddResult, int]:
    """One event (the API's create): stored and matched unless a duplicate; its alerts."""
    result = add_event(session=session, event_in=event_in)
    if result.event is None:  # a duplicate
        return result, 0
    return result, queue_alerts(session=session, settings=settings, ids=[result.event.id])


def remove_event(*, session: Session, event: Event) -> int:
    """Delete an event: its alerts still waiting to be sent (queued, or held for a
    disabled endpoint) are cancelled, in the same transaction. Returns how many. Sent
    alerts and editions already rendered keep what they carried."""
    waiting = outbox.waiting_alerts(session, event.id)
    cancelled = outbox.cancel(session, ids=waiting) if waiting else 0
    delete_event(session=session, event=event)
    return cancelled


def poll_feeds(
    *,
    engine: Engine,
    settings: Settings,
    only: str | None = None,
    now: dt.datetime | None = None,
    client: httpx.Client | None = None,
) -> list[feeds.PollResult]:
    """Poll the due feeds (or the named one); each feed's new events alert like any other."""

    def alert(session: Session, result: feeds.PollResult) -> None:
        queue_alerts(session=session, settings=settings, ids=result.new_ids, now=now)

    return feeds.poll_feeds(
        engine=engine, settings=settings, only=only, now=now, client=client, after_poll=alert
    )


def queue_alerts(
    *, session: Session, settings: Settings, ids: list[int], now: dt.datetime | None = None
) -> int:
    """Instant alerts (readers and team endpoints) for these new events."""
    if not ids:
        return 0
    return alerts.enqueue_alerts(session=session, settings=settings, event_ids=ids, now=now)


def queue_recent_alerts(*, session: Session, settings: Settings) -> int:
    """The scheduler's sweep: alerts for recent events not queued yet (twice adds nothing)."""
    return alerts.enqueue_recent_alerts(session=session, settings=settings)


def plan_period(
    *,
    session: Session,
    env: Environment,
    settings: Settings,
    frequency: str,
    period_key: str,
    dry_run: bool = False,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    timezone: str | None = None,
) -> SendSummary:
    """Plan and enqueue a period's digests: email for readers, chat for team endpoints.

    Planning twice adds nothing (each row has its idempotency key). `timezone` plans only
    the readers and endpoints in that zone (the scheduler's per-zone send times).
    `batch_size` is accepted for callers and no longer used.
    """
    period = check_frequency(frequency, period_key)
    renderer = DigestRenderer(session=session, env=env, settings=settings, period=period)
    summary = digests.plan_emails(
        session=session, renderer=renderer, dry_run=dry_run, progress=progress, timezone=timezone
    )
    summary.endpoints, summary.endpoint_rows = chat_digests.plan_chat_digests(
        session=session,
        env=env,
        settings=settings,
        renderer=renderer,
        dry_run=dry_run,
        timezone=timezone,
    )
    session.commit()
    if summary.enqueued >= BULK_ROWS:
        refresh_statistics(session)
        session.commit()
    return summary


def plan_due_periods(
    *, engine: Engine, env: Environment, settings: Settings, now: dt.datetime | None = None
) -> list[tuple[send_times.Due, str]]:
    """The scheduler's digests: `plan_period` for each (frequency, period, time zone) whose
    local send time has passed and that no run has claimed (see `planning.send_times`).
    First the editors' proof of a monthly digest coming up (`planning.proofs`); a monthly
    send waits for its sharp takes' approval until NEWSLETTER_TAKE_DEADLINE_HOURS."""
    proofs.scheduled_proofs(engine=engine, env=env, settings=settings, now=now)
    return send_times.run_due_digests(
        engine=engine, env=env, settings=settings, plan=plan_period, now=now
    )


# Readers and teams leaving or pausing: the audience's change and what it means for the
# outbox, in the caller's transaction (the audience stage sits below the outbox).


def disable_endpoint(*, session: Session, endpoint: WebhookEndpoint, reason: str) -> None:
    """Stop sending to a team; what is queued for it is held, not lost."""
    endpoints.mark_disabled(session=session, endpoint=endpoint, reason=reason)
    outbox.hold_endpoint(session, endpoint.id)


def enable_endpoint(*, session: Session, endpoint: WebhookEndpoint) -> int:
    """Resume a team; its held messages are queued again. Returns how many."""
    endpoints.mark_enabled(session=session, endpoint=endpoint)
    return outbox.resume_endpoint(session, endpoint.id)


def remove_endpoint(*, session: Session, endpoint: WebhookEndpoint) -> int:
    """Delete a team's endpoint; its unsent rows are cancelled, its history kept.
    Returns how many were cancelled."""
    cancelled = outbox.detach_endpoint(session, endpoint.id)
    endpoints.remove_endpoint(session=session, endpoint=endpoint)
    return cancelled


def remove_subscriber(*, session: Session, subscriber: Subscriber, reason: str = "removed") -> None:
    """Delete a reader's personal data (the address stays suppressed); unsent rows are
    cancelled, sent ones kept without the reader (and without per-reader click counts)."""
    clicks.forget_reader(session, subscriber.id)
    outbox.detach_subscriber(session, subscriber.id)
    subscribers.remove_subscriber(session=session, subscriber=subscriber, reason=reason)
