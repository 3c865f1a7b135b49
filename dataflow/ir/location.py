"""Where a node came from: a `.flow` span or the builder call site."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class SourceLocation:
    """A point in a source file, 1-based.

    >>> str(SourceLocation("fraud.flow", 3, 7))
    'fraud.flow:3:7'
    """

    file: str
    line: int
    column: int = 1
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        # Builder call sites have no meaningful column: they print as file:line.
        return f"{self.file}:{self.line}:{self.column}" if self.column else f"{self.file}:{self.line}"

    def to_json(self) -> str:
        return str(self)


UNKNOWN = SourceLocation("<unknown>", 0, 0)

_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def caller_location() -> SourceLocation:
    """The first stack frame outside the dataflow package: the user's builder call."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR) and not filename.startswith("<frozen"):
            return SourceLocation(_display_path(filename), frame.f_lineno, 0)
        frame = frame.f_back
    return UNKNOWN


def _display_path(filename: str) -> str:
    """Relative to the working directory when possible, so plans do not embed home paths."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return filename
