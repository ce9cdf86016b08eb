"""The audit log names who changed topic rules, retagged events and started a send."""

from __future__ import annotations

from sqlmodel import Session

from newsletter.pipeline.sample import add_demo_readers, load_sample
from tests.support.web import api_client


def test_rule_edits_retags_and_sends_are_in_the_audit_log(web_settings, engine):
    with Session(engine) as s:
        load_sample(session=s)
        add_demo_readers(session=s)
        s.commit()
    client = api_client(web_settings, engine, name="desk", role="editor")
    changed = client.patch(
        "/api/v1/topics/hardware", json={"rules": {"include": ["chip", "芯片"], "exclude": []}}
    )
    assert changed.status_code == 200, changed.text
    assert client.post("/api/v1/events/retag").status_code == 200
    dry = client.post(
        "/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07", "dry_run": True}
    )
    assert dry.status_code == 200, dry.text
    sent = client.post("/api/v1/digests/send", json={"frequency": "monthly", "period": "2025-07"})
    assert sent.status_code == 200, sent.text

    entries = client.get("/api/v1/audit").json()["data"]
    by_action = {e["action"]: e for e in entries}
    assert by_action["topic.edit"]["target"] == "hardware"
    assert "include: chip, 芯片" in by_action["topic.edit"]["detail"]
    assert by_action["events.retag"]["detail"].endswith("changed")
    assert by_action["digest.send"]["target"] == "monthly 2025-07"
    assert "queued" in by_action["digest.send"]["detail"]
    assert all(e["token_name"] == "desk" for e in entries)
    # a dry run changes nothing and is not recorded
    assert [e["action"] for e in entries].count("digest.send") == 1
