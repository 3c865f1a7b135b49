"""A join condition compiled once into `(k, row, ts, meta) -> bool`.

The join calls it per candidate pair with the pair's joined row (see
`ir.join_condition`). Null counts as false, as in a filter: `amount > 10` with a null
amount does not match.

>>> from dataflow.ir.expr import Binary, FieldRef, Scope
>>> from dataflow.ir.types import Field, RecordType, STR
>>> row = RecordType("", (Field("imp_id", STR), Field("impressions_imp_id", STR)))
>>> same = compile_condition(Binary("==", FieldRef(("imp_id",)), FieldRef(("impressions_imp_id",))), Scope(STR, row))
>>> same("a1", {"imp_id": "i1", "impressions_imp_id": "i1"}, 0)
True
>>> same("a1", {"imp_id": "i1", "impressions_imp_id": "i2"}, 0)
False
"""
from __future__ import annotations

import ast
from typing import Any, Callable

from ..ir.expr import Expr, Scope
from .compile_expr import ARGS, ExprCompiler, build_function

__all__ = ["compile_condition"]


def compile_condition(condition: Expr, scope: Scope) -> Callable[..., Any]:
    """`condition` over the joined row `scope.value`, as a function returning True or a falsy value."""
    c = ExprCompiler()
    body = [ast.Return(c._truthy(c.expr(condition, scope), condition, scope))]
    return build_function("join_condition", body, ARGS, c.env)
