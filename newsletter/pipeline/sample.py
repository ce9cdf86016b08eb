"""The sample July 2025 data shipped with the package, for first runs and demos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from newsletter.core.models import SharpTake, utcnow
from newsletter.ingest.files import ImportReport, import_file
from newsletter.topics.catalogue import ensure_default_topics

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_data"
SAMPLE_EVENTS = SAMPLE_DIR / "events_2025_07.yaml"
SAMPLE_PERIOD = "2025-07"


DEMO_READERS = [
    {
        "email": "reader.en@example.com",
        "name": "Ada",
        "language": "en",
        "timezone": "Europe/London",
        "frequency": "monthly",
        "topics": ["governance", "capital", "hardware", "open-source"],
    },
    {
        "email": "reader.zh@example.com",
        "name": "李雷",
        "language": "zh",
        "timezone": "Asia/Shanghai",
        "frequency": "monthly",
        "topics": ["hardware", "open-source"],
    },
]


def add_demo_readers(*, session: Session) -> int:
    """Two sample subscribers (one per language), so a first run has someone to write to."""
    from newsletter.audience.subscribers import SubscriberIn, add_subscriber, get_subscriber

    added = 0
    for reader in DEMO_READERS:
        if get_subscriber(session=session, email=str(reader["email"])) is None:
            add_subscriber(session=session, sub_in=SubscriberIn(**reader), source="sample")
            added += 1
    return added


@dataclass
class SampleResult:
    topics_created: int
    report: ImportReport
    takes: int


def load_sample(*, session: Session) -> SampleResult:
    created = ensure_default_topics(session=session)
    report = import_file(session=session, path=SAMPLE_EVENTS)
    takes = 0
    for path in sorted(SAMPLE_DIR.glob("sharp_take_2025_07.*.md")):
        language = path.suffixes[0].lstrip(".")
        exists = session.exec(
            select(SharpTake).where(
                SharpTake.period == SAMPLE_PERIOD, SharpTake.language == language
            )
        ).first()
        if exists is None:
            session.add(
                SharpTake(
                    period=SAMPLE_PERIOD,
                    language=language,
                    body_markdown=path.read_text(encoding="utf-8").strip(),
                    updated_at=utcnow(),
                    # the sample shows a finished month: its takes are approved
                    state="approved",
                    approved_at=utcnow(),
                    approved_by="sample",
                )
            )
            takes += 1
    return SampleResult(topics_created=created, report=report, takes=takes)
