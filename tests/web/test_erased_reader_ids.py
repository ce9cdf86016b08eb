"""An erased reader's outbox rows (kept, without the reader) must not stand in the way
of a reader added later: on SQLite the newest reader's id, once deleted, goes to the
next one, and the rows' idempotency keys (`subscriber:<id>|digest-monthly|2025-07`)
would make planning skip that new reader as already served."""

from __future__ import annotations

from sqlmodel import Session, select

from newsletter.core.models import Delivery, Subscriber
from newsletter.pipeline.sample import load_sample
from tests.support.planning import plan
from tests.support.web import api_client


def test_a_reader_added_after_an_erasure_gets_the_digest(web_settings, engine):
    with Session(engine) as s:
        load_sample(session=s)
        s.commit()
    owner = api_client(web_settings, engine, name="boss", role="owner")
    reader = {"email": "first@example.org", "topics": ["hardware"], "frequency": "monthly"}
    assert owner.post("/api/v1/subscribers", json=reader).status_code == 201
    assert plan(engine, web_settings).recipients == 1
    assert owner.delete("/api/v1/subscribers/first@example.org").status_code == 204

    later = {**reader, "email": "later@example.org"}
    assert owner.post("/api/v1/subscribers", json=later).status_code == 201
    plan(engine, web_settings)
    with Session(engine) as s:
        new = s.exec(select(Subscriber).where(Subscriber.email == "later@example.org")).one()
        got = s.exec(select(Delivery.status).where(Delivery.subscriber_id == new.id)).all()
        kept = s.exec(
            select(Delivery.idempotency_key).where(Delivery.subscriber_id.is_(None))
        ).all()
    assert got == ["queued"]
    assert len(kept) == 1 and not kept[0].startswith(f"subscriber:{new.id}|")


def test_a_team_added_after_one_was_removed_gets_the_digest(sample, db_url, chat_receiver):
    from newsletter.pipeline import remove_endpoint
    from tests.delivery.test_webhooks import add, settings_for

    settings = settings_for(db_url)
    with Session(sample) as s:
        first = add(s, settings, chat_receiver, "slack", name="ops")
        s.commit()
        first_id = first.id
    assert plan(sample, settings).endpoint_rows >= 1
    with Session(sample) as s:
        remove_endpoint(session=s, endpoint=s.get(type(first), first_id))
        s.commit()
    with Session(sample) as s:
        later = add(s, settings, chat_receiver, "slack", name="desk")
        s.commit()
        later_id = later.id
    plan(sample, settings)
    with Session(sample) as s:
        got = s.exec(select(Delivery.status).where(Delivery.endpoint_id == later_id)).all()
    assert got and set(got) == {"queued"}
