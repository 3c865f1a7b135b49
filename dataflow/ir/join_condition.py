"""The planner's checks of a join condition (`on a = b and <condition>`).

A join condition decides, for each pair of records that the keys (and `within`) would
join, whether the pair matches. It reads the pair's joined row, exactly as the join emits
it for a match: the left fields, then the right ones, a right-hand field whose name clashes
with a left one prefixed with the right input's name (`impressions_imp_id`). Both sides
are present in a pair, so a left join's right-hand fields are not null there.

>>> from .expr import Binary, FieldRef
>>> from .types import Field, RecordType, STR
>>> row = RecordType("", (Field("imp_id", STR), Field("impressions_imp_id", STR)))
>>> errors = []
>>> same = Binary("==", FieldRef(("imp_id",)), FieldRef(("imp_id",)))
>>> check_condition(same, Scope(STR, row), "impressions", errors, UNKNOWN)
>>> errors[0].message
"the join condition compares 'imp_id' with itself, so it is always true"
>>> errors[0].hint
"the right input's 'imp_id' is called 'impressions_imp_id' in the joined row"
"""
from __future__ import annotations

from .diagnostics import Diagnostic
from .expr import Binary, Expr, ExprTypeError, FieldRef, Meta, Scope, infer, render, walk
from .functions import suggest
from .location import UNKNOWN, SourceLocation
from .types import ANY, BOOL, RecordType, strip_optional

__all__ = ["check_condition"]

WHAT = "a join condition is true for the pairs of records that match"
ORDER_DEPENDENT = ("partition", "offset", "topic")
ALWAYS = {"==": "true", "<=": "true", ">=": "true", "!=": "false", "<": "false", ">": "false"}


def check_condition(condition: Expr, scope: Scope, prefix: str, errors: list[Diagnostic],
                    loc: SourceLocation) -> None:
    """Append what is wrong with `condition` over the pair's joined row (`scope.value`) to `errors`.

    `prefix` is the join's `right_prefix`, to name a clashing right-hand field in hints.
    """
    found = len(errors)
    row = scope.value if isinstance(scope.value, RecordType) else None
    for e in walk(condition):
        where = e.loc or loc  # type: ignore[attr-defined]
        if isinstance(e, Meta) and e.name in ORDER_DEPENDENT:
            # A joined row has two origins; the one a record arrived with depends on consumption order.
            errors.append(Diagnostic(f"a join condition cannot read _{e.name}: a joined row comes from two records",
                                     where, "compare fields of the two sides instead", rule="join"))
        elif isinstance(e, FieldRef) and row is not None and row.field(e.path[0]) is None:
            hint = suggest(e.path[0], row.field_names)
            errors.append(Diagnostic(
                f"unknown field '{e.path[0]}' in the joined row", where,
                f"did you mean '{hint}'?" if hint else
                f"the condition reads the joined row: {', '.join(row.field_names) or 'no fields'}", rule="type"))
        elif isinstance(e, Binary) and e.op in ALWAYS and e.left == e.right and isinstance(e.left, (FieldRef, Meta)):
            errors.append(Diagnostic(
                f"the join condition compares '{render(e.left)}' with itself, so it is always {ALWAYS[e.op]}",
                where, _self_hint(e.left, row, prefix), rule="join"))
    if len(errors) > found:
        return
    try:
        t = infer(condition, scope)
    except ExprTypeError as e:
        errors.append(Diagnostic(e.message, e.loc or loc, e.hint, rule="type"))
        return
    if strip_optional(t) not in (BOOL, ANY):
        errors.append(Diagnostic(f"the join condition must be a bool, got {t}", getattr(condition, "loc", None) or loc,
                                 f"{WHAT}: compare fields of the two sides, e.g. imp_id == impressions_imp_id",
                                 rule="type"))


def _self_hint(side: Expr, row: RecordType | None, prefix: str) -> str:
    if isinstance(side, FieldRef) and row is not None and row.field(f"{prefix}_{side.path[0]}") is not None:
        return f"the right input's '{side.path[0]}' is called '{prefix}_{side.path[0]}' in the joined row"
    return "a right-hand field whose name clashes with a left one is prefixed with the right input's name"
