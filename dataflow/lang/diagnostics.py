"""Errors of `.flow` files: `FlowError`, source spans, and the caret rendering.

>>> from dataflow.ir.diagnostics import Diagnostic
>>> from dataflow.ir.location import SourceLocation
>>> d = Diagnostic("unknown field 'amout'", SourceLocation("f.flow", 2, 8, 2, 13), "did you mean 'amount'?")
>>> print(format_diagnostics([d], {"f.flow": "pipeline p\\nfilter amout > 1"}))
f.flow:2:8: error: unknown field 'amout'; did you mean 'amount'?
filter amout > 1
       ^~~~~
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from ..ir.diagnostics import Diagnostic, PipelineError
from ..ir.location import SourceLocation
from ..ir.urls import redact_urls_in


class FlowError(PipelineError):
    """A `.flow` file that cannot become a pipeline: every diagnostic found, and the source text.

    `str(error)` (and `error.rendered`) is the full report with source lines and carets.
    It is a `PipelineError`, so code that handles builder pipelines handles it too.
    """

    def __init__(self, diagnostics: list[Diagnostic], source: str, filename: str):
        super().__init__(diagnostics)
        self.source = source
        self.filename = filename
        self.sources = {filename: source}
        self.rendered = format_diagnostics(self.diagnostics, self.sources)

    def __str__(self) -> str:
        return self.rendered


class LangError(Exception):
    """Raised inside the frontend for one user mistake; collected as a diagnostic, never shown raw."""

    def __init__(self, message: str, loc: SourceLocation, hint: str = ""):
        super().__init__(message)
        self.diagnostic = Diagnostic(message, loc, hint)


class Silent(Exception):
    """A step that cannot be built because something it uses already failed (already reported)."""


def span(file: str, node: Any) -> SourceLocation:
    """The location of a lark token or tree (via its `meta`), with its end when known."""
    meta = getattr(node, "meta", node)
    try:
        return SourceLocation(file, meta.line, meta.column, meta.end_line, meta.end_column)
    except AttributeError:  # an empty rule has no position
        return SourceLocation(file, 1, 1)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def normalize_newlines(text: str) -> str:
    """`text` with every line break (CRLF, CR or LF) written as LF: the only one the parser counts.

    Lines and columns of the result are those of `text` read with any of the three endings.

    >>> normalize_newlines("a\\r\\nb\\rc\\n")
    'a\\nb\\nc\\n'
    """
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def source_lines(text: str) -> list[str]:
    """The lines of `text`, split at CRLF, CR or LF, as the parser numbers them.

    >>> source_lines("a\\r\\nb\\rc")
    ['a', 'b', 'c']
    """
    return _LINE_BREAK.split(text)


def did_you_mean(name: str, candidates: Iterable[str], fallback: str = "") -> str:
    """A hint naming the closest candidate, or `fallback`."""
    from ..ir.functions import suggest

    names = sorted(set(candidates))
    best = suggest(name, names)
    if best is None:  # `Strng` should still find `str`
        lowered = {n.lower(): n for n in names}
        found = suggest(name.lower(), lowered)
        best = lowered[found] if found else None
    return f"did you mean '{best}'?" if best else fallback


def format_diagnostics(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str]) -> str:
    """Each diagnostic as `file:line:col: error: message; hint`, its source line and a caret line.

    The caret sits under the column; `~` continues it across the span when the span is
    known and on one line. Diagnostics of files missing from `sources` get only the first line.
    """
    blocks = []
    for d in diagnostics:
        head = str(d)
        text = sources.get(d.loc.file)
        if text is None or d.loc.line < 1:
            blocks.append(head)
            continue
        lines = source_lines(text)
        if d.loc.line > len(lines):
            blocks.append(head)
            continue
        source_line = lines[d.loc.line - 1]
        column = max(1, min(d.loc.column, len(source_line) + 1))
        width = 1
        if d.loc.end_line == d.loc.line and d.loc.end_column and d.loc.end_column > column:
            width = min(d.loc.end_column, len(source_line) + 1) - column
        source_line, column, width = _excerpt(source_line, column, width)
        # Keep tabs so the caret lines up however the terminal expands them. A url's password
        # is never shown (the broker setting refuses one, and must not print it doing so).
        pad = "".join("\t" if ch == "\t" else " " for ch in redact_urls_in(source_line[:column - 1]))
        shown = redact_urls_in(source_line)
        width = min(width, max(1, len(shown) - len(pad)))
        blocks.append(f"{head}\n{shown}\n{pad}^{'~' * max(0, width - 1)}")
    return "\n".join(blocks)


#: the longest source line shown whole; a longer one is cut around the caret
SHOWN_WIDTH = 120


def _excerpt(line: str, column: int, width: int) -> tuple[str, int, int]:
    """The part of a long `line` around `column`, marked with '...', and the caret's column and
    width within it (a 100,000-digit number is not echoed whole).

    >>> shown, column, width = _excerpt("x" * 50 + "^" + "y" * 200, 51, 1)
    >>> len(shown), shown[:15], shown[column - 1], shown[-3:]
    (126, '...xxxxxxxxxx^y', '^', '...')
    """
    if len(line) <= SHOWN_WIDTH:
        return line, column, width
    start = max(0, min(column - 1 - 10, len(line) - SHOWN_WIDTH))
    end = start + SHOWN_WIDTH
    shown = ("..." if start else "") + line[start:end] + ("..." if end < len(line) else "")
    new_column = column - start + (3 if start else 0)
    return shown, new_column, max(1, min(width, end - (column - 1)))


__all__ = ["FlowError", "LangError", "Silent", "span", "did_you_mean", "format_diagnostics", "normalize_newlines",
           "source_lines"]
