"""Suggested keywords from events an editor put in a topic by hand."""

from sqlmodel import Session

from newsletter.ingest.events import EventIn, add_event
from newsletter.topics.catalogue import TopicIn, create_topic, get_topic
from newsletter.topics.suggestions import suggest_keywords, terms_of
from tests.support.factories import event_record


def test_terms_are_english_words_pairs_and_chinese_sequences():
    terms = terms_of(["The grid operator signs a nuclear power deal", "核电站供电"])
    assert {"grid operator", "nuclear power", "nuclear", "grid"} <= terms
    assert {"核电", "核电站", "电站供电"} <= terms
    assert "the" not in terms and "a" not in terms and "the grid" not in terms
    assert "电站的" not in terms_of(["核电站的电"])  # no sequence ends on a particle


def add(session, en: str, zh: str, topics: list[str] | None = None) -> None:
    record = event_record(
        title={"en": en, "zh": zh}, summary={"en": "", "zh": ""}, topics=topics or []
    )
    add_event(session=session, event_in=EventIn(**record))


def test_words_of_hand_picked_events_the_rules_miss_are_suggested(engine):
    with Session(engine) as session:
        create_topic(
            session=session,
            topic_in=TopicIn(
                slug="energy", name_en="Energy", name_zh="能源", rules={"include": ["电网", "grid"]}
            ),
        )
        topic = get_topic(session=session, slug="energy")
        assert suggest_keywords(session=session, topic=topic).manual == 0
        # background: many events, some words everywhere ("model", "发布")
        for n in range(12):
            add(session, f"Lab {n} releases a new model", f"实验室{n}发布新模型")
        add(session, "Grid operator plans for AI load", "电网运营商发布AI负荷预案", ["energy"])
        add(
            session,
            "Utility signs nuclear power deal for a new model campus",
            "电力公司发布核电购电协议",
            ["energy"],
        )
        add(
            session,
            "Reactor start-up sells nuclear power to a model lab",
            "反应堆公司发布核电供应计划",
            ["energy"],
        )
        add(session, "Nuclear power plant restarts", "核电站重启", [])  # not in the topic
        found = suggest_keywords(session=session, topic=topic)
        assert (found.manual, found.missed) == (3, 2)  # the grid event is matched already
        terms = {s.term: s for s in found.terms}
        assert "nuclear power" in terms and "核电" in terms
        assert terms["nuclear power"].events == 2 and terms["nuclear power"].elsewhere == 1
        assert not {"model", "发布", "grid", "nuclear power plant"} & set(terms)
        assert found.terms[0].events == 2

        topic.rules = {"include": ["电网", "grid", "核电"]}
        found = suggest_keywords(session=session, topic=topic)
        assert (found.manual, found.missed, found.terms) == (3, 0, [])
