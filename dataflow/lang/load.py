"""`.flow` text to a checked `Flow`: parse, transform (builder calls), then the planner's checks.

>>> flow = parse_flow("pipeline demo\\ntopic lines: str\\nlines | map upper(_value) | to stdout")
>>> flow.name, len(flow.topology())
('demo', 3)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lark.exceptions import VisitError

from ..builder import Flow
from ..ir.callables import TRUSTED, ImportPolicy
from ..ir.diagnostics import Diagnostic
from ..ir.location import SourceLocation
from .diagnostics import FlowError, source_lines
from .parser import parse
from .transform import FlowTransformer


def parse_flow(text: str, filename: str = "<string>", overrides: dict[str, Any] | None = None,
               imports: ImportPolicy = TRUSTED) -> Flow:
    """The pipeline described by `text`; raises FlowError listing every problem found.

    `overrides` replace header settings, as `dataflow plan --set partitions=8` does (text as typed,
    or Python values; see `dataflow.ir.settings.parse_setting`).
    Semantic problems (unknown fields, type errors, a window without aggregate) come
    from `dataflow.planner.check` and point at the `.flow` source too. That check imports
    the Python code the file names (udfs, reducers, agents), as `imports` permits.
    """
    try:
        tree = parse(text, filename)
        transformer = FlowTransformer(filename, overrides)
        try:
            flow = transformer.transform(tree)
        except VisitError as e:  # a bug in a rule method, not a user mistake: show the real error
            raise e.orig_exc from e
        if transformer.diagnostics:
            raise FlowError(transformer.diagnostics, text, filename)
        problems = [d for d in _check(flow, imports) if d.severity == "error"]
    except RecursionError:
        raise FlowError([Diagnostic("this file nests too deeply to compile", SourceLocation(filename, 1, 1),
                                    "split long expressions into several steps")], text, filename) from None
    if problems:
        raise FlowError(problems, text, filename)
    return flow


def load_flow(path: str | Path, overrides: dict[str, Any] | None = None, imports: ImportPolicy = TRUSTED) -> Flow:
    """The pipeline in the `.flow` file at `path` (locations name the path as given); `imports`
    as for :func:`parse_flow`."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")  # tolerate the byte-order mark some editors write
    except UnicodeDecodeError as e:
        before = source_lines(data[:e.start].decode("utf-8-sig"))  # the bytes before e.start decode
        where = SourceLocation(str(path), len(before), len(before[-1]) + 1)
        shown = data.decode("utf-8", errors="replace")
        raise FlowError([Diagnostic("this file is not UTF-8 text", where, "save it as UTF-8")], shown,
                        str(path)) from None
    return parse_flow(text, str(path), overrides, imports)


def _check(flow: Flow, imports: ImportPolicy) -> list[Diagnostic]:
    try:
        from ..planner import check
    except ImportError:  # the planner is optional for the language's own checks
        return []
    return check(flow.topology(), imports)


__all__ = ["parse_flow", "load_flow"]
