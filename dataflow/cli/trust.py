"""The options that say how far a pipeline is trusted: `--no-import` (check or plan an
untrusted `.flow` file without importing any of the Python code it names) and
`--allow-module` (import only these modules). See "Trust" in docs/language.md.

    dataflow check --no-import untrusted.flow
    dataflow run shop.flow --allow-module mypkg --allow-module storefront
"""
from __future__ import annotations

from typing import Any, Optional

import typer

from ..ir.callables import ALLOWED_MODULES_ENV, NO_IMPORT_ENV, ImportPolicy, parse_allowed


def no_import_option() -> Any:
    return typer.Option(False, "--no-import", envvar=NO_IMPORT_ENV,
                        help="Import none of the Python code the pipeline names (udfs, reducers, sinks, agents), "
                        "for a file you do not trust; say what that leaves unchecked. .flow files only.")


def allow_module_option() -> Any:
    return typer.Option(None, "--allow-module", envvar=ALLOWED_MODULES_ENV, metavar="MODULE",
                        help="Import only these modules for udfs, reducers, sinks and agents: a dotted prefix "
                        "(mypkg allows mypkg.scoring) or a glob; repeatable, or comma-separated. Default: any "
                        "module.")


def import_policy(no_import: bool, allow: Optional[list[str]]) -> ImportPolicy:
    """The policy the options ask for (typer has already read the environment into them)."""
    return ImportPolicy(imports=not no_import, allowed=parse_allowed(allow))


def run_policy(allow: Optional[list[str]]) -> ImportPolicy:
    """The policy of a command that runs the pipeline: `--allow-module`, and $DATAFLOW_NO_IMPORT,
    which such a command refuses (see :func:`refuse_to_run`) rather than ignores."""
    return ImportPolicy(imports=ImportPolicy.from_environment().imports, allowed=parse_allowed(allow))


def refuse_to_run(imports: ImportPolicy) -> str | None:
    """Why a command that runs the pipeline's code may not, or None."""
    if imports.imports:
        return None
    return (f"error: {NO_IMPORT_ENV} is set, and this command runs the Python code the pipeline names; "
            f"hint: unset it for a pipeline you trust, or use dataflow check/plan to look at one you do not")


def echo_notes(notes: list[Any]) -> None:
    """Notes on what was not checked, on stderr, one line each."""
    for note in notes:
        typer.echo(str(note), err=True)
