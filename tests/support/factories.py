"""Small builders for test data."""

from __future__ import annotations

import itertools

_n = itertools.count(1)


def event_record(**overrides):
    n = next(_n)
    record = {
        "title": {"en": f"Lab {n} raises funding for chips", "zh": f"实验室{n}完成芯片融资"},
        "summary": {"en": "A round led by investors.", "zh": "投资方领投。"},
        "url": f"https://news.example.com/{n}",
        "source": "Example Wire",
        "region": "global",
        "occurred_on": "2025-07-10",
        "language": "en",
        "importance": 3,
    }
    record.update(overrides)
    return record
