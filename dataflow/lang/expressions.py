"""Transformer rules for expressions and types: parse-tree nodes to `dataflow.ir.expr` nodes.

Expressions are data (see `dataflow/ir/expr.py`): these rules build the same AST the
builder's `col(...)` helpers build, plus a `loc` on every node so the planner's type
errors point at the exact column. Names are resolved here: `_key` is a meta field,
`risk(...)` a declared udf, `lower(...)` a built-in, anything else a "did you mean".

>>> from dataflow.lang.parser import parse
>>> from dataflow.lang.transform import FlowTransformer
>>> from dataflow.ir.expr import render
>>> t = FlowTransformer("x.flow")
>>> flow = t.transform(parse("pipeline p topic t t | filter lower(name) == \\"bo\\" and -n < -1", "x.flow"))
>>> render(flow.topology().node("t.filter").predicate)
'lower(name) == "bo" and -n < -1'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lark import Token, Transformer

from ..ir import expr as ir
from ..ir.bounds import (MAX_STRING_LENGTH, duration_digits_problem, float_literal_problem, int_literal_problem)
from ..ir.durations import parse_duration
from ..ir.functions import BUILTINS
from ..ir.location import SourceLocation
from ..ir.nodes import AGGREGATE_FUNCTIONS
from ..ir.types import PRIMITIVES, TIMESTAMP_UNITS, ListType, RecordType, Type, optional, timestamp_type
from .diagnostics import LangError, Silent, did_you_mean, span

UDF_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass(frozen=True)
class UdfInfo:
    """A declared user function: `udf risk(float, str) -> float = "mypkg.scoring:risk"`."""

    name: str
    path: str
    params: tuple[Type, ...]
    returns: Type
    loc: SourceLocation


def _token_loc(token: Token, file: str) -> SourceLocation:
    return SourceLocation(file, token.line or 1, token.column or 1, token.end_line, token.end_column)


def _refuse(problem: str | None, token: Token, file: str) -> None:
    if problem:
        raise LangError(problem, _token_loc(token, file))


def whole_number(token: Token, file: str) -> int:
    """The value of an INT token; a LangError at the token when it does not fit in 64 bits."""
    _refuse(int_literal_problem(token.value), token, file)
    return int(token.value)


def decimal_number(token: Token, file: str) -> float:
    """The value of a FLOAT token; a LangError at the token when no 64-bit float holds it."""
    _refuse(float_literal_problem(token.value), token, file)
    return float(token.value)


def duration_ms(token: Token, file: str) -> int:
    """The milliseconds of a DURATION token such as `30s`; a LangError at the token when too long."""
    _refuse(duration_digits_problem(token.value), token, file)
    return parse_duration(token.value)


def decode_string(token: Token, file: str) -> str:
    """The text of a string literal, with JSON-style escapes (`\\n`, `\\"`, `\\u00e9`)."""
    body = token.value[1:-1]
    if len(body) > MAX_STRING_LENGTH:
        raise LangError(f"a string literal holds at most {MAX_STRING_LENGTH:,} characters, not {len(body):,}",
                        _token_loc(token, file), "read long text from a topic or a file instead")
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code = body[i + 1] if i + 1 < len(body) else ""
        column = (token.column or 1) + 1 + i
        where = SourceLocation(file, token.line or 1, column, token.line, column + 2)
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i += 2
        elif code == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2:i + 6]):
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        else:
            raise LangError(f"unknown escape '\\{code}' in a string", where,
                            'escapes are \\" \\\\ \\n \\t \\r \\b \\f \\/ and \\uXXXX')
    return "".join(out)


def field_path_text(expr: ir.Expr, loc: SourceLocation, what: str) -> str:
    """`a.b` from a field reference, for places that take a field rather than an expression."""
    if isinstance(expr, ir.FieldRef):
        return ".".join(expr.path)
    raise LangError(f"{what} takes a field of the value, not '_{getattr(expr, 'name', '')}'", loc,
                    "name the field that holds the time, like 'ts'")


class ExpressionRules(Transformer):  # type: ignore[misc]
    """Base of the FlowTransformer: one method per expression and type rule of the grammar."""

    file: str
    udfs: dict[str, UdfInfo]
    records: dict[str, tuple[RecordType, SourceLocation]]
    poisoned: set[str]

    def _loc(self, node: Any) -> SourceLocation:
        return span(self.file, node)

    # ------------------------------------------------------------------ literals
    def string(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(decode_string(children[0], self.file), loc=self._loc(meta))

    def int(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(whole_number(children[0], self.file), loc=self._loc(meta))

    def float(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(decimal_number(children[0], self.file), loc=self._loc(meta))

    def duration(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(duration_ms(children[0], self.file), duration=True, loc=self._loc(meta))

    def true(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(True, loc=self._loc(meta))

    def false(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(False, loc=self._loc(meta))

    def null(self, meta: Any, children: list[Token]) -> ir.Expr:
        return ir.Literal(None, loc=self._loc(meta))

    # ------------------------------------------------------------------ names
    def field_path(self, meta: Any, children: list[Token]) -> ir.Expr:
        names = [t.value for t in children]
        loc = self._loc(meta)
        head = names[0]
        if head.startswith("_") and head[1:] in ir.META_FIELDS:
            if len(names) > 1:
                raise LangError(f"meta field '{head}' has no fields", loc,
                                f"write '{'.'.join(names[1:])}' to read a field of the value")
            return ir.Meta(head[1:], loc=loc)
        return ir.FieldRef(tuple(names), loc=loc)

    def call(self, meta: Any, children: list[Any]) -> ir.Expr:
        name_token, *args = children
        name = name_token.value
        loc = self._loc(meta)
        name_loc = self._loc(name_token)
        if name in self.udfs:
            udf = self.udfs[name]
            if len(args) != len(udf.params):
                raise LangError(f"{name}() takes {len(udf.params)} argument{'s' if len(udf.params) != 1 else ''}, "
                                f"got {len(args)}", loc,
                                f"declared at line {udf.loc.line}: {name}({', '.join(map(str, udf.params))})")
            return ir.Udf(udf.path, tuple(args), udf.returns, loc=loc)
        if name in self.poisoned:
            raise Silent(name)
        if name == "udf":
            return self._inline_udf(args, loc)
        if name in BUILTINS:
            return ir.Call(name, tuple(args), loc=loc)
        if name in AGGREGATE_FUNCTIONS:
            raise LangError(f"'{name}' is an aggregation, not a function", name_loc,
                            f"use it inside aggregate {{ ... }}, e.g. aggregate {{ x: {name}(...) }}")
        raise LangError(f"unknown function '{name}'", name_loc,
                        did_you_mean(name, [*BUILTINS, *self.udfs],
                                     "see the built-in functions in docs/language.md, or declare a udf"))

    def _inline_udf(self, args: list[ir.Expr], loc: SourceLocation) -> ir.Expr:
        """`udf("pkg.mod:fn", x, y)`: the form `explain` prints for user functions."""
        if not args or not isinstance(args[0], ir.Literal) or not isinstance(args[0].value, str):
            raise LangError("udf(...) takes the function's import path first", loc,
                            'udf("mypkg.scoring:risk", amount), or declare it: udf risk(float) -> float = "..."')
        path = args[0].value
        check_udf_path(path, args[0].loc or loc)
        return ir.Udf(path, tuple(args[1:]), loc=loc)

    # ------------------------------------------------------------------ operators
    def neg(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        (operand,) = children
        loc = self._loc(meta)
        # `-5` is the constant -5, as `lit(-5)` is in the builder, not a negation of 5.
        if (isinstance(operand, ir.Literal) and not operand.duration
                and isinstance(operand.value, (int, float)) and not isinstance(operand.value, bool)):
            return ir.Literal(-operand.value, loc=loc)
        return ir.Unary("-", operand, loc=loc)

    def not_op(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.Unary("not", children[0], loc=self._loc(meta))

    def and_op(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.Binary("and", children[0], children[1], loc=self._loc(meta))

    def or_op(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.Binary("or", children[0], children[1], loc=self._loc(meta))

    def compare(self, meta: Any, children: list[Any]) -> ir.Expr:
        left, op, right = children
        return ir.Binary(op, left, right, loc=self._loc(meta))

    def arith(self, meta: Any, children: list[Any]) -> ir.Expr:
        left, op, right = children
        return ir.Binary(op, left, right, loc=self._loc(meta))

    def compare_op(self, meta: Any, children: list[Token]) -> str:
        return str(children[0].value)

    def add_op(self, meta: Any, children: list[Token]) -> str:
        return str(children[0].value)

    def mul_op(self, meta: Any, children: list[Token]) -> str:
        return str(children[0].value)

    def is_null(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.IsNull(children[0], loc=self._loc(meta))

    def is_not_null(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.IsNull(children[0], negated=True, loc=self._loc(meta))

    # ------------------------------------------------------------------ lists and records
    def list_expr(self, meta: Any, children: list[ir.Expr]) -> ir.Expr:
        return ir.MakeList(tuple(children), loc=self._loc(meta))

    def record_expr(self, meta: Any, children: list[tuple[str, ir.Expr, SourceLocation]]) -> ir.Expr:
        seen: dict[str, SourceLocation] = {}
        for name, _expr, loc in children:
            if name in seen:
                raise LangError(f"field '{name}' is given twice", loc, f"first given at line {seen[name].line}")
            seen[name] = loc
        return ir.MakeRecord(tuple((name, e) for name, e, _ in children), loc=self._loc(meta))

    def record_field(self, meta: Any, children: list[Any]) -> tuple[str, ir.Expr, SourceLocation]:
        name, value = children
        return str(name.value), value, self._loc(name)

    def record_shorthand(self, meta: Any, children: list[ir.Expr]) -> tuple[str, ir.Expr, SourceLocation]:
        (value,) = children
        loc = self._loc(meta)
        # `{ address.city }` makes a field `city`, as the builder's select("address.city") does.
        if isinstance(value, ir.FieldRef):
            return value.path[-1], value, loc
        return f"_{value.name}", value, loc  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ types
    def named_type(self, meta: Any, children: list[Token]) -> Type:
        name = children[0].value
        if name in PRIMITIVES:
            return PRIMITIVES[name]
        if name in self.records:
            return self.records[name][0]
        if name in self.poisoned:
            raise Silent(name)
        raise LangError(f"unknown type '{name}'", self._loc(children[0]),
                        did_you_mean(name, [*PRIMITIVES, *self.records],
                                     "types are str, int, float, bool, bytes, timestamp, timestamp(s), any, "
                                     "list<T>, optional T and declared records"))

    def unit_type(self, meta: Any, children: list[Token]) -> Type:
        name, unit = children
        if name.value != "timestamp":
            raise LangError(f"'{name.value}' takes no unit", self._loc(name),
                            "only timestamps have a unit: timestamp(s), timestamp(ms), timestamp(us), timestamp(ns)")
        if unit.value not in TIMESTAMP_UNITS:
            raise LangError(f"unknown timestamp unit '{unit.value}'", self._loc(unit),
                            did_you_mean(unit.value, TIMESTAMP_UNITS, "units are: " + ", ".join(TIMESTAMP_UNITS)))
        return timestamp_type(unit.value)

    def list_type(self, meta: Any, children: list[Type]) -> Type:
        return ListType(children[0])

    def nullable_type(self, meta: Any, children: list[Type]) -> Type:
        return optional(children[0])

    def optional_type(self, meta: Any, children: list[Type]) -> Type:
        return optional(children[0])


def check_udf_path(path: str, loc: SourceLocation) -> None:
    if not UDF_PATH.match(path):
        raise LangError(f"'{path}' is not an import path", loc, 'write it as "package.module:function"')


__all__ = ["ExpressionRules", "UdfInfo", "decode_string", "whole_number", "decimal_number", "duration_ms", "field_path_text", "check_udf_path", "UDF_PATH"]
