"""Print precision and recall of the default topic rules on the labelled July 2025 set.

python bench/matching_quality.py [--mistakes]
"""

import sys
from pathlib import Path

from evaluation import evaluate, load_labelled

from newsletter.topics.catalogue import DEFAULT_TOPICS
from newsletter.topics.matching import TopicRules

LABELLED = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "labelled_events_2025_07.yaml"
)


def main() -> None:
    labelled = load_labelled(LABELLED)
    rules = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    result = evaluate(rules, labelled)
    print(f"labelled events: {len(labelled)}")
    print(f"{'topic':<14}{'precision':>10}{'recall':>10}{'tp':>5}{'fp':>5}{'fn':>5}")
    for slug, s in [*result.per_topic.items(), ("ALL (micro)", result.overall)]:
        print(f"{slug:<14}{s.precision:>10.2f}{s.recall:>10.2f}{s.tp:>5}{s.fp:>5}{s.fn:>5}")
    if "--mistakes" in sys.argv:
        for title, expected, got in result.mistakes:
            print(f"- {title}\n    expected {sorted(expected)} got {sorted(got)}")


if __name__ == "__main__":
    main()
