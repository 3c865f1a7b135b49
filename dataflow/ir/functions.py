"""The built-in functions of the expression language: signature, type rule, implementation.

One table serves the type checker, the compiler and docs/language.md. Functions are
null-propagating (a null argument gives null) unless marked `null_safe`.

>>> BUILTINS["upper"].impl("abc")
'ABC'
"""
from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from .timestamps import parse_iso, to_epoch_ms
from .types import (ANY, BOOL, FLOAT, INT, NULL, STR, TIMESTAMP, ListType, OptionalType, Type,
                    is_assignable, is_numeric, strip_optional, unify)


@dataclass(frozen=True)
class Builtin:
    name: str
    params: tuple[str, ...]  # for messages and docs, e.g. ("text: str",)
    doc: str
    impl: Callable[..., Any]
    returns: Callable[[list[Type]], Type]
    arg_types: tuple[Type | None, ...] | None = None  # None: checked by `returns`
    min_args: int | None = None
    variadic: bool = False
    null_safe: bool = False
    category: str = "string"
    example: str = ""

    def check(self, call: Any, arg_types: list[Type]) -> Type:
        from .expr import ExprTypeError

        lo = self.min_args if self.min_args is not None else len(self.params)
        hi = None if self.variadic else len(self.params)
        n = len(arg_types)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise ExprTypeError(f"{self.name}() takes {want} argument{'s' if want.split()[-1] != '1' else ''}, got {n}",
                                call.loc, f"{self.name}({', '.join(self.params)})")
        if self.arg_types is not None:
            for i, (got, want_t) in enumerate(zip(arg_types, self.arg_types)):
                if want_t is None:
                    continue
                if not _fits(got, want_t):
                    raise ExprTypeError(
                        f"argument {i + 1} of {self.name}() must be {want_t}, got {got}",
                        getattr(call.args[i], "loc", None) or call.loc,
                        f"{self.name}({', '.join(self.params)})")
        return self.returns(arg_types)

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)})"


def _fits(got: Type, want: Type) -> bool:
    got = strip_optional(got)
    if got in (ANY, NULL):
        return True
    if want == FLOAT:
        return is_numeric(got)
    return is_assignable(got, want)


def _const(t: Type) -> Callable[[list[Type]], Type]:
    return lambda _args: t


def _same_as_first(args: list[Type]) -> Type:
    return strip_optional(args[0]) if args else ANY


def _unified(args: list[Type]) -> Type:
    from .expr import ExprTypeError

    out: Type | None = None
    for t in args:
        out = t if out is None else unify(out, t)
        if out is None:
            raise ExprTypeError("arguments have incompatible types: " + ", ".join(map(str, args)))
    return out or ANY


def _if_type(args: list[Type]) -> Type:
    from .expr import ExprTypeError

    if strip_optional(args[0]) not in (BOOL, ANY):
        raise ExprTypeError(f"the condition of if() must be bool, got {args[0]}")
    return _unified(args[1:])


def _to_ms(ts: Any) -> int:
    if isinstance(ts, (int, float)):
        return int(ts)
    if isinstance(ts, (str, datetime)):
        return to_epoch_ms(ts)
    raise TypeError(f"not a timestamp: {ts!r}")


def parse_time(text: str) -> int:
    """Epoch milliseconds from an ISO-8601 string (UTC when no zone is given)."""
    return parse_iso(text)


def _utc(ts: Any) -> datetime:
    return datetime.fromtimestamp(_to_ms(ts) / 1000, tz=timezone.utc)


def _round(x: float, digits: int = 0) -> float | int:
    return round(x, digits) if digits else round(x)


def _to_int(x: Any) -> int:
    return int(float(x)) if isinstance(x, str) else int(x)


def _to_str(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    return str(x)


def _concat(*parts: Any) -> str:
    return "".join(_to_str(p) for p in parts if p is not None)


def _b(name: str, params: Sequence[str], doc: str, impl: Callable[..., Any], returns: Callable[[list[Type]], Type],
       arg_types: Sequence[Type | None] | None = None, category: str = "string", example: str = "",
       **kw: Any) -> Builtin:
    return Builtin(name, tuple(params), doc, impl, returns,
                   tuple(arg_types) if arg_types is not None else None, category=category,
                   example=example, **kw)


_FUNCTIONS: list[Builtin] = [
    # strings
    _b("lower", ["text: str"], "Lower-cases text.", str.lower, _const(STR), [STR], example='lower("ABC") = "abc"'),
    _b("upper", ["text: str"], "Upper-cases text.", str.upper, _const(STR), [STR], example='upper("abc") = "ABC"'),
    _b("trim", ["text: str"], "Removes leading and trailing white space.", str.strip, _const(STR), [STR],
       example='trim("  a ") = "a"'),
    _b("length", ["value: str | list"], "Number of characters of a string or items of a list.", len,
       _const(INT), example='length("abc") = 3'),
    _b("concat", ["value", "..."], "Joins the values as text; nulls are skipped.", _concat, _const(STR),
       min_args=1, variadic=True, null_safe=True, example='concat("a", 1, true) = "a1true"'),
    _b("substr", ["text: str", "start: int", "length: int"], "Characters from `start` (0-based), at most `length` of them.",
       lambda s, start, n=None: s[start:] if n is None else s[start:start + n], _const(STR), [STR, INT, INT],
       min_args=2, example='substr("dataflow", 4, 4) = "flow"'),
    _b("replace", ["text: str", "old: str", "new: str"], "Replaces every occurrence of `old`.", str.replace,
       _const(STR), [STR, STR, STR], example='replace("a-b", "-", "+") = "a+b"'),
    _b("split", ["text: str", "separator: str"], "Splits text into a list of strings; empty parts are dropped.",
       lambda s, sep=None: [p for p in s.split(sep) if p] if sep else s.split(), _const(ListType(STR)), [STR, STR],
       min_args=1, example='split("a b  c") = ["a", "b", "c"]'),
    _b("starts_with", ["text: str", "prefix: str"], "Whether text starts with prefix.", str.startswith,
       _const(BOOL), [STR, STR], example='starts_with("dataflow", "data") = true'),
    _b("ends_with", ["text: str", "suffix: str"], "Whether text ends with suffix.", str.endswith,
       _const(BOOL), [STR, STR], example='ends_with("dataflow", "flow") = true'),
    _b("contains", ["haystack: str | list", "needle"], "Whether the string or list contains the value.",
       lambda h, n: n in h, _const(BOOL), example='contains("dataflow", "taf") = true'),
    _b("to_str", ["value"], "The value as text (`true`/`false` for booleans).", _to_str, _const(STR),
       example="to_str(42) = \"42\""),
    # math
    _b("abs", ["x: number"], "Absolute value.", abs, _same_as_first, [FLOAT], category="math", example="abs(-3) = 3"),
    _b("round", ["x: number", "digits: int"], "Rounds to `digits` decimals (to an int without digits).", _round,
       lambda a: FLOAT if len(a) > 1 else INT, [FLOAT, INT], min_args=1, category="math",
       example="round(2.567, 2) = 2.57"),
    _b("floor", ["x: number"], "Largest int not above x.", math.floor, _const(INT), [FLOAT], category="math",
       example="floor(2.7) = 2"),
    _b("ceil", ["x: number"], "Smallest int not below x.", math.ceil, _const(INT), [FLOAT], category="math",
       example="ceil(2.1) = 3"),
    _b("sqrt", ["x: number"], "Square root.", math.sqrt, _const(FLOAT), [FLOAT], category="math",
       example="sqrt(9) = 3.0"),
    _b("pow", ["x: number", "y: number"], "x to the power y.", lambda x, y: x ** y,
       lambda a: INT if all(strip_optional(t) == INT for t in a) else FLOAT, [FLOAT, FLOAT], category="math",
       example="pow(2, 10) = 1024"),
    _b("least", ["x", "..."], "The smallest argument.", min, _unified, min_args=1, variadic=True,
       category="math", example="least(3, 1, 2) = 1"),
    _b("greatest", ["x", "..."], "The largest argument.", max, _unified, min_args=1, variadic=True,
       category="math", example="greatest(3, 1, 2) = 3"),
    _b("to_int", ["value"], "Converts a number or numeric text to int (truncating).", _to_int, _const(INT),
       category="math", example='to_int("42") = 42'),
    _b("to_float", ["value"], "Converts a number or numeric text to float.", float, _const(FLOAT),
       category="math", example='to_float("2.5") = 2.5'),
    # null handling and logic
    _b("coalesce", ["value", "..."], "The first argument that is not null.",
       lambda *a: next((x for x in a if x is not None), None),
       lambda a: strip_optional(_unified(a)) if a and not isinstance(a[-1], OptionalType) else _unified(a),
       min_args=1, variadic=True, null_safe=True, category="logic", example="coalesce(null, 2) = 2"),
    _b("if", ["condition: bool", "then", "else"], "`then` when the condition holds, otherwise `else`.",
       lambda c, a, b: a if c else b, _if_type, null_safe=True, category="logic",
       example='if(amount > 100, "big", "small")'),
    # time (timestamps are epoch milliseconds, UTC)
    _b("now", [], "The current processing time as a timestamp.", lambda: int(time.time() * 1000),
       _const(TIMESTAMP), category="time", example="now()"),
    _b("parse_time", ["text: str"], "Timestamp from ISO-8601 text (UTC unless a zone is given).", parse_time,
       _const(TIMESTAMP), [STR], category="time", example='parse_time("2024-01-01T00:00:00Z") = 1704067200000'),
    _b("format_time", ["ts: timestamp", "format: str"], "Formats a timestamp with strftime codes (UTC).",
       lambda ts, fmt="%Y-%m-%dT%H:%M:%S.%fZ": _utc(ts).strftime(fmt), _const(STR), [TIMESTAMP, STR],
       min_args=1, category="time", example='format_time(0, "%Y-%m-%d") = "1970-01-01"'),
    _b("year", ["ts: timestamp"], "The UTC year.", lambda ts: _utc(ts).year, _const(INT), [TIMESTAMP],
       category="time", example="year(0) = 1970"),
    _b("month", ["ts: timestamp"], "The UTC month, 1 to 12.", lambda ts: _utc(ts).month, _const(INT), [TIMESTAMP],
       category="time", example="month(0) = 1"),
    _b("day", ["ts: timestamp"], "The UTC day of the month.", lambda ts: _utc(ts).day, _const(INT), [TIMESTAMP],
       category="time", example="day(0) = 1"),
    _b("hour", ["ts: timestamp"], "The UTC hour, 0 to 23.", lambda ts: _utc(ts).hour, _const(INT), [TIMESTAMP],
       category="time", example="hour(3600000) = 1"),
    _b("minute", ["ts: timestamp"], "The UTC minute, 0 to 59.", lambda ts: _utc(ts).minute, _const(INT),
       [TIMESTAMP], category="time", example="minute(60000) = 1"),
    _b("truncate_time", ["ts: timestamp", "unit: duration"], "Rounds a timestamp down to a multiple of `unit`.",
       lambda ts, unit: _to_ms(ts) - _to_ms(ts) % unit, _const(TIMESTAMP), [TIMESTAMP, INT], category="time",
       example="truncate_time(90000, 1m) = 60000"),
]

BUILTINS: dict[str, Builtin] = {f.name: f for f in _FUNCTIONS}


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest known name, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def to_timestamp_ms(value: Any, unit: str = "ms") -> int:
    """Epoch milliseconds from a number in `unit`, ISO text or a datetime (see `ir.timestamps`)."""
    return to_epoch_ms(value, unit)
