"""Expression helpers for the builder: `col("amount") > 1000`, `fn.lower(col("name"))`.

`Col` wraps an IR expression and overloads Python operators; use `&`, `|` and `~`
for and/or/not. The wrapper never enters the IR: `to_expr` unwraps it.

>>> from dataflow.ir.expr import render
>>> render(to_expr((col("amount") > 1000) & ~col("flagged")))
'amount > 1000 and not flagged'
"""
from __future__ import annotations

from typing import Any, Callable

from ..ir import expr as ir
from ..ir.functions import BUILTINS, suggest
from ..ir.location import SourceLocation, caller_location
from ..ir.types import ANY, Type, from_python


class Col:
    __slots__ = ("expr",)
    __hash__ = None  # type: ignore[assignment]  # == builds an expression, so no hashing

    def __init__(self, expr: ir.Expr):
        self.expr = expr

    def _bin(self, op: str, other: Any, reverse: bool = False) -> "Col":
        left, right = (to_expr(other), self.expr) if reverse else (self.expr, to_expr(other))
        return Col(ir.Binary(op, left, right))

    def __gt__(self, o: Any) -> "Col": return self._bin(">", o)
    def __ge__(self, o: Any) -> "Col": return self._bin(">=", o)
    def __lt__(self, o: Any) -> "Col": return self._bin("<", o)
    def __le__(self, o: Any) -> "Col": return self._bin("<=", o)
    def __eq__(self, o: Any) -> "Col": return self._bin("==", o)  # type: ignore[override]
    def __ne__(self, o: Any) -> "Col": return self._bin("!=", o)  # type: ignore[override]
    def __add__(self, o: Any) -> "Col": return self._bin("+", o)
    def __radd__(self, o: Any) -> "Col": return self._bin("+", o, True)
    def __sub__(self, o: Any) -> "Col": return self._bin("-", o)
    def __rsub__(self, o: Any) -> "Col": return self._bin("-", o, True)
    def __mul__(self, o: Any) -> "Col": return self._bin("*", o)
    def __rmul__(self, o: Any) -> "Col": return self._bin("*", o, True)
    def __truediv__(self, o: Any) -> "Col": return self._bin("/", o)
    def __rtruediv__(self, o: Any) -> "Col": return self._bin("/", o, True)
    def __mod__(self, o: Any) -> "Col": return self._bin("%", o)
    def __and__(self, o: Any) -> "Col": return self._bin("and", o)
    def __rand__(self, o: Any) -> "Col": return self._bin("and", o, True)
    def __or__(self, o: Any) -> "Col": return self._bin("or", o)
    def __ror__(self, o: Any) -> "Col": return self._bin("or", o, True)
    def __invert__(self) -> "Col": return Col(ir.Unary("not", self.expr))
    def __neg__(self) -> "Col": return Col(ir.Unary("-", self.expr))

    def is_null(self) -> "Col":
        return Col(ir.IsNull(self.expr))

    def is_not_null(self) -> "Col":
        return Col(ir.IsNull(self.expr, negated=True))

    def __bool__(self) -> bool:
        raise TypeError("a dataflow expression has no truth value here; "
                        "combine conditions with &, | and ~ instead of and, or and not")

    def __repr__(self) -> str:
        return f"Col({ir.render(self.expr)})"


def col(path: str) -> Col:
    """A field of the value; dots reach into nested records: `col("address.city")`."""
    if path.startswith("_") and path[1:] in ir.META_FIELDS:
        return Col(ir.Meta(path[1:]))
    return Col(ir.FieldRef(tuple(path.split("."))))


def lit(value: Any) -> Col:
    """A constant: `lit("EUR")`, `lit(3)`, `lit(None)`."""
    return Col(ir.Literal(value))


def key() -> Col:
    """The record's key."""
    return Col(ir.Meta("key"))


def value() -> Col:
    """The whole value (useful when values are not records, e.g. lines of text)."""
    return Col(ir.Meta("value"))


def timestamp() -> Col:
    """The record's timestamp, epoch milliseconds."""
    return Col(ir.Meta("timestamp"))


def record(**fields: Any) -> Col:
    """Build a record: `record(user=col("user_id"), big=col("amount") > 100)`."""
    return Col(ir.MakeRecord(tuple((name, to_expr(v)) for name, v in fields.items())))


def udf(path: str, *args: Any, returns: Any = None) -> Col:
    """Call a user function by import path: `udf("mypkg.scoring:risk", col("amount"))`."""
    if ":" not in path:
        raise ValueError(f"udf path {path!r} must look like 'package.module:function'")
    return Col(ir.Udf(path, tuple(to_expr(a) for a in args), from_python(returns) if returns is not None else ANY))


class _Functions:
    """`fn.NAME(args...)` calls the built-in function NAME (see docs/language.md)."""

    def __getattr__(self, name: str) -> Callable[..., Col]:
        lookup = name.rstrip("_")  # fn.if_ for the keyword-named built-in
        if lookup not in BUILTINS:
            hint = suggest(lookup, BUILTINS)
            raise AttributeError(f"unknown function '{lookup}'" + (f"; did you mean '{hint}'?" if hint else ""))

        def call(*args: Any) -> Col:
            return Col(ir.Call(lookup, tuple(to_expr(a) for a in args)))

        call.__name__ = lookup
        return call


fn = _Functions()


def to_expr(value: Any, loc: SourceLocation | None = None) -> ir.Expr:
    """An IR expression from a Col, a plain constant, an IR expression or a dict (a record)."""
    if isinstance(value, Col):
        return value.expr
    if isinstance(value, ir.Expr):
        return value
    if isinstance(value, dict):
        return ir.MakeRecord(tuple((str(k), to_expr(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ir.MakeList(tuple(to_expr(v) for v in value))
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return ir.Literal(value)
    raise TypeError(f"cannot use {value!r} in an expression")


def callable_ref(func: Callable[..., Any]) -> str:
    """`module:qualname` for plans; lambdas also get their line so two differ."""
    module = getattr(func, "__module__", None) or "<unknown>"
    qualname = getattr(func, "__qualname__", None) or type(func).__name__
    if "<lambda>" in qualname:
        code = getattr(func, "__code__", None)
        if code is not None:
            qualname = f"{qualname}@{code.co_firstlineno}"
    return f"{module}:{qualname}"


def expr_or_callable(value: Any, returns: Any = None) -> ir.Expr:
    """Builder arguments may be expressions, constants, dicts, or Python callables."""
    if callable(value) and not isinstance(value, (Col, ir.Expr, type)):
        return ir.PyCall(callable_ref(value), value, from_python(returns) if returns is not None else ANY)
    if isinstance(value, str):
        return col(value).expr
    return to_expr(value)


def key_expr(value: Any) -> ir.Expr:
    """A grouping key: a field name, an expression or a callable of the value."""
    return expr_or_callable(value)


def label(expr: ir.Expr) -> str:
    """A short, stable name fragment for an expression: `account_id`, `lower_name`."""
    if isinstance(expr, ir.FieldRef):
        return "_".join(expr.path)
    if isinstance(expr, ir.Meta):
        return expr.name
    if isinstance(expr, ir.PyCall):
        # Topic names derive from labels, and Kafka allows only [A-Za-z0-9._-]: drop `<locals>`.
        qualname = expr.ref.split(":")[-1].split("@")[0]
        return "_".join(p for p in qualname.split(".") if p != "<locals>").replace("<lambda>", "lambda")
    if isinstance(expr, ir.Call):
        inner = "_".join(label(a) for a in expr.args if not isinstance(a, ir.Literal))
        return f"{expr.function}_{inner}" if inner else expr.function
    if isinstance(expr, ir.Udf):
        return expr.path.split(":")[-1]
    text = "".join(ch if ch.isalnum() else "_" for ch in ir.render(expr))
    return "_".join(part for part in text.split("_") if part)[:40] or "expr"


def here() -> SourceLocation:
    return caller_location()


__all__ = ["Col", "col", "lit", "key", "value", "timestamp", "record", "udf", "fn", "to_expr",
           "expr_or_callable", "callable_ref", "label", "Type"]
