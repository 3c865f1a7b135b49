"""Incremental aggregation functions, compiled once per aggregate step.

A table row of an aggregate holds one *accumulator* per output field (a JSON value, so it
can go to the store and the changelog as is); each event folds into the accumulators,
and :meth:`Aggregator.result` turns them into the row users see.

========  ===================  ==========================================
function  accumulator          result
========  ===================  ==========================================
count     int                  the number of events
sum       number               the sum of the non-null values (0 if none)
min/max   value or null        the smallest/largest non-null value
avg       [sum, count]         sum / count of the non-null values, or null
collect   list                 every value, in arrival order
set       sorted list          the distinct non-null values, sorted
latest    value                the last value seen
reduce    value                ``reducer(acc, value)``; starts at ``initial``,
                               or at the first value when ``initial`` is null
========  ===================  ==========================================

>>> from dataflow.ir.expr import FieldRef, Scope
>>> from dataflow.ir.nodes import Aggregation
>>> aggs = (Aggregation("n", "count"), Aggregation("avg", "avg", FieldRef(("x",))))
>>> from dataflow.ir.types import ANY
>>> a = Aggregator(aggs, Scope(ANY, ANY))
>>> acc = a.initial()
>>> for v in ({"x": 2}, {"x": 4}, {"x": None}): acc = a.add(acc, None, v, 0)
>>> a.result(acc)
{'n': 3, 'avg': 3.0}
"""
from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from ..ir.expr import Scope
from ..ir.nodes import Aggregation
from .compile_expr import compile_function, import_callable

__all__ = ["Aggregator"]


def _count(acc: Any, x: Any) -> Any:
    return acc + 1


def _sum(acc: Any, x: Any) -> Any:
    return acc if x is None else acc + x


def _min(acc: Any, x: Any) -> Any:
    return acc if x is None else x if acc is None or x < acc else acc


def _max(acc: Any, x: Any) -> Any:
    return acc if x is None else x if acc is None or x > acc else acc


def _avg(acc: Any, x: Any) -> Any:
    if x is not None:
        acc[0] += x
        acc[1] += 1
    return acc


def _collect(acc: Any, x: Any) -> Any:
    acc.append(x)
    return acc


def _set(acc: Any, x: Any) -> Any:
    if x is None:
        return acc
    i = bisect.bisect_left(acc, x)
    if i == len(acc) or acc[i] != x:
        acc.insert(i, x)
    return acc


def _latest(acc: Any, x: Any) -> Any:
    return x


def _identity(acc: Any) -> Any:
    return acc


def _copy(acc: Any) -> Any:
    return list(acc)  # results must not alias an accumulator that later events mutate


def _avg_result(acc: Any) -> Any:
    return acc[0] / acc[1] if acc[1] else None


_FUNCTIONS: dict[str, tuple[Callable[[], Any], Callable[[Any, Any], Any], Callable[[Any], Any]]] = {
    "count": (lambda: 0, _count, _identity),
    "sum": (lambda: 0, _sum, _identity),
    "min": (lambda: None, _min, _identity),
    "max": (lambda: None, _max, _identity),
    "avg": (lambda: [0, 0], _avg, _avg_result),
    "collect": (list, _collect, _copy),
    "set": (list, _set, _copy),
    "latest": (lambda: None, _latest, _identity),
}


def _reducer(aggregation: Aggregation, near: str | None = None,
             ) -> tuple[Callable[[], Any], Callable[[Any, Any], Any], Callable[[Any], Any]]:
    func = aggregation.reducer_func or import_callable(aggregation.reducer or "", near)
    initial = aggregation.initial
    if initial is None:
        # [started, acc]: the first value seeds the accumulator (so a reducer needs no identity).
        def add(acc: Any, x: Any) -> Any:
            return [True, func(acc[1], x)] if acc[0] else [True, x]
        return lambda: [False, None], add, lambda acc: acc[1]
    return lambda: initial, func, _identity


class Aggregator:
    """Folds events into the accumulators of one aggregate's output fields."""

    def __init__(self, aggregations: tuple[Aggregation, ...], scope: Scope, near: str | None = None) -> None:
        """`near`: the pipeline file, beside which reducers named by import path are found too."""
        self.names = tuple(a.output for a in aggregations)
        parts = [_reducer(a, near) if a.function == "reduce" else _FUNCTIONS[a.function] for a in aggregations]
        self._inits = [p[0] for p in parts]
        self._results = [p[2] for p in parts]
        folds: list[tuple[Callable[..., Any] | None, Callable[[Any, Any], Any]]] = []
        for a, part in zip(aggregations, parts):
            arg = None if a.function == "count" or a.arg is None else compile_function(a.arg, scope)
            folds.append((arg, part[1]))
        self._folds = folds

    def initial(self) -> list[Any]:
        return [init() for init in self._inits]

    def add(self, acc: list[Any], k: Any, v: Any, ts: int, meta: Any = None) -> list[Any]:
        """Fold one event in (mutating and returning ``acc``)."""
        for i, (arg, fold) in enumerate(self._folds):
            acc[i] = fold(acc[i], None if arg is None else arg(k, v, ts, meta))
        return acc

    def args(self, k: Any, v: Any, ts: int, meta: Any = None) -> list[Any]:
        """The argument values of one event (what a sliding window buffers)."""
        return [None if arg is None else arg(k, v, ts, meta) for arg, _ in self._folds]

    def add_args(self, acc: list[Any], args: list[Any]) -> list[Any]:
        for i, (_, fold) in enumerate(self._folds):
            acc[i] = fold(acc[i], args[i])
        return acc

    def result(self, acc: list[Any]) -> dict[str, Any]:
        return {name: result(a) for name, result, a in zip(self.names, self._results, acc)}
