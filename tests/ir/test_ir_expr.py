"""ir.expr: the type of every expression kind, the errors, and the canonical text."""
from __future__ import annotations

import pytest

from dataflow.ir.expr import (Binary, Call, ExprTypeError, FieldRef, IsNull, Literal, MakeList, MakeRecord, Meta,
                              PyCall, Scope, Udf, Unary, field_paths, infer, render, uses_key, walk)
from dataflow.ir.location import SourceLocation
from dataflow.ir.types import (ANY, BOOL, BYTES, FLOAT, INT, NULL, STR, TIMESTAMP, Field, ListType, OptionalType,
                               RecordType)

ADDRESS = RecordType("Address", (Field("city", STR), Field("zip", OptionalType(STR))))
ORDER = RecordType("Order", (
    Field("id", STR),
    Field("amount", FLOAT),
    Field("qty", INT),
    Field("paid", BOOL),
    Field("ts", TIMESTAMP),
    Field("note", OptionalType(STR)),
    Field("tags", ListType(STR)),
    Field("ship_to", ADDRESS),
    Field("bill_to", OptionalType(ADDRESS)),
    Field("extra", ANY),
))
SCOPE = Scope(INT, ORDER)


def f(*path: str, loc: SourceLocation | None = None) -> FieldRef:
    return FieldRef(tuple(path), loc=loc)


@pytest.mark.parametrize("expr, result", [
    (Literal(1), INT), (Literal(1.5), FLOAT), (Literal("a"), STR), (Literal(True), BOOL), (Literal(None), NULL),
    (Literal(b"x"), BYTES), (Literal(60_000, duration=True), INT),
    (Meta("key"), INT), (Meta("value"), ORDER), (Meta("timestamp"), TIMESTAMP), (Meta("partition"), INT),
    (Meta("offset"), INT), (Meta("topic"), STR),
    (f("amount"), FLOAT), (f("ship_to"), ADDRESS),
    (f("ship_to", "city"), STR),                        # nested
    (f("ship_to", "zip"), OptionalType(STR)),
    (f("bill_to", "city"), OptionalType(STR)),          # through an optional record: optional
    (f("extra", "anything", "deeper"), ANY),            # any lets every path through
    (Unary("-", f("qty")), INT), (Unary("not", f("paid")), BOOL), (Unary("not", f("extra")), BOOL),
    (Binary("+", f("qty"), Literal(1)), INT), (Binary("+", f("qty"), f("amount")), FLOAT),
    (Binary("/", f("qty"), Literal(2)), FLOAT), (Binary("%", f("qty"), Literal(2)), INT),
    (Binary("+", f("id"), Literal("-x")), STR),
    (Binary("-", f("ts"), f("ts")), INT), (Binary("+", f("ts"), Literal(1000)), TIMESTAMP),
    (Binary("*", f("extra"), Literal(2)), ANY),
    (Binary("+", f("bill_to", "zip"), Literal("x")), OptionalType(STR)),  # null + "x" is null
    (Binary(">", f("amount"), Literal(1000)), BOOL), (Binary("<", f("id"), Literal("m")), BOOL),
    (Binary(">=", f("ts"), Literal(0)), BOOL),
    (Binary("==", f("note"), Literal(None)), BOOL), (Binary("!=", f("qty"), Literal(1.5)), BOOL),
    (Binary("and", f("paid"), Binary("or", f("paid"), Literal(False))), BOOL),
    (IsNull(f("note")), BOOL), (IsNull(f("note"), negated=True), BOOL),
    (Call("upper", (f("id"),)), STR),
    (Udf("pkg.mod:score", (f("amount"),), FLOAT), FLOAT), (Udf("pkg.mod:score", ()), ANY),
    (MakeRecord((("a", f("qty")), ("b", f("ship_to", "city")))),
     RecordType("", (Field("a", INT), Field("b", STR)))),
    (MakeRecord((("a", f("qty")),), name="Named"), RecordType("Named", (Field("a", INT),))),
    (MakeList((Literal(1), Literal(2.5))), ListType(FLOAT)), (MakeList(()), ListType(ANY)),
    (MakeList((Literal(None), Literal("a"))), ListType(OptionalType(STR))),
    (PyCall("m:f", print, STR), STR), (PyCall("m:f", print), ANY),
])
def test_infer(expr, result):
    assert infer(expr, SCOPE) == result


AT = SourceLocation("p.flow", 4, 9)


@pytest.mark.parametrize("expr, message, hint, loc", [
    (FieldRef(("amout",), loc=AT), "unknown field 'amout' in Order", "did you mean 'amount'?", AT),
    (FieldRef(("ship_to", "cty"), loc=AT), "unknown field 'cty' in ship_to", "did you mean 'city'?", AT),
    (FieldRef(("zzzz",)), "unknown field 'zzzz' in Order",
     "fields are: id, amount, qty, paid, ts, note, tags, ship_to, bill_to, extra", None),
    (FieldRef(("id", "x")), "id is of type str, which has no field 'x'", "", None),
    (Binary(">", f("id"), Literal(1), loc=AT), "cannot compare str with int using '>'", "", AT),
    (Binary("==", f("id"), Literal(1)), "cannot compare str with int using '=='", "", None),
    (Binary("+", f("id"), f("qty")), "operator '+' needs numbers, got str", "use concat() to join strings with other values", None),
    (Binary("*", f("qty"), Literal("a", loc=AT)), "operator '*' needs numbers, got str", "", AT),
    (Binary("and", f("paid"), f("qty", loc=AT)), "'and' needs a bool, got int", "", AT),
    (Unary("not", f("qty", loc=AT)), "'not' needs a bool, got int", "", AT),
    (Unary("-", f("id", loc=AT)), "cannot negate a value of type str", "", AT),
    (MakeRecord((("a", f("qty")), ("a", f("id", loc=AT)))), "field 'a' is given twice", "", AT),
    (MakeList((Literal(1), Literal("a", loc=AT))), "list items have different types", "", AT),
    (Binary("^", f("qty"), Literal(1), loc=AT), "unknown operator '^'", "", AT),
])
def test_infer_errors(expr, message, hint, loc):
    with pytest.raises(ExprTypeError) as e:
        infer(expr, SCOPE)
    assert (e.value.message, e.value.hint, e.value.loc) == (message, hint, loc)


def test_fields_of_a_non_record_value():
    with pytest.raises(ExprTypeError, match="the value is of type str, which has no field 'word'"):
        infer(f("word"), Scope(STR, STR))


def test_an_anonymous_record_names_its_fields_in_messages():
    value = RecordType("", (Field("total", FLOAT),))
    with pytest.raises(ExprTypeError) as e:
        infer(f("totl"), Scope(STR, value))
    assert (e.value.message, e.value.hint) == ("unknown field 'totl' in { total: float }", "did you mean 'total'?")


def test_locations_never_take_part_in_equality():
    assert FieldRef(("a",), loc=AT) == FieldRef(("a",))
    assert hash(Binary(">", f("a"), Literal(1), loc=AT)) == hash(Binary(">", f("a"), Literal(1)))


def test_walk_field_paths_uses_key():
    e = Binary("and", Binary(">", f("a", "b"), Literal(1)), IsNull(Meta("key")))
    assert [type(x).__name__ for x in walk(e)] == ["Binary", "Binary", "FieldRef", "Literal", "IsNull", "Meta"]
    assert field_paths(e) == {("a", "b")}
    assert uses_key(e) and uses_key(Meta("partition")) and not uses_key(f("a"))


@pytest.mark.parametrize("expr, text", [
    (Literal(None), "null"), (Literal(True), "true"), (Literal("a\"b"), '"a\\"b"'), (Literal(1.5), "1.5"),
    (Literal(90_000, duration=True), "90s"), (Literal(b"ab"), 'bytes("ab")'),
    (Meta("key"), "_key"), (f("a", "b"), "a.b"),
    (Binary("*", Binary("+", f("a"), Literal(1)), Literal(2)), "(a + 1) * 2"),
    (Binary("-", f("a"), Binary("-", f("b"), f("c"))), "a - (b - c)"),
    (Binary("-", Binary("-", f("a"), f("b")), f("c")), "a - b - c"),
    (Binary("or", Binary("and", f("a"), f("b")), f("c")), "a and b or c"),
    (Binary("and", Binary("or", f("a"), f("b")), f("c")), "(a or b) and c"),
    (Unary("-", Binary("+", f("a"), f("b"))), "-(a + b)"), (Unary("not", f("a")), "not a"),
    (IsNull(f("a"), negated=True), "a is not null"),
    (Call("concat", (f("a"), Literal("-"))), 'concat(a, "-")'),
    (Udf("pkg:f", (f("a"),)), 'udf("pkg:f", a)'), (Udf("pkg:f", ()), 'udf("pkg:f")'),
    (MakeRecord((("x", f("a")),), name="Out"), "Out { x: a }"), (MakeList((Literal(1), Literal(2))), "[1, 2]"),
    (PyCall("mod:fn", print), "python(mod:fn)"),
])
def test_render(expr, text):
    assert render(expr) == text
