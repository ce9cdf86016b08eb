"""The worker: claims due outbox rows, builds each message, sends it, records the result.

One loop per process; several processes (on several machines, with PostgreSQL) can
drain the same outbox. A batch is claimed in one transaction, sent with no
transaction open, and recorded in another; while a full batch sends, the next one is
claimed and its messages built, and the previous batch is recorded, so the
connections do not wait for the database.
Every database call runs in a thread, so a claim waiting on a lock never stops the
event loop (nor the web app sharing it), and an unexpected error in one row fails that
row only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from newsletter.core.models import Delivery, DeliveryRow, Edition, utcnow
from newsletter.core.settings import Settings
from newsletter.delivery import outbox
from newsletter.delivery.channels.base import PermanentDeliveryError, TemporaryDeliveryError
from newsletter.delivery.channels.filedrop import FileDropChannel
from newsletter.delivery.channels.smtp import SmtpChannel, SmtpConfig
from newsletter.delivery.chat import EndpointPacer
from newsletter.delivery.email_jobs import EmailJob, prepare_emails
from newsletter.delivery.outcomes import record as record_outcomes

if TYPE_CHECKING:
    from jinja2 import Environment

    from .channels.webhook import WebhookChannel

log = logging.getLogger("newsletter.delivery.worker")

#: what preparing a claimed row reads of it
_DELIVERY_COLUMNS = [
    Delivery.__table__.c[name]
    for name in (
        "id",
        "kind",
        "period",
        "edition_id",
        "endpoint_id",
        "subscriber_id",
        "idempotency_key",
        "created_at",
    )
]


def email_channel(settings: Settings):
    """SMTP when configured, else .eml files in the outbox folder."""
    if settings.smtp_url:
        config = SmtpConfig.from_url(settings.smtp_url, timeout=settings.smtp_timeout)
        return SmtpChannel(config, connections=settings.smtp_connections)
    return FileDropChannel(settings.outbox_dir)


class RateLimiter:
    """Token bucket shared by all sends of this worker; rate 0 means no limit."""

    def __init__(self, rate: float, burst: int = 1):
        self.rate, self.capacity = rate, max(burst, 1)
        self.tokens, self.updated = float(self.capacity), time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


@dataclass
class Batch:
    """Claimed rows, prepared: messages to send, webhook groups, and rows already decided."""

    ids: list[int]
    jobs: list[EmailJob]
    groups: list
    ready: list[outbox.Outcome]
    claimed: float = field(default_factory=time.monotonic)  # when the lease began


@dataclass
class WorkerStats:
    claimed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, counts: dict[str, int]) -> None:
        for k, v in counts.items():
            self.by_status[k] = self.by_status.get(k, 0) + v


class Worker:
    def __init__(
        self, *, engine: Engine, settings: Settings, channel=None, name: str | None = None
    ):
        self.engine, self.settings = engine, settings
        self.channel = channel or email_channel(settings)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.limiter = RateLimiter(settings.send_rate, burst=settings.smtp_connections)
        self.stats = WorkerStats()
        self._editions: dict[int, Edition] = {}
        self._jinja: Environment | None = None
        self._webhooks: WebhookChannel | None = None
        self.pacer = EndpointPacer()
        self.stopping = asyncio.Event()
        self._claim_size = max(1, settings.worker_batch // 2)
        self._ahead: asyncio.Task[Batch | None] | None = None  # the next batch, being prepared
        self._recording: asyncio.Task[None] | None = None  # the last batch's results

    async def aclose(self) -> None:
        try:
            await self._recorded()
        except Exception:  # noqa: BLE001 - its rows stay leased and are sent again later
            log.exception("recording the last batch failed")
        await self._release_ahead()
        await self.channel.aclose()
        if self._webhooks is not None:
            await self._webhooks.aclose()

    def stop(self) -> None:
        """Stop claiming; what is in flight is finished and recorded."""
        self.stopping.set()

    async def run(
        self, *, until_empty: bool = False, poll_seconds: float = 2.0, progress=None
    ) -> WorkerStats:
        outage = 0
        try:
            while not self.stopping.is_set():
                try:
                    done = await self.run_batch()
                    if progress and done:
                        progress(done)
                    if done:
                        outage = 0
                        continue
                    wait = await asyncio.to_thread(outbox.next_due_in, self.engine)
                    if (
                        until_empty
                        and wait is None
                        and await asyncio.to_thread(outbox.pending_count, self.engine) == 0
                    ):
                        break
                    outage = 0
                    delay = poll_seconds if wait is None else min(max(wait, 0.05), poll_seconds)
                except DBAPIError as exc:
                    # the database went away (restart, failover): what we claimed stays
                    # leased and is reclaimed later; keep trying to reconnect. A one-off
                    # run (`--until-empty`) on a read-only database would wait forever:
                    # it stops and says why instead.
                    detail = (str(exc.orig).strip().splitlines() or [""])[0]
                    if until_empty and "readonly" in detail.lower().replace("-", "").replace(
                        " ", ""
                    ):
                        raise
                    outage += 1
                    delay = min(0.2 * 2**outage, 10.0)
                    log.warning(
                        "database unavailable (%s: %s); retrying in %.1fs",
                        type(exc.orig).__name__,
                        detail,
                        delay,
                    )
                    self.engine.dispose()
                except Exception:
                    # a bug outside any one row (recording, grouping): log it and go on;
                    # rows of this batch left in `sending` are reclaimed when their lease ends
                    outage += 1
                    delay = min(0.5 * 2**outage, 30.0)
                    log.exception("worker batch failed; retrying in %.1fs", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=delay)
        finally:
            await self.aclose()
        return self.stats

    async def run_batch(self) -> int:
        """Send one batch and record it; returns how many rows it held.

        The pipeline: while a full batch sends, the next one is claimed and its messages
        built, and the previous batch's results are recorded. Batches are half of
        `worker_batch`, so at most `worker_batch` rows are ever sent and not yet recorded
        (what a killed worker can send twice). `aclose()` finishes the recording and
        gives back a batch claimed ahead and not sent.
        """
        ahead, self._ahead = self._ahead, None
        batch = await (ahead or self._claim_and_prepare())
        if batch is None:
            await self._recorded()
            return 0
        if time.monotonic() - batch.claimed > self.settings.lease_seconds / 4:
            # it waited its turn (behind a slow send) long enough for its lease to matter
            batch = await self._renewed(batch)
        self.stats.claimed += len(batch.ids)
        if len(batch.ids) == self._claim_size and not self.stopping.is_set():
            # more is probably due: have it ready when this batch is done
            self._ahead = asyncio.create_task(self._claim_and_prepare())
        sends = [self._send_emails(batch.jobs)]
        sends += [self._send_webhook(group) for group in batch.groups]
        results = await asyncio.gather(*sends)
        outcomes = batch.ready + [o for r in results for o in r]
        current = asyncio.create_task(self._record(batch, outcomes))
        previous, self._recording = self._recording, current
        if previous is not None:  # the next batch sends only once this one's elder is stored
            await previous
        if self._ahead is None or 2 * self._claim_size > self.settings.worker_batch:
            await self._recorded()  # nothing to overlap with, or no room in the window
        return len(batch.ids)

    async def _claim_and_prepare(self) -> Batch | None:
        claimed = time.monotonic()  # the lease starts no later than this
        ids = await asyncio.to_thread(
            outbox.claim,
            self.engine,
            worker=self.name,
            limit=self._claim_size,
            lease_seconds=self.settings.lease_seconds,
        )
        if not ids:
            return None
        jobs, groups, ready = await asyncio.to_thread(self._prepare, ids)
        return Batch(ids, jobs, groups, ready, claimed)

    async def _renewed(self, batch: Batch) -> Batch:
        """The batch with a fresh lease, less any row that is no longer this worker's
        (its lease ended while it waited and another worker claimed it)."""
        held = await asyncio.to_thread(outbox.renew, self.engine, worker=self.name, ids=batch.ids)
        if len(held) == len(batch.ids):
            batch.claimed = time.monotonic()
            return batch
        log.warning(
            "%d claimed row(s) were claimed again by another worker before being sent; left to it",
            len(batch.ids) - len(held),
        )
        return Batch(
            [i for i in batch.ids if i in held],
            [j for j in batch.jobs if all(i in held for i in j.delivery_ids)],
            [g for g in batch.groups if all(i in held for i in g.delivery_ids)],
            [o for o in batch.ready if o.delivery_id in held],
        )

    async def _record(self, batch: Batch, outcomes: list[outbox.Outcome]) -> None:
        counts = await asyncio.to_thread(
            record_outcomes,
            self.engine,
            outcomes,
            worker=self.name,
            max_attempts=self.settings.max_attempts,
            retry_base=self.settings.retry_base_seconds,
            retry_max=self.settings.retry_max_seconds,
            webhook_disable_after_failures=self.settings.webhook_disable_after_failures,
            webhook_disable_after_hours=self.settings.webhook_disable_after_hours,
        )
        self.stats.add(counts)
        log.info(
            "batch of %d: %s",
            len(batch.ids),
            ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
        )

    async def _recorded(self) -> None:
        """Wait for the results being recorded (a failure to record is raised here)."""
        recording, self._recording = self._recording, None
        if recording is not None:
            await recording

    async def _release_ahead(self) -> None:
        """On the way out: give back a batch claimed ahead and not sent."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        try:
            batch = await ahead
        except Exception:  # noqa: BLE001 - its rows come back when their lease ends
            log.warning("could not prepare the next batch", exc_info=True)
            return
        if batch is not None:
            try:
                await asyncio.to_thread(
                    outbox.release, self.engine, worker=self.name, ids=batch.ids
                )
            except Exception:  # noqa: BLE001 - as above
                log.warning("could not give back %d claimed rows", len(batch.ids), exc_info=True)

    def _prepare(self, ids: list[int]):
        """Build every claimed message; rows that must not be sent get their outcome now."""
        with Session(self.engine, expire_on_commit=False) as session:
            # plain rows, not ORM objects: nothing here changes a delivery, and building
            # thousands of tracked objects per batch cost more than the query
            deliveries = session.execute(
                select(*_DELIVERY_COLUMNS).where(Delivery.id.in_(ids))
            ).all()
            groups, ready = self._prepare_webhooks(
                session, [d for d in deliveries if d.endpoint_id]
            )
            jobs, more = prepare_emails(
                session,
                self.settings,
                self._env(),
                [d for d in deliveries if not d.endpoint_id],
                self._edition,
            )
            session.expunge_all()
        return jobs, groups, ready + more

    def _prepare_webhooks(self, session: Session, deliveries: Sequence[DeliveryRow]):
        """Group an endpoint's alerts into one send; each digest part is its own send."""
        from newsletter.delivery.chat import prepare_groups

        return prepare_groups(session, self.settings, self._env(), deliveries, self._edition)

    def _env(self):
        if self._jinja is None:
            from newsletter.rendering.editions import make_environment

            self._jinja = make_environment(self.settings.templates_dir)
        return self._jinja

    async def _send_webhook(self, group) -> list[outbox.Outcome]:
        from newsletter.delivery.chat import send_group

        if self._webhooks is None:
            from newsletter.delivery.channels.webhook import WebhookChannel

            self._webhooks = WebhookChannel(
                timeout=self.settings.webhook_timeout,
                connect_timeout=self.settings.webhook_connect_timeout,
                allow_http=self.settings.webhook_allow_http,
                allow_networks=self.settings.webhook_allow_networks,
                in_flight=self.settings.webhook_concurrency,
            )
        try:
            return await send_group(self._webhooks, self.pacer, group)
        except Exception as exc:  # noqa: BLE001 - fails these rows only
            log.exception("webhook group for endpoint %s failed", group.endpoint_id)
            return outbox.crashed(group.delivery_ids, exc, endpoint_id=group.endpoint_id)

    def _edition(self, session: Session, edition_id: int) -> Edition:
        edition = self._editions.get(edition_id)
        if edition is None:
            if len(self._editions) > 256:
                self._editions.clear()
            edition = session.get(Edition, edition_id)
            if edition is None:
                raise LookupError(f"edition {edition_id} is gone")
            self._editions[edition_id] = edition
        return edition

    async def _send_emails(self, jobs: list[EmailJob]) -> list[outbox.Outcome]:
        """As many lanes as the channel has connections, each sending one message after
        another: a task per message would mostly wait for a connection, and cost more
        to schedule than the send itself."""
        outcomes: list[outbox.Outcome] = []
        todo = iter(jobs)

        async def lane() -> None:
            for job in todo:
                outcomes.extend(await self._send(job))

        lanes = min(len(jobs), self.settings.smtp_connections)
        await asyncio.gather(*(lane() for _ in range(lanes)))
        return outcomes

    async def _send(self, job: EmailJob) -> list[outbox.Outcome]:
        await self.limiter.acquire()
        started, built, key = utcnow(), job.built, str(job.delivery_ids[0])

        def each(result: str, error=None, code=None, **kw) -> list[outbox.Outcome]:
            return [
                outbox.Outcome(i, result, error, code, started_at=started, **kw)
                for i in job.delivery_ids
            ]

        try:
            await self.channel.send(
                sender=built.sender, recipient=built.recipient, message=built.data, key=key
            )
        except TemporaryDeliveryError as exc:
            log.info("delivery %s: temporary failure: %s", key, exc, extra={"delivery_id": key})
            return each("temporary", str(exc), exc.code, retry_after=exc.retry_after)
        except PermanentDeliveryError as exc:
            log.warning("delivery %s: permanent failure: %s", key, exc, extra={"delivery_id": key})
            return each("permanent", str(exc), exc.code, suppress=exc.suppress)
        except Exception as exc:  # noqa: BLE001 - a bug or unencodable message: this row only
            log.exception("delivery %s: unexpected error", key, extra={"delivery_id": key})
            return outbox.crashed(job.delivery_ids, exc, started_at=started)
        return each("sent", None, 250, message_id=built.message_id)


def run_worker(
    engine: Engine, settings: Settings, *, until_empty: bool, progress=None
) -> WorkerStats:
    """Run a worker until the outbox is empty (or forever), stopping cleanly on SIGTERM/SIGINT."""

    async def main() -> WorkerStats:
        worker = Worker(engine=engine, settings=settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # not available off the main thread; the caller stops the worker then
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, worker.stop)
        return await worker.run(until_empty=until_empty, progress=progress)

    return asyncio.run(main())
