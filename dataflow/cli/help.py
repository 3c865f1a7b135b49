"""Readable `--help`: `PIPELINE`, `TOPIC=FILE`, `N` where typer would write `{pipeline}`, `<str>`,
`<list[str]>` or `<int range>`.

typer shows an argument as `{name}` in the usage line and adds its Python type to every
parameter. The commands of `dataflow` are built with :class:`ReadableGroup`, which gives each
argument the usual Unix spelling (`PIPELINE`, `[KEY]`, `NAMES...`) and shows an option's metavar
alone (its name in capitals when it has none). This leans on typer's parameter classes, which is
why pyproject.toml pins typer below its next minor release; `tests/test_cli_help.py` would catch
a change.

    >>> import typer.main
    >>> from dataflow.cli import app
    >>> run = typer.main.get_command(app).commands["run"]
    >>> [p.get_usage_pieces(None) for p in run.params if p.name == "pipeline"]
    [['PIPELINE']]
"""
from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption


class ReadableArgument(TyperArgument):
    """An argument shown as `NAME` (required), `[NAME]` (optional), `NAME...` (several)."""

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name.upper()  # type: ignore[union-attr]
        name = name if self.required else f"[{name}]"
        return name + "..." if self.nargs != 1 else name

    def _rich_display_name(self) -> str:
        return self.metavar or self.name.upper()  # type: ignore[union-attr]

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name says it; the help text says what it holds


class ReadableOption(TyperOption):
    """An option shown with its metavar only, or its name in capitals: `--data-dir DIR`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or self.name.upper()  # type: ignore[union-attr]


class ReadableGroup(TyperGroup):
    """A command group whose commands, and theirs, show readable parameters."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        readable(self)


def readable(command: Any) -> None:
    """Give every parameter of `command` and of its subcommands the readable spelling."""
    for param in getattr(command, "params", []):
        if type(param) is TyperArgument:
            param.__class__ = ReadableArgument
        elif type(param) is TyperOption:
            param.__class__ = ReadableOption
    for sub in getattr(command, "commands", {}).values():
        readable(sub)
