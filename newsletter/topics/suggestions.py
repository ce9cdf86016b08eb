"""Suggested keywords: what an editor's hand corrections say the rules are missing.

When an admin puts an event in a topic by hand and the topic's rules do not match it,
the words of such events are the rules' blind spot. A term is suggested when it is
frequent among those events yet rare across all stored events (so "发布", "company"
or "AI" never are): English words and two-word phrases, Chinese two- to four-character
sequences (the longest one where shorter pieces never occur on their own).

    >>> suggest_keywords(session=session, topic=topic)  # doctest: +SKIP
    Suggestions(manual=5, missed=3, terms=[Suggestion(term="条例", events=3, elsewhere=1)])
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlmodel import Session, select

from newsletter.core.models import Event, EventTopic, Topic
from newsletter.topics.matching import TopicRules, event_fields

BACKGROUND_LIMIT = 2000  # most recent events that say which words are common (as the live check)
COMMON_SHARE = 0.2  # a term in more than this share of all events is too common to help
MAX_SUGGESTIONS = 12
MAX_CANDIDATES = 300  # terms most frequent in the missed events, counted everywhere

_CJK_RUN = re.compile(r"[\u3400-\u9fff]+")
_SENTENCE = re.compile(r"[.,;:!?()\"“”]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-'][A-Za-z0-9]+)*")
# characters that start or end no Chinese keyword worth suggesting
_CJK_EDGE = set("的了和与及或在是为将已对从于其也并中上下等而被把向之以这那个一有")
_STOPWORD_TEXT = """a about after against all also an and any are as at be been before being between
    both but by can could did do does during each for from had has have he her his how if
    in into is it its it's more most new no not of on one or other our out over said says
    she so some such than that the their them then there these they this those through
    to two up us was we were what when where which while who will with would year years
    first last next per via"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@dataclass(frozen=True)
class Suggestion:
    term: str
    events: int  # hand-picked events the rules miss that contain the term
    elsewhere: int  # other stored events (not in the topic) that contain it


@dataclass
class Suggestions:
    manual: int  # events put in the topic by hand
    missed: int  # of those, events the topic's rules do not match
    terms: list[Suggestion] = field(default_factory=list)


def terms_of(texts: Iterable[str]) -> set[str]:
    """Candidate terms in some texts: lower-cased English words and word pairs, and
    Chinese sequences of two to four characters."""
    found: set[str] = set()
    for text in texts:
        for run in _CJK_RUN.findall(text):
            for n in (2, 3, 4):
                for i in range(len(run) - n + 1):
                    gram = run[i : i + n]
                    if gram[0] not in _CJK_EDGE and gram[-1] not in _CJK_EDGE:
                        found.add(gram)
        for sentence in _SENTENCE.split(text):
            words = [w.lower() for w in _WORD.findall(sentence)]
            keep = [w if len(w) > 2 and w not in _STOPWORDS else None for w in words]
            found.update(w for w in keep if w)
            found.update(f"{a} {b}" for a, b in zip(keep, keep[1:], strict=False) if a and b)
    return found


def _event_terms(event: Event) -> set[str]:
    return terms_of(text for _, text in event_fields(event.title, event.summary))


def _haystack(title: dict[str, str], summary: dict[str, str]) -> tuple[str, str]:
    """An event's text twice: as is (for Chinese terms) and as " word word | word "
    (for English words and pairs), so each candidate is one substring test."""
    texts = [text for _, text in event_fields(title, summary)]
    words = " | ".join(
        " ".join(w.lower() for w in _WORD.findall(sentence))
        for text in texts
        for sentence in _SENTENCE.split(text)
    )
    return "|".join(texts), f" {words} "


def _contains(longer: str, shorter: str) -> bool:
    if " " in longer or _WORD.fullmatch(longer):
        return f" {shorter} " in f" {longer} "
    return shorter in longer


def _fragments_dropped(stats: dict[str, tuple[frozenset[int], int]]) -> list[str]:
    """Drop a term found only inside a longer candidate (same events, same count
    everywhere): "理办" of "管理办法", "export" when it only ever comes as "export licence"."""
    groups: dict[tuple[frozenset[int], int], list[str]] = {}
    for term, key in stats.items():
        groups.setdefault(key, []).append(term)
    kept = []
    for terms in groups.values():
        for term in terms:
            if not any(o != term and _contains(o, term) for o in terms):
                kept.append(term)
    return kept


def suggest_keywords(
    *, session: Session, topic: Topic, limit: int = MAX_SUGGESTIONS
) -> Suggestions:
    """Terms that would let the topic's rules find the events an editor added by hand."""
    manual = session.exec(
        select(Event)
        .join(EventTopic, EventTopic.event_id == Event.id)
        .where(EventTopic.topic_id == topic.id, EventTopic.source == "manual")
    ).all()
    rules = TopicRules.compile(topic.slug, topic.rules or {})
    missed = [e for e in manual if not rules.explain(event_fields(e.title, e.summary))]
    result = Suggestions(manual=len(manual), missed=len(missed))
    if not missed:
        return result

    in_missed: dict[str, set[int]] = {}
    for event in missed:
        for term in _event_terms(event):
            in_missed.setdefault(term, set()).add(event.id)
    support = 2 if len(missed) > 1 else 1
    frequent = sorted(
        (t for t, ids in in_missed.items() if len(ids) >= support),
        key=lambda t: (-len(in_missed[t]), -len(t), t),
    )
    candidates = {t: in_missed[t] for t in frequent[:MAX_CANDIDATES]}

    background = session.exec(
        select(Event.id, Event.title, Event.summary)
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(BACKGROUND_LIMIT)
    ).all()
    tagged = set(
        session.exec(select(EventTopic.event_id).where(EventTopic.topic_id == topic.id)).all()
    )
    chinese = [t for t in candidates if _CJK_RUN.fullmatch(t)]
    english = {f" {t} ": t for t in candidates if not _CJK_RUN.fullmatch(t)}
    everywhere: Counter[str] = Counter()
    elsewhere: Counter[str] = Counter()
    for event_id, title, summary in background:
        text, words = _haystack(title, summary)
        present = [t for t in chinese if t in text]
        present += [t for key, t in english.items() if key in words]
        everywhere.update(present)
        if event_id not in tagged:
            elsewhere.update(present)

    total = max(len(background), 1)
    stats = {
        term: (frozenset(ids), everywhere[term])
        for term, ids in candidates.items()
        # seen in at least two stored events (one event's odd phrase is no keyword),
        # and not common across all of them
        if 2 <= everywhere[term] <= max(COMMON_SHARE * total, len(ids))
        and not rules.explain([("term", term)])
    }
    ranked = sorted(
        _fragments_dropped(stats),
        key=lambda t: (
            -len(stats[t][0]) * math.log((total + 1) / (stats[t][1] + 0.5)),
            elsewhere[t],
            -len(t),
            t,
        ),
    )
    result.terms = [
        Suggestion(term=t, events=len(stats[t][0]), elsewhere=elsewhere[t]) for t in ranked[:limit]
    ]
    return result
