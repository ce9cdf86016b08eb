"""Topic matching: which topics an event gets, and the rule that says why.

Chinese terms match as substrings; other terms match whole words (so "act" does not
match "actually"), case-insensitively, in titles and summaries of every language.
A trailing `*` makes an English term a prefix ("regulat*"); hyphens and spaces in a
term are interchangeable ("open-weight" matches "open weight"). Any exclude term
vetoes the topic. The optional regex is applied as written (add `(?i)` to ignore case).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .text import has_cjk

_WORD = "A-Za-z0-9"


class RuleError(ValueError):
    """A topic's rules cannot be used (bad regex, wrong shape)."""


def _norm(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def compile_term(term: str) -> re.Pattern[str]:
    term = _norm(term).strip()
    if not term or term == "*":
        raise RuleError("empty keyword")
    prefix = term.endswith("*")
    core = term.rstrip("*").strip()
    if has_cjk(core):
        body = r"\s*".join(re.escape(part) for part in core.split())
        return re.compile(body, re.IGNORECASE)
    pieces = [re.escape(p) for p in re.split(r"[-\s]+", core) if p]
    body = r"[-\s]+".join(pieces)
    tail = f"[{_WORD}]*" if prefix else f"(?![{_WORD}])"
    return re.compile(f"(?<![{_WORD}]){body}{tail}", re.IGNORECASE)


def validate_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Return rules in canonical shape or raise RuleError saying what is wrong."""
    if not isinstance(rules, dict):
        raise RuleError("rules must be a mapping with include / exclude / regex")
    unknown = set(rules) - {"include", "exclude", "regex"}
    if unknown:
        raise RuleError(f"unknown rule keys: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for key in ("include", "exclude"):
        terms = rules.get(key) or []
        if isinstance(terms, str):
            terms = [terms]
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise RuleError(f"{key} must be a list of strings")
        cleaned: list[str] = []
        for t in terms:
            t = " ".join(t.split())
            if not t:
                continue
            compile_term(t)
            if t not in cleaned:
                cleaned.append(t)
        out[key] = cleaned
    regex = rules.get("regex") or None
    if regex is not None:
        if not isinstance(regex, str):
            raise RuleError("regex must be a string")
        try:
            re.compile(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise RuleError(f"invalid regex {regex!r}: {exc}") from exc
    out["regex"] = regex
    return out


@dataclass(frozen=True)
class TopicRules:
    """A topic's rules, compiled once."""

    slug: str
    include: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    exclude: list[tuple[str, re.Pattern[str]]] = field(default_factory=list)
    regex: re.Pattern[str] | None = None

    @classmethod
    def compile(cls, slug: str, rules: dict[str, Any]) -> TopicRules:
        rules = validate_rules(rules or {})
        return cls(
            slug=slug,
            include=[(t, compile_term(t)) for t in rules["include"]],
            exclude=[(t, compile_term(t)) for t in rules["exclude"]],
            regex=re.compile(rules["regex"]) if rules["regex"] else None,
        )

    def explain(self, fields: list[tuple[str, str]]) -> str | None:
        """The reason this topic applies to the text fields, or None."""
        for _term, pattern in self.exclude:
            if any(pattern.search(text) for _, text in fields):
                return None
        for term, pattern in self.include:
            for name, text in fields:
                if pattern.search(text):
                    return f'keyword "{term}" in {name}'
        if self.regex is not None:
            for name, text in fields:
                m = self.regex.search(text)
                if m:
                    return f'regex /{self.regex.pattern}/ matched "{m.group(0)[:60]}" in {name}'
        return None


def event_fields(title: dict[str, str], summary: dict[str, str]) -> list[tuple[str, str]]:
    """The texts rules look at, labelled for the "why" ("title.zh", "summary.en")."""
    fields = [(f"title.{lang}", _norm(text)) for lang, text in title.items() if text]
    fields += [(f"summary.{lang}", _norm(text)) for lang, text in summary.items() if text]
    return fields


def match_topics(
    compiled: list[TopicRules], title: dict[str, str], summary: dict[str, str]
) -> dict[str, str]:
    """Every topic whose rules the event meets, mapped to why."""
    fields = event_fields(title, summary)
    found: dict[str, str] = {}
    for topic in compiled:
        reason = topic.explain(fields)
        if reason:
            found[topic.slug] = reason
    return found
