"""`dataflow repair`: check a data directory's local log and repair it, keeping every readable record.

    dataflow repair --data-dir .dataflow/fraud --check
    dataflow repair -p examples/fraud.flow

Table stores need no repair: a run rebuilds a corrupt one from its changelog.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import UserError, _guard, app
from .topics import DATA_DIR_HELP, _where


@app.command("repair")
def repair_command(
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE",
                                           help="Repair this pipeline's data directory."),
    check: bool = typer.Option(False, "--check", help="Only read every record and say whether the log is "
                               "corrupt (exit 1 if it is); change nothing."),
) -> None:
    """Repair a corrupt local log: keep the readable records, report the lost offsets (stop its runs first)."""
    from ..transport.base import TransportError
    from ..transport.local_repair import check_log, repair_log

    def body() -> list[str]:
        _, directory, _ = _where("local://", data_dir, pipeline)
        if not Path(directory, "log").is_dir():
            raise UserError(f"error: no local log in {directory}; hint: pass the --data-dir of a run")
        try:
            report = check_log(directory) if check else repair_log(directory)
        except TransportError as e:
            raise UserError(f"error: {e}") from None
        if check and report.corrupt:
            raise UserError(f"error: local log {report.path} is corrupt ({report.detail}); "
                            f"hint: stop every run using it, then `dataflow repair --data-dir {directory}`")
        return report.lines()

    typer.echo("\n".join(_guard(body)))
