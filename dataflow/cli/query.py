"""`dataflow query PIPELINE TABLE [KEY]`: print a table's current rows as JSON lines.

    dataflow query examples/wordcount.flow counts
    dataflow query examples/wordcount.flow counts the
"""
from __future__ import annotations

import sys
from typing import Optional

import orjson
import typer

from . import PIPELINE_HELP, SET_HELP, UserError, _guard, _plan, app, logs


def parse_key(text: str) -> object:
    """A key as typed: JSON if it parses (`42`, `"a b"`, `[1, 2]`), else the text itself."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


@app.command("query")
def query_command(
    pipeline: str = typer.Argument(..., help=PIPELINE_HELP),
    table: str = typer.Argument(..., help="The table's name, as `dataflow plan` lists it under Stores."),
    key: Optional[str] = typer.Argument(None, help="Only this key (JSON, or plain text for a string)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help="The run's data directory; "
                                           "default ./.dataflow/PIPELINE."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", envvar="DATAFLOW_BROKER",
                                         help="Where the changelogs are; default: $DATAFLOW_BROKER, else the "
                                         "embedded local log in --data-dir."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Print a table's rows from a stopped run's data directory, one JSON object per line."""
    import asyncio
    from pathlib import Path

    from ..runtime.query import UnknownTable, read_table
    from ..state.stores import StoreLockedError
    from ..transport.base import TransportError

    def body() -> list[tuple[object, object]]:
        plan = _plan(pipeline, sets)
        directory = data_dir or plan.settings.data_dir or str(Path(".dataflow") / plan.name)
        if broker is None and not Path(directory, "log").is_dir():
            raise UserError(f"error: no data in {directory}; hint: run the pipeline first, or pass --data-dir")
        try:
            return asyncio.run(read_table(plan, table, directory, broker, parse_key(key) if key is not None else None,
                                          with_key=key is not None))
        except (UnknownTable, StoreLockedError, TransportError) as e:
            raise UserError(f"error: {e}") from None

    with logs.configured(log_level, log_format):
        rows = _guard(body)
    if key is not None and not rows:
        typer.echo(f"error: table {table} has no key {key}", err=True)
        raise typer.Exit(1)
    out = sys.stdout
    for k, value in rows:
        if isinstance(k, tuple):  # windowed: the row carries its window bounds
            k = k[0]
        out.write(orjson.dumps({"key": k, "value": value}).decode() + "\n")
