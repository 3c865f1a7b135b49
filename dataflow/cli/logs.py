"""Logging for the commands that run things: `--log-level`, `--log-format` and what `--quiet` means.

    dataflow run pipe.flow --log-level info --log-format json
    DATAFLOW_LOG_LEVEL=debug dataflow tail orders

Text lines read like the CLI's own errors (`error: agent quote actor 0 crashed: ...`); JSON lines
are one object each, with `time`, `level`, `logger`, `message` and the record's extra fields.
A traceback (an agent that crashed, a timer that failed) is shown at the `debug` level only: at
the other levels the line names the exception, which is what a user acts on.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Optional

import orjson
import typer

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("text", "json")
DEFAULT_LEVEL = "warning"
QUIET_LEVEL = "error"  # --quiet: warnings go too, errors stay
TRACEBACK_HINT = " (--log-level debug shows the traceback)"
#: attributes every LogRecord has; the others were given with `extra=` and go into JSON lines
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _choice(choices: tuple[str, ...], variable: str):  # type: ignore[no-untyped-def]
    def check(ctx: typer.Context, param: Any, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        if value.lower() not in choices:
            source = ctx.get_parameter_source(param.name)
            given = f"{variable}={value}" if source is not None and source.name == "ENVIRONMENT" else repr(value)
            raise typer.BadParameter(f"{given}: choose one of {', '.join(choices)}")
        return value.lower()

    return check


def _completion(choices: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete.lower())]

    return complete


def level_option(quiet: bool = False) -> Any:
    """`--log-level LEVEL` (or `$DATAFLOW_LOG_LEVEL`), for every command that logs; `quiet`: the
    command has `--quiet`, which lowers the default."""
    default = "warning (error with --quiet)" if quiet else "warning"
    return typer.Option(None, "--log-level", metavar="LEVEL", envvar="DATAFLOW_LOG_LEVEL", show_envvar=False,
                        callback=_choice(tuple(LEVELS), "DATAFLOW_LOG_LEVEL"), autocompletion=_completion(tuple(LEVELS)),
                        help=f"debug, info, warning or error (any case); default: $DATAFLOW_LOG_LEVEL, else "
                        f"{default}. Tracebacks show at debug only.")


def format_option() -> Any:
    """`--log-format text|json` (or `$DATAFLOW_LOG_FORMAT`)."""
    return typer.Option("text", "--log-format", metavar="FORMAT", envvar="DATAFLOW_LOG_FORMAT", show_envvar=False,
                        show_default=False,
                        callback=_choice(FORMATS, "DATAFLOW_LOG_FORMAT"), autocompletion=_completion(FORMATS),
                        help="text, or json: one JSON object per line (time, level, logger, message and extra "
                        "fields); default: $DATAFLOW_LOG_FORMAT, else text.")


class _TextFormatter(logging.Formatter):
    """`level: message`; the traceback only when `tracebacks` (the debug level)."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            if self.tracebacks:
                return line + "\n" + self.formatException(record.exc_info).rstrip("\n")
            return line + TRACEBACK_HINT
        return line


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: `time` (UTC, ISO-8601), `level`, `logger`, `message`, the extras;
    with an exception, `exception` (its type and text) and at the debug level `traceback`."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, Any] = {"time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                               "level": record.levelname.lower(), "logger": record.name,
                               "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["exception"] = f"{type(exc).__name__}: {exc}"
            if self.tracebacks:
                out["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def json_line(logger: str, message: str, fields: dict[str, Any]) -> str:
    """A JSON log line at the info level, for output that is not a log record but must not
    break a stream of JSON lines (the summary of `dataflow run --log-format json`).

    >>> json_line("dataflow.run", "done", {"commits": 1}).split('"level"')[1]
    ':"info","logger":"dataflow.run","message":"done","commits":1}'
    """
    record = logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None)
    record.__dict__.update(fields)
    return _JsonFormatter(False).format(record)


@contextmanager
def configured(level: Optional[str], format: str = "text", quiet: bool = False) -> Iterator[None]:
    """Send log records at `level` and above to stderr in `format` while a command runs, then
    put the root logger back as it was (commands also run in-process, under tests).

    `level` None: `error` with `quiet`, else `warning`.
    """
    name = level or (QUIET_LEVEL if quiet else DEFAULT_LEVEL)
    tracebacks = name == "debug"
    handler = _Stderr()
    handler.setFormatter(_JsonFormatter(tracebacks) if format == "json" else _TextFormatter(tracebacks))
    root = logging.getLogger()
    before = root.level
    root.setLevel(LEVELS[name])
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
