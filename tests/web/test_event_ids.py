"""A deleted event's id is never given to a new event: alerts, click counts and the
audit log name events by id, and a reused id would make the new event inherit them (on
SQLite an INTEGER PRIMARY KEY reuses the highest id once its row is deleted)."""

from __future__ import annotations

from sqlmodel import Session, func, select

from newsletter.core.models import Delivery, Event
from newsletter.ingest.events import topic_slugs
from tests.support.factories import event_record
from tests.support.web import api_client
from tests.web.test_admin_events import queue_an_alert


def test_an_event_added_after_the_newest_was_deleted_gets_its_alerts(web_settings, sample):
    client = api_client(web_settings, sample, name="desk", role="editor")
    with Session(sample) as s:
        newest = s.exec(select(func.max(Event.id))).one()
    queue_an_alert(sample, web_settings, newest)  # an instant reader of its topics
    with Session(sample) as s:
        slugs = topic_slugs(session=s, event=s.get(Event, newest))
    gone = client.delete(f"/api/v1/events/{newest}")
    assert gone.status_code == 204, gone.text
    with Session(sample) as s:
        old = s.exec(select(Delivery.status).where(Delivery.period == f"event:{newest}")).all()
    assert old == ["cancelled"]

    # a new event on the same topics: the instant reader is alerted to it
    added = client.post("/api/v1/events", json=event_record(
        title={"en": "Chip lab raises a new round for AI accelerators"}, topics=slugs))  # fmt: skip
    assert added.status_code == 201, added.text
    new_id = added.json()["id"]
    assert new_id != newest, "the deleted event's id was given again"
    assert added.json()["alerts_enqueued"] == 1
    with Session(sample) as s:
        assert s.exec(
            select(Delivery.status).where(Delivery.period == f"event:{new_id}")
        ).all() == ["queued"]
    # and again: deleting that one too, then adding, still gives a new id
    assert client.delete(f"/api/v1/events/{new_id}").status_code == 204
    again = client.post("/api/v1/events", json=event_record(topics=slugs))
    assert again.status_code == 201 and again.json()["id"] > new_id
