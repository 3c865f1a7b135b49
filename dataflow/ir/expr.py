"""Expressions as data: a tiny AST, its type rules and its canonical text.

Expressions are never strings to `eval`. The `.flow` parser and the builder's
`col(...)` helpers both produce these nodes; the runtime compiles them once.

>>> e = Binary(">", FieldRef(("amount",)), Literal(1000))
>>> render(e)
'amount > 1000'
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .location import SourceLocation
from .types import (ANY, BOOL, FLOAT, INT, NULL, STR, TIMESTAMP, BYTES, Field, ListType, OptionalType,
                    Primitive, RecordType, Type, is_assignable, is_numeric, optional, strip_optional,
                    unify)

META_FIELDS = ("key", "value", "timestamp", "partition", "offset", "topic")


class Expr:
    """Base of expression nodes. `loc` never takes part in equality."""

    loc: SourceLocation | None

    def children(self) -> tuple["Expr", ...]:
        return ()


@dataclass(frozen=True)
class Literal(Expr):
    value: Any
    duration: bool = False  # written as 30s/5m: rendered back that way
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FieldRef(Expr):
    """`a.b.c`: a field of the record value, nested by dots."""

    path: tuple[str, ...]
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Meta(Expr):
    """`_key`, `_value`, `_timestamp`, `_partition`, `_offset`, `_topic`."""

    name: str
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # "-" or "not"
    operand: Expr
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / % == != < <= > >= and or
    left: Expr
    right: Expr
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool = False
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Call(Expr):
    """A built-in function from `dataflow.ir.functions`."""

    function: str
    args: tuple[Expr, ...]
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True)
class Udf(Expr):
    """A user function named by import path, `package.module:function`."""

    path: str
    args: tuple[Expr, ...]
    returns: Type = ANY
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True)
class MakeRecord(Expr):
    """`{ name: expr, ... }`: record construction and projection."""

    fields: tuple[tuple[str, Expr], ...]
    name: str = ""
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return tuple(e for _, e in self.fields)


@dataclass(frozen=True)
class MakeList(Expr):
    items: tuple[Expr, ...]
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)

    def children(self) -> tuple[Expr, ...]:
        return self.items


@dataclass(frozen=True)
class PyCall(Expr):
    """A Python callable given to the builder, applied to the whole value.

    `ref` (`module:qualname`) is what plans show; `func` is what runs.
    """

    ref: str
    func: Callable[..., Any] = field(compare=False, repr=False)
    returns: Type = ANY
    loc: SourceLocation | None = field(default=None, compare=False, repr=False)


def walk(expr: Expr) -> Iterator[Expr]:
    yield expr
    for child in expr.children():
        yield from walk(child)


def uses_key(expr: Expr) -> bool:
    return any(isinstance(e, Meta) and e.name in ("key", "partition") for e in walk(expr))


def field_paths(expr: Expr) -> set[tuple[str, ...]]:
    return {e.path for e in walk(expr) if isinstance(e, FieldRef)}


# --------------------------------------------------------------------------- typing


class ExprTypeError(Exception):
    """A type error inside an expression; `loc` is the offending sub-expression when known."""

    def __init__(self, message: str, loc: SourceLocation | None = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.hint = hint


@dataclass(frozen=True)
class Scope:
    """What an expression can see: the key and value types of the record."""

    key: Type
    value: Type


def literal_type(value: Any) -> Type:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    if isinstance(value, bytes):
        return BYTES
    raise ExprTypeError(f"unsupported literal {value!r}")


_META_TYPES = {"timestamp": TIMESTAMP, "partition": INT, "offset": INT, "topic": STR}


def infer(expr: Expr, scope: Scope) -> Type:
    """The type of `expr` in `scope`, or ExprTypeError naming the problem.

    >>> rec = RecordType("W", (Field("amount", FLOAT),))
    >>> infer(Binary(">", FieldRef(("amount",)), Literal(1000)), Scope(STR, rec))
    Primitive(name='bool')
    """
    from .functions import BUILTINS, suggest

    if isinstance(expr, Literal):
        return INT if expr.duration else literal_type(expr.value)
    if isinstance(expr, Meta):
        if expr.name == "key":
            return scope.key
        if expr.name == "value":
            return scope.value
        return _META_TYPES[expr.name]
    if isinstance(expr, FieldRef):
        return _field_type(expr, scope.value)
    if isinstance(expr, Unary):
        t = infer(expr.operand, scope)
        if expr.op == "not":
            _expect_bool(t, expr.operand, "not")
            return BOOL
        if not is_numeric(t):
            raise ExprTypeError(f"cannot negate a value of type {t}", _loc(expr.operand))
        return t
    if isinstance(expr, Binary):
        return _binary_type(expr, infer(expr.left, scope), infer(expr.right, scope))
    if isinstance(expr, IsNull):
        infer(expr.operand, scope)
        return BOOL
    if isinstance(expr, Call):
        spec = BUILTINS.get(expr.function)
        if spec is None:
            hint = suggest(expr.function, BUILTINS)
            raise ExprTypeError(f"unknown function '{expr.function}'", expr.loc,
                                f"did you mean '{hint}'?" if hint else "see the list of built-in functions in docs/language.md")
        arg_types = [infer(a, scope) for a in expr.args]
        return spec.check(expr, arg_types)
    if isinstance(expr, Udf):
        for a in expr.args:
            infer(a, scope)
        return expr.returns
    if isinstance(expr, MakeRecord):
        seen: set[str] = set()
        fields = []
        for name, sub in expr.fields:
            if name in seen:
                raise ExprTypeError(f"field '{name}' is given twice", _loc(sub) or expr.loc)
            seen.add(name)
            fields.append(Field(name, infer(sub, scope)))
        return RecordType(expr.name, tuple(fields))
    if isinstance(expr, MakeList):
        item: Type | None = None
        for sub in expr.items:
            t = infer(sub, scope)
            item = t if item is None else unify(item, t)
            if item is None:
                raise ExprTypeError("list items have different types", _loc(sub))
        return ListType(item or ANY)
    if isinstance(expr, PyCall):
        return expr.returns
    raise ExprTypeError(f"unknown expression {expr!r}")


def _loc(expr: Expr) -> SourceLocation | None:
    return getattr(expr, "loc", None)


def _field_type(expr: FieldRef, value: Type) -> Type:
    current = value
    nullable = False
    for depth, name in enumerate(expr.path):
        if isinstance(current, OptionalType):
            nullable = True
            current = current.inner
        if current == ANY:
            return ANY
        if not isinstance(current, RecordType):
            where = ".".join(expr.path[:depth]) or "the value"
            raise ExprTypeError(f"{where} is of type {current}, which has no field '{name}'", expr.loc)
        f = current.field(name)
        if f is None:
            from .functions import suggest

            hint = suggest(name, current.field_names)
            owner = ".".join(expr.path[:depth]) or current.render() or "the record"
            raise ExprTypeError(
                f"unknown field '{name}' in {owner}", expr.loc,
                f"did you mean '{hint}'?" if hint else
                f"fields are: {', '.join(current.field_names) or 'none'}")
        current = f.type
    return optional(current) if nullable else current


def _expect_bool(t: Type, sub: Expr, op: str) -> None:
    if strip_optional(t) not in (BOOL, ANY):
        raise ExprTypeError(f"'{op}' needs a bool, got {t}", _loc(sub))


def _binary_type(expr: Binary, left: Type, right: Type) -> Type:
    op = expr.op
    if op in ("and", "or"):
        _expect_bool(left, expr.left, op)
        _expect_bool(right, expr.right, op)
        return BOOL
    if op in ("==", "!="):
        if unify(left, right) is None:
            raise ExprTypeError(f"cannot compare {left} with {right} using '{op}'", expr.loc)
        return BOOL
    if op in ("<", "<=", ">", ">="):
        ok = (is_numeric(left) and is_numeric(right)) or unify(strip_optional(left), strip_optional(right)) in (STR, TIMESTAMP, ANY)
        if not ok:
            raise ExprTypeError(f"cannot compare {left} with {right} using '{op}'", expr.loc)
        return BOOL
    if op == "+" and strip_optional(left) == STR and strip_optional(right) == STR:
        # null-propagating like the arithmetic below: a maybe-null operand gives a maybe-null string
        return optional(STR) if isinstance(left, OptionalType) or isinstance(right, OptionalType) else STR
    if op in ("+", "-", "*", "/", "%"):
        if not (is_numeric(left) and is_numeric(right)):
            bad, sub = (left, expr.left) if not is_numeric(left) else (right, expr.right)
            hint = "use concat() to join strings with other values" if op == "+" else ""
            raise ExprTypeError(f"operator '{op}' needs numbers, got {bad}", _loc(sub) or expr.loc, hint)
        sl, sr = strip_optional(left), strip_optional(right)
        if ANY in (sl, sr):
            result: Type = ANY
        elif TIMESTAMP in (sl, sr) and op in ("+", "-"):
            result = INT if (sl == TIMESTAMP and sr == TIMESTAMP) else TIMESTAMP
        elif op == "/" or FLOAT in (sl, sr):
            result = FLOAT
        else:
            result = INT
        nullable = isinstance(left, OptionalType) or isinstance(right, OptionalType)
        return optional(result) if nullable else result
    raise ExprTypeError(f"unknown operator '{op}'", expr.loc)


# --------------------------------------------------------------------------- text

_PRECEDENCE = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
               "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}


def render(expr: Expr) -> str:
    """The canonical `.flow` spelling of an expression (used by explain and fmt)."""
    return _render(expr, 0)


def _render(expr: Expr, parent: int) -> str:
    from .durations import format_duration

    if isinstance(expr, Literal):
        if expr.duration:
            return format_duration(expr.value)
        if expr.value is None:
            return "null"
        if isinstance(expr.value, bool):
            return "true" if expr.value else "false"
        if isinstance(expr.value, str):
            return json.dumps(expr.value)
        if isinstance(expr.value, bytes):
            return f"bytes({json.dumps(expr.value.decode('latin-1'))})"
        return repr(expr.value)
    if isinstance(expr, FieldRef):
        return ".".join(expr.path)
    if isinstance(expr, Meta):
        return f"_{expr.name}"
    if isinstance(expr, Unary):
        inner = _render(expr.operand, 7)
        text = f"not {inner}" if expr.op == "not" else f"-{inner}"
        return f"({text})" if parent > (3 if expr.op == "not" else 7) else text
    if isinstance(expr, Binary):
        prec = _PRECEDENCE[expr.op]
        text = f"{_render(expr.left, prec)} {expr.op} {_render(expr.right, prec + 1)}"
        return f"({text})" if prec < parent else text
    if isinstance(expr, IsNull):
        text = f"{_render(expr.operand, 5)} is {'not ' if expr.negated else ''}null"
        return f"({text})" if parent > 4 else text
    if isinstance(expr, Call):
        return f"{expr.function}({', '.join(_render(a, 0) for a in expr.args)})"
    if isinstance(expr, Udf):
        args = "".join(f", {_render(a, 0)}" for a in expr.args)
        return f"udf({json.dumps(expr.path)}{args})"
    if isinstance(expr, MakeRecord):
        inner = ", ".join(f"{n}: {_render(e, 0)}" for n, e in expr.fields)
        return f"{expr.name + ' ' if expr.name else ''}{{ {inner} }}"
    if isinstance(expr, MakeList):
        return f"[{', '.join(_render(e, 0) for e in expr.items)}]"
    if isinstance(expr, PyCall):
        return f"python({expr.ref})"
    raise TypeError(expr)


__all__ = [
    "Expr", "Literal", "FieldRef", "Meta", "Unary", "Binary", "IsNull", "Call", "Udf", "MakeRecord",
    "MakeList", "PyCall", "Scope", "ExprTypeError", "infer", "render", "walk", "uses_key",
    "field_paths", "META_FIELDS", "Primitive",
]
