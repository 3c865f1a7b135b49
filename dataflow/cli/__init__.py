"""The `dataflow` command line: plan, check, fmt, run and the topic tools.

    dataflow plan examples/wordcount.py --format json
    dataflow check examples/fraud.flow
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from ..ir.diagnostics import Diagnostic, PipelineError
from . import logs
from .help import ReadableGroup
from .trust import allow_module_option, echo_notes, import_policy, no_import_option, refuse_to_run, run_policy

app = typer.Typer(cls=ReadableGroup, no_args_is_help=True, rich_markup_mode=None,
                  help="dataflow: a declarative stream processor. Describe a pipeline once; plan it; run it.")


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"dataflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """dataflow: a declarative stream processor. Describe a pipeline once; plan it; run it."""

#: DATAFLOW_ variables that are options of the command line, not pipeline settings
# DATAFLOW_BROKER is the --broker flag's variable (it refuses credentials as the flag does); the log
# variables configure logging, not the pipeline.
NOT_SETTINGS = frozenset({"DATAFLOW_BROKER", "DATAFLOW_LOG_LEVEL", "DATAFLOW_LOG_FORMAT"})
PIPELINE_HELP = "A .flow file, a Python file defining a Flow, or module:attribute."
SET_HELP = "Override a pipeline setting, e.g. --set partitions=8 (repeatable)."


class UserError(Exception):
    """A mistake in what the user gave us: printed without a traceback, exit 1."""


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    """Setting overrides, parsed: `DATAFLOW_<SETTING>` variables, then `--set` pairs, which win.

    Each value is checked here, where it is known whether it came from a flag or a variable, so
    that a mistake names the flag or the variable rather than a line of the pipeline.
    """
    from ..ir.settings import BadEnvironment, SettingError, UnknownSetting, from_environment, parse_setting
    from ..ir.urls import redact_urls_in

    try:
        out = {name: s.value for name, s in from_environment(os.environ, ignore=NOT_SETTINGS).items()}
    except BadEnvironment as e:
        raise UserError(f"error: {e}") from None
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        name = key.strip().replace("-", "_")
        try:
            out[name] = parse_setting(name, value.strip())
        except UnknownSetting as e:
            raise UserError(f"error: --set {pair}: {e}") from None
        except SettingError as e:
            raise UserError(f"error: --set {redact_urls_in(pair)}: {e.reason}") from None
    return out


def read_source(path: str | Path) -> str:
    """A source file's text for showing lines and carets: bytes that are not UTF-8 show as U+FFFD.

    The loader has already reported such a file with its location; showing the line must not fail.
    """
    return Path(path).read_bytes().decode("utf-8", "replace")


def render_diagnostics(diagnostics: list[Diagnostic]) -> str:
    """Diagnostics with the source line and a caret, read from the files they point at."""
    sources: dict[str, str] = {}
    for d in diagnostics:
        if d.loc.file not in sources:
            try:
                sources[d.loc.file] = read_source(d.loc.file)
            except OSError:
                sources[d.loc.file] = ""
    try:
        from ..lang import format_diagnostics
    except ImportError:  # the language package is absent only in a partial install
        return "\n".join(str(d) for d in diagnostics)
    return format_diagnostics(diagnostics, sources)


def load(pipeline: str, overrides: dict[str, Any], imports: Any = None):  # type: ignore[no-untyped-def]
    """Load a pipeline, turning every user mistake into a UserError or PipelineError.

    ``imports`` (an ``ImportPolicy``; default: the allow-list in $DATAFLOW_ALLOWED_MODULES) says
    what checking it may import."""
    from ..ir.callables import ImportPolicy
    from ..loader import PipelineNotFound, load_pipeline

    try:
        return load_pipeline(pipeline, overrides, imports or ImportPolicy.from_environment())
    except (PipelineError, PipelineNotFound):
        raise
    except Exception as e:  # noqa: BLE001 - a .flow FlowError or a mistake in the user's Python file
        diags = getattr(e, "diagnostics", None)
        if diags is not None:
            text = getattr(e, "rendered", None)
            raise PipelineError(list(diags)) if text is None else UserError(text) from None
        text = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
        raise UserError(f"{pipeline}: error: {text}") from None


def _plan(pipeline: str, sets: list[str] | None, imports: Any = None,  # type: ignore[no-untyped-def]
          runs: bool = True):
    """The plan of a pipeline, checked as ``imports`` (default: from the environment) permits;
    a command that ``runs`` the pipeline's code refuses a policy that imports nothing."""
    from ..ir.callables import ImportPolicy
    from ..planner import not_imported, plan

    imports = imports or ImportPolicy.from_environment()
    if runs and (refusal := refuse_to_run(imports)):
        raise UserError(refusal)
    flow = load(pipeline, _overrides(sets), imports)
    echo_notes(not_imported(flow.topology(), imports))
    return plan(flow.topology(), imports)


def _fail(message: str) -> None:
    typer.echo(message.rstrip("\n"), err=True)
    raise typer.Exit(1)


def _guard(fn):  # type: ignore[no-untyped-def]
    """Run a command body; user mistakes print cleanly and exit 1, never a traceback."""
    from ..loader import PipelineNotFound
    from ..state.faults import StorageError

    try:
        return fn()
    except StorageError as e:  # disk full, read-only, in use, corrupt: said in one line by the storage layer
        _fail(f"error: {e}")
    except PipelineError as e:
        count = len(e.diagnostics)
        _fail(render_diagnostics(e.diagnostics) + f"\n{count} error{'s' if count != 1 else ''}")
    except (UserError, PipelineNotFound) as e:
        _fail(str(e))
    except KeyError as e:  # unknown setting names from --set
        _fail(f"error: {e.args[0]}")
    except ValueError as e:
        _fail(f"error: {e}")


@app.command("plan")
def plan_command(
    pipeline: str = typer.Argument(..., help=PIPELINE_HELP),
    format: str = typer.Option("text", "--format", "-f", help="text, json, dot or svg."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to this file instead of stdout."),
    no_locations: bool = typer.Option(False, "--no-locations", help="Leave source locations out."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    no_import: bool = no_import_option(),
    allow: Optional[list[str]] = allow_module_option(),
) -> None:
    """Compile a pipeline and print its execution plan."""
    from ..planner import render

    format = format.lower()  # choices are case-insensitive: --format JSON is --format json
    if format not in render.FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(render.FORMATS)}", param_hint="--format")

    def body() -> str:
        plan = _plan(pipeline, sets, import_policy(no_import, allow), runs=False)
        if format == "svg":
            try:
                return render.to_svg(plan)
            except render.SvgUnavailable as e:
                raise UserError(f"error: {e}") from None
        if format in ("text", "json"):
            return render.FORMATS[format](plan, locations=not no_locations)  # type: ignore[operator]
        return render.FORMATS[format](plan)  # type: ignore[operator]

    text = _guard(body)
    if output is not None:
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(text)


@app.command("check")
def check_command(
    pipelines: list[str] = typer.Argument(..., metavar="PIPELINE", help=PIPELINE_HELP + " Several may be given."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    no_import: bool = no_import_option(),
    allow: Optional[list[str]] = allow_module_option(),
) -> None:
    """Validate pipelines and print their diagnostics (exit 1 if any has an error)."""
    from ..planner import check, not_imported

    imports = import_policy(no_import, allow)
    overrides = _guard(lambda: _overrides(sets))
    failed = 0
    for pipeline in pipelines:
        def body(pipeline: str = pipeline) -> None:
            flow = load(pipeline, overrides, imports)
            echo_notes(not_imported(flow.topology(), imports))
            diagnostics = check(flow.topology(), imports)
            if diagnostics:
                raise PipelineError(diagnostics)

        try:
            _guard(body)
        except typer.Exit:
            failed += 1  # its diagnostics are printed; go on with the next file
            continue
        typer.echo(f"{pipeline}: ok")
    if failed:
        raise typer.Exit(1)


@app.command("fmt")
def fmt_command(
    file: Path = typer.Argument(..., help="A .flow file."),
    write: bool = typer.Option(False, "--write", "-w", help="Rewrite the file in place."),
    check_only: bool = typer.Option(False, "--check", help="Exit 1 and print a diff if the file is not formatted."),
) -> None:
    """Print a .flow file in its canonical layout."""
    from ..lang import format_source

    original = ""

    def body() -> str:
        nonlocal original
        try:
            original = file.read_bytes().decode("utf-8")
        except OSError as e:
            raise UserError(f"{file}: error: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{file}: error: not UTF-8 text (byte {e.start}); .flow files are UTF-8") from None
        try:
            return format_source(original, str(file))
        except Exception as e:  # noqa: BLE001 - a FlowError with diagnostics
            rendered = getattr(e, "rendered", None)
            if rendered:
                raise UserError(rendered) from None
            diags = getattr(e, "diagnostics", None)
            if diags is not None:
                raise PipelineError(list(diags)) from None
            raise

    formatted = _guard(body)
    if check_only:
        if formatted != original:
            import difflib

            diff = difflib.unified_diff(original.splitlines(keepends=True), formatted.splitlines(keepends=True),
                                        f"{file} (as written)", f"{file} (formatted)")
            sys.stdout.write("".join(line if line.endswith("\n") else line + "\n" for line in diff))
            _fail(f"{file}: not formatted")
        return
    if write:
        if formatted != original:
            file.write_text(formatted)
        return
    sys.stdout.write(formatted)


#: what the summary of a run shows, as fields of its JSON line
SUMMARY_FIELDS = ("messages_received", "messages_received_by_topic", "messages_sent_by_topic", "dead_letters",
                  "dead_letters_by_stage", "late_events", "late_events_by_step", "restored_records", "commits")


def _pairs(values: list[str] | None, option: str) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        topic, sep, path = value.partition("=")
        if not sep or not topic or not path:
            raise typer.BadParameter(f"expected TOPIC=FILE, got {value!r}", param_hint=option)
        out.append((topic, path))
    return out


@app.command("run")
def run_command(
    pipeline: str = typer.Argument(..., help=PIPELINE_HELP),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", envvar="DATAFLOW_BROKER",
                                         help="memory://, local://DIR or kafka://HOST:PORT; default: "
                                         "$DATAFLOW_BROKER, else the pipeline's, else the embedded local log in "
                                         "--data-dir."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help="Where the local log and state live; "
                                           "default ./.dataflow/PIPELINE."),
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", metavar="TOPIC=FILE", help="TOPIC=FILE.jsonl to feed a source "
                                               "topic (- for stdin); repeatable."),
    outputs: Optional[list[str]] = typer.Option(None, "--output", "-o", metavar="TOPIC=FILE", help="TOPIC=FILE.jsonl|- to write what a "
                                                "topic receives; repeatable."),
    keyed: bool = typer.Option(False, "--keyed", help='Input lines are {"key": ..., "value": ...} objects.'),
    reread: bool = typer.Option(False, "--reread", help="Produce each --input file from its start again, even if "
                                "an earlier run read it (on the local log a rerun goes on where the last stopped)."),
    until_idle: bool = typer.Option(False, "--until-idle", help="Stop once every input is consumed and every "
                                    "agent is idle; the input is bounded: its end closes every window and "
                                    "emits unmatched join rows."),
    unbounded: bool = typer.Option(False, "--unbounded", help="With --until-idle: stop when idle but leave "
                                   "windows and join rows open, for a later run over the same state to go on."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line, no summary, and only errors "
                               "logged (one line each, with no traceback)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE", help=SET_HELP),
    log_level: Optional[str] = logs.level_option(quiet=True),
    log_format: str = logs.format_option(),
    allow: Optional[list[str]] = allow_module_option(),
) -> None:
    """Run a pipeline: on the embedded local log by default, or on --broker."""
    import asyncio
    import time

    from ..runtime.engine import UnsupportedNode
    from ..runtime.process import tune_for_throughput
    from ..runtime.runner import InputError, RunOptions, data_dir_for, run_plan, summary
    from ..runtime.state import RestoreError
    from ..state.faults import classify, storage_error
    from ..transport.base import TransportError

    options = RunOptions(broker=broker, data_dir=data_dir, inputs=_pairs(inputs, "--input"),
                         outputs=_pairs(outputs, "--output"), keyed=keyed, reread=reread, until_idle=until_idle,
                         bounded=until_idle and not unbounded,
                         progress=not quiet and log_format == "text" and sys.stderr.isatty())
    if unbounded and not until_idle:
        _fail("error: --unbounded goes with --until-idle; hint: a run without --until-idle is unbounded already")
    for _, path in options.inputs:
        if path != "-" and not Path(path).is_file():
            _fail(f"error: input file {path} does not exist")
    if data_dir is not None and Path(data_dir).exists() and not Path(data_dir).is_dir():
        _fail(f"error: --data-dir {data_dir} is a file; give a directory (it is created if missing)")

    def body():  # type: ignore[no-untyped-def]
        plan = _plan(pipeline, sets, run_policy(allow))
        tune_for_throughput()
        started = time.monotonic()
        try:
            monitor = asyncio.run(run_plan(plan, options))
        except (InputError, UnsupportedNode, TransportError, RestoreError, ImportError) as e:
            raise UserError(f"error: {e}") from None
        except OSError as e:  # the data directory or an output file: unwritable, full, a file, missing
            if classify(e) != "io":
                target = e.filename or data_dir_for(plan, options)
                what = "directory" if Path(target).is_dir() else "file"
                raise UserError(f"error: {storage_error(e, what, target)}") from None
            where = f" {e.filename}" if e.filename else ""
            raise UserError(f"error:{where}: {e.strerror or e}") from None
        return monitor, time.monotonic() - started

    with logs.configured(log_level, log_format, quiet):
        monitor, seconds = _guard(body)
    if not quiet:
        text = summary(monitor, seconds)
        if log_format == "json":  # stderr holds JSON lines only: the summary is one, its counts as fields
            counts = {k: v for k, v in monitor.as_dict().items() if k in SUMMARY_FIELDS}
            text = logs.json_line("dataflow.run", text.splitlines()[0], {"seconds": round(seconds, 3), **counts})
        typer.echo(text, err=True)
    if monitor.stopped_by == signal.SIGINT:
        raise typer.Exit(130)  # as shells report a command stopped by Ctrl-C


# Commands in the package's other modules register themselves on `app` when imported.
from . import commands_registry  # noqa: E402,F401


def main() -> None:
    # One name however it is started (`dataflow`, `python -m dataflow`): usage lines and the
    # shell-completion protocol (`_DATAFLOW_COMPLETE`) both derive from it.
    app(prog_name="dataflow")


if __name__ == "__main__":
    main()
