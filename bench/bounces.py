"""Bounce processing: N returned messages through the same function `bounces import` and
`bounces serve` use, against readers who were really mailed.

    python bench/bounces.py [--count 100000] [--readers 20000] [--database-url URL]

The database gets `--readers` readers, each with a sent digest delivery. The messages
are made on the fly (so memory is what processing needs, not the input's size): RFC 3464
DSNs to the delivery's VERP address (hard and soft), Exim-style plain-text bounces with
no VERP (flufl.bounce's detectors, then the address), ARF complaints, mails that are no
bounce at all, and re-sent duplicates. Prints messages/second, the kinds counted, and the
peak RSS after a tenth of the messages and at the end (flat memory: they stay close).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import resource
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator

from common import add_subscribers, fresh_database
from sqlalchemy import insert, select, text
from sqlmodel import Session

from newsletter.core.db import make_engine
from newsletter.core.models import Delivery, Subscriber
from newsletter.core.settings import Settings
from newsletter.delivery.return_path import return_path
from newsletter.feedback.sources import process_all

FROM = "brief@bench.example"
SECRET = "bench-secret-key-0123456789-abcdefghij-XYZ"
MADE = dt.datetime.now(dt.UTC)


def add_deliveries(url: str) -> list[tuple[int, str, str]]:
    """A sent digest per reader: [(delivery id, address, message id)]."""
    engine = make_engine(url)
    with Session(engine) as s:
        readers = list(s.execute(select(Subscriber.id, Subscriber.email).order_by(Subscriber.id)))
    rows = []
    for i, (sid, _email) in enumerate(readers, 1):
        digest = hashlib.sha256(f"subscriber:{sid}|digest-monthly|2025-07".encode()).hexdigest()
        rows.append(
            {
                "id": i,
                "idempotency_key": f"subscriber:{sid}|digest-monthly|2025-07",
                "channel": "email",
                "kind": "digest-monthly",
                "period": "2025-07",
                "subscriber_id": sid,
                "status": "sent",
                "attempts": 1,
                "next_attempt_at": MADE,
                "created_at": MADE,
                "sent_at": MADE,
                "message_id": f"<{i}.{digest[:20]}@bench.example>",
            }
        )
    with engine.begin() as conn:
        for lo in range(0, len(rows), 5000):
            conn.execute(insert(Delivery), rows[lo : lo + 5000])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval('delivery_id_seq', (SELECT max(id) FROM delivery))"))
    engine.dispose()
    return [(r["id"], e, r["message_id"]) for r, (_s, e) in zip(rows, readers, strict=True)]


def dsn(verp: str, rcpt: str, mid: str, status: str, n: int) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx{n % 50}.example.net\r\nTo: {verp}\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <b{n}@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n"
        f"\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox unavailable\r\n"
        f"\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: {FROM}\r\nTo: {rcpt}\r\n"
        f"Message-ID: {mid}\r\n\r\n--B--\r\n"
    ).encode()


def exim(rcpt: str, n: int) -> bytes:
    return (
        f"From: Mail Delivery System <Mailer-Daemon@mx.example.com>\r\nTo: {FROM}\r\n"
        f"X-Failed-Recipients: {rcpt}\r\nMessage-Id: <E{n}@mx.example.com>\r\n"
        "Subject: Mail delivery failed: returning message to sender\r\n\r\n"
        "This message was created automatically by mail delivery software.\r\n\r\n"
        "A message that you sent could not be delivered to one or more of its\r\n"
        "recipients. This is a permanent error. The following address(es) failed:\r\n\r\n"
        f"  {rcpt}\r\n    550 5.1.1 No such user here\r\n"
    ).encode()


def arf(verp: str, rcpt: str, n: int) -> bytes:
    return (
        f"From: fbl@isp.example.net\r\nTo: fbl@bench.example\r\nMessage-ID: <a{n}@isp>\r\n"
        "Subject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"Version: 1\r\nOriginal-Mail-From: <{verp}>\r\nOriginal-Rcpt-To: <{rcpt}>\r\n"
        "\r\n--A--\r\n"
    ).encode()


def messages(
    count: int, deliveries: list[tuple[int, str, str]], settings: Settings
) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(11)
    recent: list[bytes] = []
    for n in range(count):
        did, rcpt, mid = rng.choice(deliveries)
        verp = return_path(settings, FROM, did, MADE)
        roll = rng.random()
        if roll < 0.05 and recent:
            raw = rng.choice(recent)  # a relay delivering the same bounce twice
        elif roll < 0.40:
            raw = dsn(verp, rcpt, mid, "5.1.1", n)
        elif roll < 0.70:
            raw = dsn(verp, rcpt, mid, "4.2.2", n)
        elif roll < 0.85:
            raw = exim(rcpt, n)
        elif roll < 0.92:
            raw = arf(verp, rcpt, n)
        else:
            raw = (
                f"From: someone@example.net\r\nSubject: out of office {n}\r\n\r\nAway.\r\n".encode()
            )
        recent = (recent + [raw])[-100:]
        yield f"m{n}", raw


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    url, tmp = fresh_database(args.database_url)
    try:
        add_subscribers(url, args.readers)
        deliveries = add_deliveries(url)
        settings = Settings(database_url=url, secret_key=SECRET, mail_from=f"Brief <{FROM}>")
        engine = make_engine(url)
        kinds: Counter[str] = Counter()
        tenth = max(1, args.count // 10)
        rss_tenth = 0.0
        start = time.perf_counter()
        for i, (_name, result) in enumerate(
            process_all(engine, settings, messages(args.count, deliveries, settings)), 1
        ):
            kinds[result.kind] += 1
            if i == tenth:
                rss_tenth = peak_rss_mb()
        elapsed = time.perf_counter() - start
        with Session(engine) as s:
            disabled = s.execute(select(Subscriber.id).where(Subscriber.status == "disabled")).all()
        engine.dispose()
        print(
            f"database: {engine.dialect.name}, readers: {args.readers}, python {sys.version.split()[0]}"
        )
        print(f"messages: {args.count} in {elapsed:.1f} s = {args.count / elapsed:,.0f} messages/s")
        print("kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
        print(f"readers disabled: {len(disabled)}")
        print(
            f"peak RSS: {rss_tenth:.0f} MB after {tenth} messages, {peak_rss_mb():.0f} MB at the end"
        )
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
