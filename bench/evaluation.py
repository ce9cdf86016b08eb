"""Precision and recall of topic rules against a hand-labelled set of events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from newsletter.topics.matching import TopicRules, match_topics


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Evaluation:
    per_topic: dict[str, Score]
    overall: Score
    mistakes: list[tuple[str, set[str], set[str]]] = field(default_factory=list)


def load_labelled(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def evaluate(rules: list[TopicRules], labelled: list[dict[str, Any]]) -> Evaluation:
    """Micro-averaged over (event, topic) pairs; mistakes list (title, expected, got)."""
    per_topic = {r.slug: Score() for r in rules}
    overall = Score()
    mistakes = []
    for item in labelled:
        title = item["title"] if isinstance(item["title"], dict) else {"en": item["title"]}
        summary = item.get("summary") or {}
        got = set(match_topics(rules, title, summary))
        expected = set(item.get("expected_topics") or [])
        for slug, score in per_topic.items():
            hit, want = slug in got, slug in expected
            for s in (score, overall):
                s.tp += hit and want
                s.fp += hit and not want
                s.fn += want and not hit
        if got != expected:
            mistakes.append((title.get("en") or next(iter(title.values())), expected, got))
    return Evaluation(per_topic=per_topic, overall=overall, mistakes=mistakes)
