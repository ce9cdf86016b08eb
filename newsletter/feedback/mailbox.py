"""The bounce mailbox: an IMAP folder polled on a schedule, each message processed like an
imported one and then moved away or flagged, so that nothing is counted twice.

A poll reads at most NEWSLETTER_BOUNCE_IMAP_MAX_MESSAGES, in chunks: each chunk is
fetched, processed in one transaction, committed, and only then marked on the server
(moved to the processed folder, with UID MOVE or else COPY + \\Deleted + EXPUNGE; or,
without a processed folder, flagged \\Seen and `$NewsletterProcessed` and skipped from
then on). A poller that dies between the commit and the marking reads those messages
again next time; `process_message` knows each one by its hash and changes nothing.
A message that cannot be read is logged and set aside (the error folder, or marked like
the others); one that is too large is not even downloaded. A server that cannot be
reached is one log line, and the next poll tries again.

imaplib blocks: callers run `poll` in a thread (the scheduler's, or the CLI's own).
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from newsletter.core.metrics import BOUNCES
from newsletter.core.settings import Settings
from newsletter.feedback.process import Result
from newsletter.feedback.sources import process_chunk

log = logging.getLogger("newsletter.feedback.mailbox")

PROCESSED_KEYWORD = "$NewsletterProcessed"
CHUNK_MESSAGES = 100
CHUNK_BYTES = 20_000_000
DB_ATTEMPTS = 4

_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be reached, logged in to, or opened."""


@dataclass
class PollReport:
    """What one poll did: results by kind, how many messages were marked (moved or
    flagged), how many were left for the next poll, and why it stopped, if it did."""

    counts: dict[str, int] = field(default_factory=dict)
    marked: int = 0
    left: int = 0
    error: str | None = None

    def add(self, result: Result) -> None:
        self.counts[result.kind] = self.counts.get(result.kind, 0) + 1

    @property
    def read(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items())) or "no new messages"
        more = f"; {self.left} left for the next poll" if self.left else ""
        return f"{kinds}{more}"


def describe(settings: Settings) -> str:
    """`user@host:port/folder`, for log lines (never the password)."""
    return (
        f"{settings.bounce_imap_user}@{settings.bounce_imap_host}:{port_of(settings)}"
        f"/{settings.bounce_imap_folder}"
    )


def port_of(settings: Settings) -> int:
    if settings.bounce_imap_port:
        return settings.bounce_imap_port
    return 993 if settings.bounce_imap_tls == "tls" else 143


def quoted(name: str) -> str:
    """A mailbox name as an IMAP quoted string (names may hold spaces)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """One IMAP session on the bounce folder: `open`, `unread`, `fetch`, `mark`, `close`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.conn: imaplib.IMAP4 | None = None
        self.capabilities: set[str] = set()
        self.keywords = False  # the folder takes our own keyword
        self.move_to: str | None = None  # the processed folder, once known to exist
        self.error_to: str | None = None

    # --- session -----------------------------------------------------------------------

    def open(self) -> None:
        s = self.settings
        host, port, timeout = s.bounce_imap_host or "", port_of(s), s.bounce_imap_timeout
        try:
            if s.bounce_imap_tls == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    host, port, ssl_context=self._tls(), timeout=timeout
                )
            else:
                conn = imaplib.IMAP4(host, port, timeout=timeout)
                if s.bounce_imap_tls == "starttls":
                    conn.starttls(ssl_context=self._tls())
            self.conn = conn
            password = s.bounce_imap_password.get_secret_value() if s.bounce_imap_password else ""
            conn.login(s.bounce_imap_user or "", password)
            self.capabilities = self._capabilities()
            typ, data = conn.select(quoted(s.bounce_imap_folder))
            if typ != "OK":
                raise MailboxError(f"cannot open folder {s.bounce_imap_folder!r}: {_text(data)}")
            flags = _text(conn.response("PERMANENTFLAGS")[1])
            self.keywords = "\\*" in flags or PROCESSED_KEYWORD.lower() in flags.lower()
            self.move_to = self._folder(
                s.bounce_imap_processed_folder, "processed messages are flagged instead"
            )
            self.error_to = self._folder(
                s.bounce_imap_error_folder, "unreadable messages are marked like the others"
            )
        except MailboxError:
            self.close()
            raise
        except (OSError, imaplib.IMAP4.error, ssl.SSLError, EOFError) as exc:
            self.close()
            raise MailboxError(_why(exc)) from exc

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if conn.state == "SELECTED":
                conn.close()
            conn.logout()
        except (OSError, imaplib.IMAP4.error, EOFError):
            with contextlib.suppress(OSError):
                conn.shutdown()

    def _tls(self) -> ssl.SSLContext:
        ca = self.settings.bounce_imap_ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def _capabilities(self) -> set[str]:
        assert self.conn is not None
        typ, data = self.conn.capability()
        words = _text(data).upper().split() if typ == "OK" else []
        return set(words) | {str(c).upper() for c in self.conn.capabilities}

    def _folder(self, name: str | None, otherwise: str) -> str | None:
        """`name` if it exists or could be created; None (and a warning) otherwise."""
        if not name:
            return None
        assert self.conn is not None
        typ, data = self.conn.list('""', quoted(name))
        if typ == "OK" and any(d for d in data if d):
            return name
        typ, data = self.conn.create(quoted(name))
        if typ == "OK":
            log.info("bounce mailbox: created folder %r", name)
            return name
        log.warning(
            "bounce mailbox: folder %r does not exist and cannot be created (%s); %s",
            name,
            _text(data),
            otherwise,
        )
        return None

    # --- reading -----------------------------------------------------------------------

    def unread(self) -> list[int]:
        """UIDs of the messages not yet processed, oldest first."""
        assert self.conn is not None
        if self.move_to:
            criteria = ["UNDELETED"]  # everything still here is new
        elif self.keywords:
            criteria = ["UNDELETED", "UNKEYWORD", PROCESSED_KEYWORD]
        else:
            criteria = ["UNDELETED", "UNSEEN"]
        typ, data = self.conn.uid("SEARCH", *criteria)
        if typ != "OK":
            raise MailboxError(f"search failed: {_text(data)}")
        return sorted(int(u) for u in _text(data).split())

    def sizes(self, uids: list[int]) -> dict[int, int]:
        assert self.conn is not None
        typ, data = self.conn.uid("FETCH", _uidset(uids), "(RFC822.SIZE)")
        if typ != "OK":
            raise MailboxError(f"fetch failed: {_text(data)}")
        found = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            uid, size = _UID.search(line or b""), _SIZE.search(line or b"")
            if uid and size:
                found[int(uid.group(1))] = int(size.group(1))
        return found

    def fetch(self, uids: list[int]) -> dict[int, bytes]:
        """The raw messages, without setting \\Seen (that is for `mark`)."""
        assert self.conn is not None
        typ, data = self.conn.uid("FETCH", _uidset(uids), "(BODY.PEEK[])")
        if typ != "OK":
            raise MailboxError(f"fetch failed: {_text(data)}")
        found = {}
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                uid = _UID.search(item[0])
                if uid:
                    found[int(uid.group(1))] = item[1]
        return found

    # --- marking -----------------------------------------------------------------------

    def mark(self, uids: list[int], *, bad: bool = False) -> None:
        """Move the messages out of the folder, or flag them so no poll reads them again."""
        if not uids:
            return
        target = self.error_to if bad and self.error_to else self.move_to
        if target:
            self._move(uids, target)
        else:
            self._flag(uids)

    def _flag(self, uids: list[int]) -> None:
        assert self.conn is not None
        flags = f"(\\Seen {PROCESSED_KEYWORD})" if self.keywords else "(\\Seen)"
        self._ok(self.conn.uid("STORE", _uidset(uids), "+FLAGS.SILENT", flags), "flag")

    def _move(self, uids: list[int], target: str) -> None:
        assert self.conn is not None
        uidset = _uidset(uids)
        if "MOVE" in self.capabilities:
            self._ok(self.conn.uid("MOVE", uidset, quoted(target)), "move")
            return
        self._ok(self.conn.uid("COPY", uidset, quoted(target)), "copy")
        self._ok(self.conn.uid("STORE", uidset, "+FLAGS.SILENT", "(\\Deleted)"), "delete")
        if "UIDPLUS" in self.capabilities:
            self._ok(self.conn.uid("EXPUNGE", uidset), "expunge")
        else:
            self._ok(self.conn.expunge(), "expunge")

    @staticmethod
    def _ok(answer: tuple[str, list], what: str) -> None:
        typ, data = answer
        if typ != "OK":
            raise MailboxError(f"{what} failed: {_text(data)}")


def poll(engine: Engine, settings: Settings, *, chunk: int = CHUNK_MESSAGES) -> PollReport:
    """Read the bounce mailbox once: process what is new, then move or flag it. Never
    raises for the mailbox or the database: the report's `error` says why it stopped."""
    report = PollReport()
    where = describe(settings)
    box = Mailbox(settings)
    try:
        box.open()
        uids = box.unread()
        report.left = max(0, len(uids) - settings.bounce_imap_max_messages)
        uids = uids[: settings.bounce_imap_max_messages]
        sizes = box.sizes(uids) if uids else {}
        for batch in _batches(uids, sizes, chunk):
            _poll_batch(engine, settings, box, batch, sizes, report)
    except MailboxError as exc:
        report.error = str(exc)
    except (OSError, imaplib.IMAP4.error, ssl.SSLError, EOFError) as exc:
        report.error = _why(exc)
    except SQLAlchemyError as exc:
        report.error = f"database error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    except Exception as exc:  # noqa: BLE001 - a poller never dies of one mailbox's oddity
        log.exception("bounce mailbox %s: unexpected error", where)
        report.error = f"unexpected error: {type(exc).__name__}"
    finally:
        box.close()
    if report.error:
        log.error("bounce mailbox %s: %s; trying again at the next poll", where, report.error)
    elif report.read:
        log.info("bounce mailbox %s: %s", where, report.summary())
    return report


def _poll_batch(engine, settings, box: Mailbox, batch, sizes, report: PollReport) -> None:
    limit = settings.bounce_max_bytes
    too_large = [u for u in batch if sizes.get(u, 0) > limit]
    wanted = [u for u in batch if u not in too_large]
    raws = box.fetch(wanted) if wanted else {}
    results = _processed(engine, settings, [raws[u] for u in wanted if u in raws])
    good: list[int] = []
    bad: list[int] = []
    for uid, result in zip([u for u in wanted if u in raws], results, strict=True):
        report.add(result)
        (good if result.ok else bad).append(uid)
        if not result.ok:
            log.warning("bounce mailbox: message UID %d set aside: %s", uid, result.line())
    for uid in too_large:
        result = Result("too-large", f"{sizes[uid]} bytes, larger than {limit}; not downloaded")
        BOUNCES.labels(kind=result.kind).inc()
        report.add(result)
        bad.append(uid)
        log.warning("bounce mailbox: message UID %d set aside: %s", uid, result.line())
    # committed above: only now may the server forget them
    box.mark(good)
    box.mark(bad, bad=True)
    report.marked += len(good) + len(bad)


def _processed(engine: Engine, settings: Settings, raws: list[bytes]) -> list[Result]:
    """`process_chunk`, tried again a few times when the database is busy (SQLite
    refuses a write at once when another process wrote since this one began reading)."""
    for attempt in range(DB_ATTEMPTS):
        try:
            return process_chunk(engine, settings, raws, source="imap")
        except OperationalError:
            if attempt == DB_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _batches(uids: list[int], sizes: dict[int, int], chunk: int) -> Iterator[list[int]]:
    """Runs of at most `chunk` messages and about CHUNK_BYTES (one fetch, one commit)."""
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= chunk or total + size > CHUNK_BYTES):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def _uidset(uids: list[int]) -> str:
    """`1:3,7,9:12`: runs as ranges, so a command line stays short."""
    parts: list[str] = []
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _text(data) -> str:
    if isinstance(data, list | tuple):
        return " ".join(_text(d) for d in data if d is not None)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return "" if data is None else str(data)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({exc.verify_message or exc})"
    if isinstance(exc, imaplib.IMAP4.error):
        text = str(exc).strip()
        if text.startswith("b'") or text.startswith('b"'):
            text = text[2:-1]
        return f"IMAP error: {text or type(exc).__name__}"
    if isinstance(exc, EOFError):
        return "the server closed the connection"
    return f"{type(exc).__name__}: {exc}"
