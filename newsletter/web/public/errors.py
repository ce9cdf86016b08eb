"""Errors the public pages show, in the reader's language: a catalogue key, not a sentence."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import ValidationError

from newsletter.core.errors import field_errors
from newsletter.rendering.labels import page_labels


class PageError(HTTPException):
    """An HTTP error whose message comes from the page catalogue (`err.*`).

    `lang` is the reader's language when the page knows it (a subscriber's link);
    otherwise the app's handler uses the page's (`?lang=`, then Accept-Language).
    """

    def __init__(self, status: int, key: str, *, lang: str | None = None, **params: Any):
        super().__init__(status, detail=page_labels("en")[key].format(**params))
        self.key, self.lang, self.params = key, lang, params

    def message(self, lang: str) -> str:
        return page_labels(lang)[self.key].format(**self.params)


def form_errors(exc: ValidationError, lang: str) -> list[str]:
    """A form's validation problems, one line each: pydantic's own words in English, the
    field's label and a catalogue sentence in Chinese."""
    if lang != "zh":
        return field_errors(exc)
    t = page_labels(lang)
    lines = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        lines.append(
            f"{t.get(field, field)}：{t.get(f'invalid.{field}', t['invalid.other'])}"
            if field
            else t["invalid.other"]
        )
    return list(dict.fromkeys(lines))
