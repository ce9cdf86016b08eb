"""Editor's picks (`pinned`) and per-language source names: from files, the CLI and the API."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlmodel import Session

from newsletter.core.admin_tokens import create_token
from newsletter.core.models import Event
from newsletter.topics.catalogue import ensure_default_topics
from newsletter.web.app import create_app
from tests.support.factories import event_record


def stored(engine, url: str) -> Event:
    from sqlalchemy import select

    with Session(engine) as s:
        return s.execute(select(Event).where(Event.url == url)).scalar_one()


def test_import_accepts_a_source_per_language_and_a_pin(cli, engine, tmp_path):
    with Session(engine) as s:
        ensure_default_topics(session=s)
        s.commit()
    records = [
        event_record(
            url="https://x.example/a", source={"en": "Xinhua", "zh": "新华社"}, pinned=True
        ),
        event_record(url="https://x.example/b", source="Reuters", source_zh="路透社"),
        event_record(url="https://x.example/c", source={"xx yy": "bad"}),
    ]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    result = cli("events", "import", str(path))
    assert result.exit_code == 1  # one invalid record, the others kept
    assert "2 new" in result.output and "invalid language code" in result.output
    a, b = stored(engine, "https://x.example/a"), stored(engine, "https://x.example/b")
    assert (a.source, a.sources, a.pinned) == ("Xinhua", {"en": "Xinhua", "zh": "新华社"}, True)
    assert (b.source, b.sources, b.pinned) == ("Reuters", {"zh": "路透社"}, False)

    csv_path = tmp_path / "events.csv"
    csv_path.write_text(
        "title_en,url,occurred_on,source_en,source_zh,pinned\n"
        "Lab opens a fab,https://x.example/d,2025-07-11,Bloomberg,彭博社,true\n",
        encoding="utf-8",
    )
    assert cli("events", "import", str(csv_path)).exit_code == 0
    d = stored(engine, "https://x.example/d")
    assert (d.source, d.sources, d.pinned) == (
        "Bloomberg",
        {"en": "Bloomberg", "zh": "彭博社"},
        True,
    )


def test_pin_and_unpin_from_the_cli(cli, engine, tmp_path):
    path = tmp_path / "events.json"
    path.write_text(json.dumps([event_record(url="https://x.example/p")]), encoding="utf-8")
    assert cli("events", "import", str(path)).exit_code == 0
    event_id = stored(engine, "https://x.example/p").id
    result = cli("events", "pin", str(event_id))
    assert result.exit_code == 0 and "editor's picks" in result.output
    assert stored(engine, "https://x.example/p").pinned is True
    assert "pinned: yes" in cli("events", "show", str(event_id)).output
    assert cli("events", "unpin", str(event_id)).exit_code == 0
    assert stored(engine, "https://x.example/p").pinned is False
    missing = cli("events", "pin", "99999")
    assert missing.exit_code != 0 and "no event with id 99999" in missing.output


def test_pin_through_the_api(db_url, engine, tmp_path):
    from newsletter.core.settings import Settings

    with Session(engine) as s:
        _, token = create_token(session=s, name="picks")
        s.commit()
    settings = Settings(database_url=db_url, outbox_dir=tmp_path / "outbox")
    client = TestClient(
        create_app(settings=settings, engine=engine), headers={"Authorization": f"Bearer {token}"}
    )
    r = client.post("/api/v1/events", json=event_record(source={"en": "WSJ", "zh": "华尔街日报"}))
    assert r.status_code == 201, r.text
    event = r.json()
    assert event["pinned"] is False and event["sources"] == {"en": "WSJ", "zh": "华尔街日报"}
    r = client.patch(f"/api/v1/events/{event['id']}", json={"pinned": True})
    assert r.status_code == 200 and r.json()["pinned"] is True
    assert client.get(f"/api/v1/events/{event['id']}").json()["pinned"] is True
    r = client.patch(f"/api/v1/events/{event['id']}", json={"importance": 9})
    assert r.status_code == 422
    r = client.patch(f"/api/v1/events/{event['id']}", json={"title": "x"})
    assert r.status_code == 422  # only what may change
    assert client.patch("/api/v1/events/99999", json={"pinned": True}).status_code == 404
