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

from newsletter.core.text import clean_text, has_cjk, printable

_WORD = "A-Za-z0-9"

# Limits on a topic's rules, the same for the CLI, the API, the admin UI and stored
# defaults: every event is matched against every rule, so an unbounded list (100,000
# keywords) or regex makes each import, retag and live check crawl.
MAX_KEYWORDS = 500  # per list (include, exclude)
MAX_KEYWORD_LENGTH = 100  # characters
MAX_REGEX_LENGTH = 500  # characters


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


def check_terms(key: str, terms: list[str], *, limits: bool = True) -> list[str]:
    """The cleaned, de-duplicated keywords of one list, or RuleError if over a limit."""
    if limits and len(terms) > MAX_KEYWORDS:
        raise RuleError(f"{key} has {len(terms)} keywords; at most {MAX_KEYWORDS} are allowed")
    cleaned: dict[str, None] = {}
    for t in terms:
        t = clean_text(t)
        if not t or t in cleaned:
            continue
        if limits and len(t) > MAX_KEYWORD_LENGTH:
            raise RuleError(
                f"{key} keyword {printable(t[:30])!r}… is longer than "
                f"{MAX_KEYWORD_LENGTH} characters"
            )
        compile_term(t)
        cleaned[t] = None
    return list(cleaned)


def check_regex(regex: str, *, limits: bool = True) -> str:
    """The regex if it is within the limits and compiles, else RuleError saying why."""
    if limits and len(regex) > MAX_REGEX_LENGTH:
        raise RuleError(f"the regex is longer than {MAX_REGEX_LENGTH} characters")
    if limits and printable(regex) != regex:
        raise RuleError("the regex holds control characters; write them as escapes, e.g. \\x00")
    try:
        re.compile(regex)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RuleError(f"invalid regex {regex!r}: {exc}") from exc
    return regex


def validate_rules(rules: dict[str, Any], *, limits: bool = True) -> dict[str, Any]:
    """Return rules in canonical shape or raise RuleError saying what is wrong.

    `limits=False` only for rules already stored (saved before the limits existed):
    they keep working until an admin edits them.
    """
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
        out[key] = check_terms(key, terms, limits=limits)
    regex = rules.get("regex") or None
    if regex is not None:
        if not isinstance(regex, str):
            raise RuleError("regex must be a string")
        check_regex(regex, limits=limits)
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
        rules = validate_rules(rules or {}, limits=False)
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
