"""Matching rules: Chinese by substring, English by whole word, excludes veto, why is kept."""

import pytest

from newsletter.topics.catalogue import DEFAULT_TOPICS
from newsletter.topics.matching import (
    RuleError,
    TopicRules,
    compile_term,
    match_topics,
    validate_rules,
)


def rules(slug="t", **kw):
    return TopicRules.compile(slug, kw)


def test_english_terms_match_whole_words_case_insensitively():
    r = rules(include=["act"])
    assert r.explain([("title.en", "The EU AI Act takes effect")]) == 'keyword "act" in title.en'
    assert r.explain([("title.en", "the ACT passed")]) is not None
    assert r.explain([("title.en", "They actually shipped it")]) is None
    assert r.explain([("title.en", "impact on markets")]) is None


def test_chinese_terms_match_as_substrings():
    r = rules(include=["芯片"])
    assert r.explain([("title.zh", "英伟达H20芯片对华限售")]) == 'keyword "芯片" in title.zh'
    assert r.explain([("title.zh", "大模型开源")]) is None


def test_english_term_inside_chinese_text_still_matches():
    r = rules(include=["GPU"])
    assert r.explain([("summary.zh", "新一代gpu集群")]) is not None
    assert r.explain([("summary.en", "GPUs")]) is None  # whole word, no wildcard


def test_prefix_wildcard_and_hyphen_space_equivalence():
    r = rules(include=["regulat*", "open-weight"])
    assert r.explain([("title.en", "Regulators circle")]) == 'keyword "regulat*" in title.en'
    assert r.explain([("title.en", "an open weight model")]) == 'keyword "open-weight" in title.en'
    assert r.explain([("title.en", "open-weights")]) is None


def test_fullwidth_characters_are_normalised():
    found = match_topics([rules("hw", include=["GPU"])], {"zh": "ＧＰＵ供应"}, {})
    assert found == {"hw": 'keyword "GPU" in title.zh'}


def test_exclude_vetoes_the_topic():
    r = rules(include=["chip"], exclude=["chip in"])
    assert r.explain([("title.en", "Nvidia chip sales")]) is not None
    assert r.explain([("title.en", "Investors chip in on chip startup")]) is None


def test_regex_is_used_as_written():
    r = rules(regex=r"\b[A-Z][A-Za-z]* Act\b")
    assert "regex" in r.explain([("title.en", "The CHIPS Act returns")])
    assert r.explain([("title.en", "they act quickly")]) is None


def test_match_topics_returns_every_topic_with_reason():
    compiled = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    found = match_topics(
        compiled,
        {"en": "SpaceX puts $2 billion into xAI", "zh": "SpaceX向xAI注资20亿美元"},
        {"en": "The stake deepens ties between Musk's companies."},
    )
    assert set(found) == {"capital"}
    assert found["capital"] in ('keyword "注资" in title.zh', 'keyword "stake" in summary.en')


def test_event_may_match_no_topic():
    compiled = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    assert match_topics(compiled, {"en": "Gemini wins gold at maths olympiad"}, {}) == {}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"include": "x", "colour": 1}, "unknown rule keys"),
        ({"include": [1, 2]}, "list of strings"),
        ({"regex": "(unclosed"}, "invalid regex"),
        ([], "mapping"),
    ],
)
def test_bad_rules_are_rejected_with_reason(bad, message):
    with pytest.raises(RuleError, match=message):
        validate_rules(bad)


def test_empty_term_is_rejected():
    with pytest.raises(RuleError):
        compile_term("*")


def default_match(title: str, summary: str = "") -> set[str]:
    compiled = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    lang = "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in title) else "en"
    return set(match_topics(compiled, {lang: title}, {lang: summary} if summary else {}))


@pytest.mark.parametrize(
    "title",
    [
        "《数据出境安全评估办法》修订稿公布",
        "某省出台促进智能网联汽车发展条例",
        "两部门联合发布算法推荐管理规定",
        "Ministry tightens the rules on facial recognition in schools",
        "Regulator opens a probe into a chatbot maker",
        "Commerce Department adds three firms to the Entity List",
        "Two governments sign a memorandum on AI safety testing",
    ],
)
def test_government_bodies_and_their_measures_are_governance(title):
    assert "governance" in default_match(title)


def test_a_book_title_that_is_a_report_is_not_a_measure():
    assert default_match("《全球算法竞赛年度报告》发布") == set()


@pytest.mark.parametrize(
    "title, expected",
    [
        ("Cloud firm signs a $12 billion contract to supply GPUs", {"capital", "hardware"}),
        ("云厂商签下价值120亿元的算力采购合同", {"capital", "hardware"}),
        ("Chipmaker's quarterly revenue reaches $12 billion", {"hardware"}),
        ("芯片企业三季度营收120亿元，同比增长三成", {"hardware"}),
    ],
)
def test_deals_for_chips_are_capital_but_chip_results_are_not(title, expected):
    assert default_match(title) == expected
