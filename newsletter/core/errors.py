"""Turning validation failures into the one-line reasons users see (CLI, reports, pages)."""

from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> list[str]:
    """ "field: message" for each problem, without pydantic's "Value error, " prefix."""
    return [
        f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    ]


def reason(exc: Exception) -> str:
    """One line saying what is wrong, for any error a user's input can cause."""
    if isinstance(exc, ValidationError):
        return "; ".join(field_errors(exc))
    return str(exc)
