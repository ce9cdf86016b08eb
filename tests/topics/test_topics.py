"""Topic CRUD through the CLI, and the refusal to drop followed topics without --force."""

import json

from sqlmodel import Session

from newsletter.core.db import make_engine
from newsletter.core.models import Subscriber, Subscription
from newsletter.topics.catalogue import get_topic


def topics_json(cli):
    result = cli("topics", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    return {t["slug"]: t for t in json.loads(result.output)}


def test_defaults_are_shipped_by_sample_load(cli):
    assert cli("sample", "load").exit_code == 0
    topics = topics_json(cli)
    assert set(topics) == {"governance", "capital", "hardware", "open-source"}
    assert "芯片" in topics["hardware"]["rules"]["include"]
    assert topics["hardware"]["events"] > 0


def test_add_edit_remove_topic(cli):
    result = cli(
        "topics",
        "add",
        "robotics",
        "--name-en",
        "Robotics",
        "--name-zh",
        "机器人",
        "--include",
        "机器人,humanoid*",
        "--include",
        "robot*",
        "--exclude",
        "robotic process",
    )
    assert result.exit_code == 0, result.output
    rules = topics_json(cli)["robotics"]["rules"]
    assert rules == {
        "include": ["机器人", "humanoid*", "robot*"],
        "exclude": ["robotic process"],
        "regex": None,
    }

    result = cli(
        "topics",
        "edit",
        "robotics",
        "--add-include",
        "具身智能",
        "--remove-include",
        "robot*",
        "--regex",
        r"(?i)\bunitree\b",
        "--name-en",
        "Robots",
    )
    assert result.exit_code == 0, result.output
    assert "retag" in result.output
    t = topics_json(cli)["robotics"]
    assert t["name_en"] == "Robots"
    assert t["rules"]["include"] == ["机器人", "humanoid*", "具身智能"]
    assert t["rules"]["regex"] == r"(?i)\bunitree\b"

    assert cli("topics", "remove", "robotics").exit_code == 0
    assert "robotics" not in topics_json(cli)


def test_bad_topic_input_fails_cleanly_and_changes_nothing(cli):
    cli("topics", "add", "ai-safety", "--name-en", "Safety", "--name-zh", "安全")
    before = topics_json(cli)
    cases = [
        (["topics", "add", "Bad Slug", "--name-en", "x", "--name-zh", "y"], "slug"),
        (["topics", "add", "ai-safety", "--name-en", "x", "--name-zh", "y"], "already exists"),
        (
            ["topics", "add", "x1", "--name-en", "x", "--name-zh", "y", "--regex", "(oops"],
            "invalid regex",
        ),
        (["topics", "edit", "ai-safety", "--regex", "[z-a]"], "invalid regex"),
        (["topics", "edit", "ai-safety", "--remove-include", "nothing"], "has no term"),
        (["topics", "edit", "nope", "--name-en", "x"], "no topic 'nope'"),
        (["topics", "remove", "nope"], "no topic 'nope'"),
    ]
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert topics_json(cli) == before


def test_remove_followed_topic_needs_force_and_says_how_many(cli, db_url):
    cli("sample", "load")
    engine = make_engine(db_url)
    with Session(engine) as s:
        topic = get_topic(session=s, slug="capital")
        for n in range(3):
            sub = Subscriber(email=f"r{n}@example.com")
            s.add(sub)
            s.flush()
            s.add(Subscription(subscriber_id=sub.id, topic_id=topic.id))
        s.commit()
    engine.dispose()
    result = cli("topics", "remove", "capital")
    assert result.exit_code == 1
    assert "3 subscriber(s)" in result.stderr and "--force" in result.stderr
    assert "capital" in topics_json(cli)
    result = cli("topics", "remove", "capital", "--force")
    assert result.exit_code == 0 and "3 subscriber(s)" in result.output
    assert "capital" not in topics_json(cli)
