"""Diagnostics: `file:line:col: error: what; hint`, collected rather than raised one by one."""
from __future__ import annotations

from dataclasses import dataclass

from .location import SourceLocation


@dataclass(frozen=True)
class Diagnostic:
    """One message about the user's pipeline.

    >>> str(Diagnostic("unknown field 'amout'", SourceLocation("f.flow", 3, 9), "did you mean 'amount'?"))
    "f.flow:3:9: error: unknown field 'amout'; did you mean 'amount'?"
    """

    message: str
    loc: SourceLocation
    hint: str = ""
    severity: str = "error"
    rule: str = ""

    def __str__(self) -> str:
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.loc}: {self.severity}: {self.message}{hint}"


class PipelineError(Exception):
    """Raised when a pipeline has errors; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.loc.file, d.loc.line, d.loc.column, d.message))
        super().__init__("\n".join(str(d) for d in self.diagnostics))
