"""Compile IR expressions once into Python functions, by building `ast` nodes.

User text never reaches `eval`/`exec`: the `.flow` parser and the builder give us
an expression tree, and this module turns that tree into Python `ast` nodes and
`compile()`s them. Operands whose type may be null go through null-propagating
helpers (`amount > 1` is null when amount is null, and a filter drops it); all
others compile to plain Python operators.

>>> from dataflow.ir.expr import Binary, FieldRef, Literal, Scope
>>> from dataflow.ir.types import RecordType, Field, FLOAT, STR
>>> scope = Scope(STR, RecordType("W", (Field("amount", FLOAT),)))
>>> f = compile_function(Binary(">", FieldRef(("amount",)), Literal(1000)), scope)
>>> f("k", {"amount": 1500.0}, 0), f("k", {"amount": 5.0}, 0)
(True, False)
"""
from __future__ import annotations

import ast
import operator
import types
from typing import Any, Callable

from ..ir import expr as ir
from ..ir.callables import load_callable
from ..ir.functions import BUILTINS
from ..ir.types import ANY, NULL, OptionalType, RecordType, Type

ARGS = ("k", "v", "ts")

_BINOPS: dict[str, ast.operator] = {"+": ast.Add(), "-": ast.Sub(), "*": ast.Mult(), "/": ast.Div(), "%": ast.Mod()}
_CMPOPS: dict[str, ast.cmpop] = {"==": ast.Eq(), "!=": ast.NotEq(), "<": ast.Lt(), "<=": ast.LtE(), ">": ast.Gt(),
                                 ">=": ast.GtE()}
_PY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv, "%": operator.mod,
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class ExprCompiler:
    """Turns expressions into `ast.expr` nodes over the locals `k`, `v`, `ts` (and `meta`).

    Helper callables (built-ins, UDFs, Python callables) are bound as names in
    `self.env`, which becomes the compiled code's globals.
    """

    def __init__(self) -> None:
        self.env: dict[str, Any] = {"__builtins__": {}}
        self._names: dict[int, str] = {}

    def bind(self, value: Any, hint: str) -> ast.Name:
        key = id(value)
        if key not in self._names:
            name = f"_{hint}_{len(self._names)}"
            self._names[key] = name
            self.env[name] = value
        return ast.Name(self._names[key], ast.Load())

    def _type(self, e: ir.Expr, scope: ir.Scope) -> Type:
        try:
            return ir.infer(e, scope)
        except ir.ExprTypeError:
            return ANY

    def _nullable(self, e: ir.Expr, scope: ir.Scope) -> bool:
        """Whether `e` may evaluate to null at run time.

        Types alone do not say: `amount > 1` and `upper(name)` are typed bool and str,
        yet they are null when `amount` or `name` is. So nullability follows the
        expression's structure, and falls back to its type at the leaves.
        """
        if isinstance(e, ir.Binary):
            if e.op in ("==", "!=", "and", "or"):
                return False  # compiled to plain Python comparisons / bool tests
            return self._nullable(e.left, scope) or self._nullable(e.right, scope)
        if isinstance(e, ir.Unary):
            return self._nullable(e.operand, scope)
        if isinstance(e, ir.IsNull):
            return False
        if isinstance(e, ir.Call):
            if e.function == "if":
                return any(self._nullable(a, scope) for a in e.args[1:])
            spec = BUILTINS.get(e.function)
            if spec is not None and not spec.null_safe and any(self._nullable(a, scope) for a in e.args):
                return True
        t = self._type(e, scope)
        return t in (ANY, NULL) or isinstance(t, OptionalType)

    def expr(self, e: ir.Expr, scope: ir.Scope) -> ast.expr:
        if isinstance(e, ir.Literal):
            return ast.Constant(e.value)
        if isinstance(e, ir.Meta):
            if e.name in ("key", "value", "timestamp"):
                return ast.Name({"key": "k", "value": "v", "timestamp": "ts"}[e.name], ast.Load())
            return self._call(self.bind(_meta_getter(e.name), "meta"), [ast.Name("meta", ast.Load())])
        if isinstance(e, ir.FieldRef):
            return self._field(e, scope)
        if isinstance(e, ir.Unary):
            inner = self.expr(e.operand, scope)
            if e.op == "not":
                if self._nullable(e.operand, scope):
                    return self._call(self.bind(_null_not, "not"), [inner])
                return ast.UnaryOp(ast.Not(), inner)
            if self._nullable(e.operand, scope):
                return self._call(self.bind(_null_neg, "neg"), [inner])
            return ast.UnaryOp(ast.USub(), inner)
        if isinstance(e, ir.Binary):
            return self._binary(e, scope)
        if isinstance(e, ir.IsNull):
            return ast.Compare(self.expr(e.operand, scope), [ast.IsNot() if e.negated else ast.Is()],
                               [ast.Constant(None)])
        if isinstance(e, ir.Call):
            return self._builtin(e, scope)
        if isinstance(e, ir.Udf):
            func = import_callable(e.path, e.loc.file if e.loc is not None else None)
            return self._call(self.bind(func, "udf"), [self.expr(a, scope) for a in e.args])
        if isinstance(e, ir.MakeRecord):
            return ast.Dict([ast.Constant(name) for name, _ in e.fields], [self.expr(x, scope) for _, x in e.fields])
        if isinstance(e, ir.MakeList):
            return ast.List([self.expr(x, scope) for x in e.items], ast.Load())
        if isinstance(e, ir.PyCall):
            return self._call(self.bind(e.func, "py"), [ast.Name("v", ast.Load())])
        raise TypeError(f"cannot compile {e!r}")

    @staticmethod
    def _call(func: ast.expr, args: list[ast.expr]) -> ast.Call:
        return ast.Call(func, args, [])

    def _field(self, e: ir.FieldRef, scope: ir.Scope) -> ast.expr:
        # Direct subscripts where the schema guarantees each level exists (records are
        # validated at the source, and maps build every field); a null-safe walk elsewhere.
        current: Type = scope.value
        node: ast.expr = ast.Name("v", ast.Load())
        for depth, name in enumerate(e.path):
            if not isinstance(current, RecordType) or current.field(name) is None:
                return self._call(self.bind(_get_path, "get"),
                                  [node, ast.Tuple([ast.Constant(p) for p in e.path[depth:]], ast.Load())])
            node = ast.Subscript(node, ast.Constant(name), ast.Load())
            current = current.field(name).type  # type: ignore[union-attr]
            if isinstance(current, OptionalType) and depth < len(e.path) - 1:
                return self._call(self.bind(_get_path, "get"),
                                  [node, ast.Tuple([ast.Constant(p) for p in e.path[depth + 1:]], ast.Load())])
        return node

    def _binary(self, e: ir.Binary, scope: ir.Scope) -> ast.expr:
        left, right = self.expr(e.left, scope), self.expr(e.right, scope)
        if e.op in ("and", "or"):
            # Null counts as false in conditions, as in SQL's WHERE.
            return ast.BoolOp(ast.And() if e.op == "and" else ast.Or(),
                              [self._truthy(left, e.left, scope), self._truthy(right, e.right, scope)])
        if e.op in ("==", "!="):  # Python's None == None matches `is null` intuition here
            return ast.Compare(left, [_CMPOPS[e.op]], [right])
        if self._nullable(e.left, scope) or self._nullable(e.right, scope):
            return self._call(self.bind(_null_op(e.op), "op"), [left, right])
        if e.op in _CMPOPS:
            return ast.Compare(left, [_CMPOPS[e.op]], [right])
        return ast.BinOp(left, _BINOPS[e.op], right)

    def _truthy(self, node: ast.expr, e: ir.Expr, scope: ir.Scope) -> ast.expr:
        if self._nullable(e, scope):
            return ast.Compare(node, [ast.Is()], [ast.Constant(True)])
        return node

    def _builtin(self, e: ir.Call, scope: ir.Scope) -> ast.expr:
        spec = BUILTINS[e.function]
        args = [self.expr(a, scope) for a in e.args]
        if e.function == "if":
            cond = self._truthy(args[0], e.args[0], scope)
            return ast.IfExp(cond, args[1], args[2])
        if not spec.null_safe and any(self._nullable(a, scope) for a in e.args):
            return self._call(self.bind(_null_propagating(spec.impl), spec.name), args)
        return self._call(self.bind(spec.impl, spec.name), args)


def _null_op(op: str) -> Callable[[Any, Any], Any]:
    fn = _PY_OPS[op]

    def apply(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return None
        return fn(a, b)

    return apply


def _null_not(a: Any) -> Any:
    return None if a is None else not a


def _null_neg(a: Any) -> Any:
    return None if a is None else -a


def _null_propagating(fn: Callable[..., Any]) -> Callable[..., Any]:
    def apply(*args: Any) -> Any:
        if any(a is None for a in args):
            return None
        return fn(*args)

    return apply


def _get_path(value: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _meta_getter(name: str) -> Callable[[Any], Any]:
    return lambda meta: getattr(meta, name, None) if meta is not None else None


#: a user function by import path, found beside the pipeline file `near` too; errors name the path
import_callable = load_callable


def compile_function(expr: ir.Expr, scope: ir.Scope, extra_args: tuple[str, ...] = ()) -> Callable[..., Any]:
    """A Python function `(k, v, ts, *extra_args, meta=None) -> value` for one expression."""
    compiler = ExprCompiler()
    return build_function("expression", [ast.Return(compiler.expr(expr, scope))], (*ARGS, *extra_args),
                          compiler.env)


def build_function(name: str, body: list[ast.stmt], params: tuple[str, ...], env: dict[str, Any]) -> Callable[..., Any]:
    """Compile a function from `ast` statements; `env` is its globals. `meta` defaults to None.

    Globals hold no builtins (user expressions reach only what is bound in `env`), except
    `Exception`, which the generated record loops catch to dead-letter a failing record.
    """
    args = [ast.arg(a) for a in params] + [ast.arg("meta")]
    fn = ast.FunctionDef(name, ast.arguments([], args, None, [], [], None, [ast.Constant(None)]), body, [], None, None)
    module = ast.fix_missing_locations(ast.Module([fn], []))
    code = compile(module, f"<dataflow {name}>", "exec")
    fn_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    return types.FunctionType(fn_code, {**env, "Exception": Exception}, name, (None,))
