"""Print precision, recall and F1 of the default topic rules on labelled event sets.

python bench/matching_quality.py [FILE.yaml ...] [--mistakes]

Without a file, both shipped sets are measured: July 2025 (the set the rules were
tuned on) and August-December 2025 (held out: never used to tune them).
"""

import sys
from pathlib import Path

from evaluation import evaluate, load_labelled

from newsletter.topics.catalogue import DEFAULT_TOPICS
from newsletter.topics.matching import TopicRules

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
LABELLED = [DATA / "labelled_events_2025_07.yaml", DATA / "labelled_events_2025_08_12.yaml"]


def report(path: Path, *, mistakes: bool) -> None:
    labelled = load_labelled(path)
    rules = [TopicRules.compile(t["slug"], t["rules"]) for t in DEFAULT_TOPICS]
    result = evaluate(rules, labelled)
    print(f"{path.name}: {len(labelled)} labelled events")
    print(f"{'topic':<14}{'precision':>10}{'recall':>10}{'F1':>7}{'tp':>5}{'fp':>5}{'fn':>5}")
    for slug, s in [*result.per_topic.items(), ("ALL (micro)", result.overall)]:
        print(
            f"{slug:<14}{s.precision:>10.2f}{s.recall:>10.2f}{s.f1:>7.2f}"
            f"{s.tp:>5}{s.fp:>5}{s.fn:>5}"
        )
    if mistakes:
        for title, expected, got in result.mistakes:
            print(f"- {title}\n    expected {sorted(expected)} got {sorted(got)}")
    print()


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    for path in [Path(a) for a in args] or LABELLED:
        if not path.is_file():
            sys.exit(f"no such labelled file: {path}")
        report(path, mistakes="--mistakes" in sys.argv)


if __name__ == "__main__":
    main()
