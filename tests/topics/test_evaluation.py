"""The shipped rules against the hand-labelled July 2025 set: a floor on quality."""

import sys

from newsletter.topics.catalogue import DEFAULT_TOPICS
from newsletter.topics.matching import TopicRules
from tests.support.env import DATA, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from evaluation import evaluate, load_labelled  # noqa: E402  (a benchmark helper)

LABELLED = DATA / "labelled_events_2025_07.yaml"


def test_default_rules_precision_and_recall_floor():
    labelled = load_labelled(LABELLED)
    assert len(labelled) >= 40
    rules = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    result = evaluate(rules, labelled)
    assert result.overall.precision >= 0.85, result.mistakes
    assert result.overall.recall >= 0.90, result.mistakes
    for slug, score in result.per_topic.items():
        assert score.recall >= 0.8, (slug, result.mistakes)


def test_evaluation_counts_are_what_they_say():
    rules = [TopicRules.compile("hw", {"include": ["chip"]})]
    labelled = [
        {"title": {"en": "chip ban"}, "expected_topics": ["hw"]},
        {"title": {"en": "chip flavours"}, "expected_topics": []},
        {"title": {"en": "GPU deal"}, "expected_topics": ["hw"]},
    ]
    score = evaluate(rules, labelled).overall
    assert (score.tp, score.fp, score.fn) == (1, 1, 1)
    assert score.precision == 0.5 and score.recall == 0.5
