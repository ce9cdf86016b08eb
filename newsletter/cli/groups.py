"""Command groups: whole one-line summaries, and a root that imports a command's module
only when that command runs (so `newsletter --help` starts in a blink).

This module imports typer and nothing of the domain: it is loaded for every invocation.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

import typer
from typer import _click as click  # typer's own copy of click, whose classes it builds
from typer.core import TyperGroup
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def summary(cmd: click.Command) -> str:
    """A command's line in its group's list: `short_help`, else the first sentence of its
    help, whole (click would cut it at 45 characters and add "...")."""
    if cmd.short_help:
        return inspect.cleandoc(cmd.short_help)
    paragraph = inspect.cleandoc(cmd.help or "").split("\n\n")[0]
    paragraph = " ".join(line for line in paragraph.splitlines() if line != "\b")
    return _SENTENCE_END.split(paragraph, maxsplit=1)[0].strip()


class CommandGroup(TyperGroup):
    """Typer's group, listing each command with its whole summary (wrapped, not cut)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, self.summary_of(name, cmd)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def summary_of(self, name: str, cmd: click.Command) -> str:
        return summary(cmd)


def command_group(help: str, **kwargs: Any) -> typer.Typer:
    """A sub-command group (`newsletter topics ...`): shown in full when no command is given."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(cls=CommandGroup, help=help, **kwargs)


@dataclass(frozen=True)
class Lazy:
    """Where a top-level command lives: `module:attribute`, a `typer.Typer` group or a
    command function, and the summary the root help shows without importing it."""

    target: str
    summary: str


class LazyGroup(CommandGroup):
    """The root command. Its commands are listed from `lazy` and imported on use: a
    command's module (and the database, web and template libraries behind it) loads
    only when that command runs or shows its own help."""

    lazy: dict[str, Lazy] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.commands, *(n for n in self.lazy if n not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.commands[cmd_name] = load(self.lazy[cmd_name].target, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name].summary) for name in self.lazy]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def load(target: str, name: str) -> click.Command:
    """The click command for `module:attribute` (a Typer group or a command function)."""
    module_name, attribute = target.split(":")
    obj = getattr(importlib.import_module(module_name), attribute)
    if isinstance(obj, typer.Typer):
        return get_group_from_info(
            TyperInfo(obj),
            pretty_exceptions_short=True,
            suggest_commands=True,
            rich_markup_mode=None,
        )
    return get_command_from_info(
        CommandInfo(name=name, callback=obj), pretty_exceptions_short=True, rich_markup_mode=None
    )
