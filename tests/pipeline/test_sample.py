"""The shipped July 2025 sample: enough events, both regions, both languages, a sharp take."""

from sqlmodel import select

from newsletter.core.models import Event, SharpTake
from newsletter.pipeline.sample import load_sample


def test_sample_loads_once_and_is_bilingual(session):
    first = load_sample(session=session)
    session.commit()
    assert first.topics_created == 4
    assert first.report.new >= 20 and first.report.ok, first.report.invalid
    assert first.takes == 2
    events = session.exec(select(Event)).all()
    assert {e.region for e in events} >= {"global", "china"}
    assert all(set(e.title) == {"zh", "en"} and set(e.summary) == {"zh", "en"} for e in events)
    assert all(e.occurred_on.strftime("%Y-%m") == "2025-07" for e in events)
    takes = {t.language: t for t in session.exec(select(SharpTake)).all()}
    assert set(takes) == {"zh", "en"} and all(t.period == "2025-07" for t in takes.values())

    again = load_sample(session=session)
    assert (again.topics_created, again.report.new, again.takes) == (0, 0, 0)
    assert again.report.duplicate == first.report.new
