"""compile_function over every expression kind and every built-in, with null propagation."""
from __future__ import annotations

from pathlib import Path

import pytest

from dataflow import col, fn, key, lit, record, timestamp, udf, value
from dataflow.builder.expressions import expr_or_callable, to_expr
from dataflow.ir import expr as ir
from dataflow.ir.functions import BUILTINS
from dataflow.ir.types import ANY, BOOL, FLOAT, INT, STR, TIMESTAMP, Field, ListType, RecordType, optional
from dataflow.runtime.compile_expr import compile_function, import_callable
from dataflow.transport.base import Message

ADDRESS = RecordType("Address", (Field("city", STR), Field("zip", optional(STR))))
PERSON = RecordType("Person", (
    Field("name", STR),
    Field("nick", optional(STR)),
    Field("age", INT),
    Field("score", optional(FLOAT)),
    Field("amount", FLOAT),
    Field("vip", BOOL),
    Field("flag", optional(BOOL)),
    Field("tags", ListType(STR)),
    Field("ts", TIMESTAMP),
    Field("address", ADDRESS),
    Field("home", optional(ADDRESS)),
))
SCOPE = ir.Scope(STR, PERSON)


@pytest.fixture(autouse=True)
def _udf_module_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # for udf("udf_sample:...")
ANY_SCOPE = ir.Scope(ANY, ANY)

ALICE = {"name": "Alice", "nick": None, "age": 30, "score": None, "amount": 2.5, "vip": True, "flag": None,
         "tags": ["a", "b"], "ts": 90_000, "address": {"city": "Oslo", "zip": None}, "home": None}
BOB = {"name": "Bob", "nick": "bobby", "age": 0, "score": 4.0, "amount": -3.0, "vip": False, "flag": True,
       "tags": [], "ts": 3_600_000, "address": {"city": "Rome", "zip": "00100"},
       "home": {"city": "Bari", "zip": "70100"}}


def ev(e, v=ALICE, k="k1", ts=1234, scope=SCOPE, meta=None):
    f = compile_function(to_expr(e), scope)
    return f(k, v, ts, meta=meta)


# ---------------------------------------------------------------- expression kinds

def test_literals_of_every_type():
    for v in (1, 2.5, "x", True, False, None, b"by"):
        assert ev(lit(v)) == v


def test_field_refs_and_nested_fields():
    assert ev(col("name")) == "Alice"
    assert ev(col("address.city")) == "Oslo"
    assert ev(col("address.zip")) is None
    assert ev(col("home.city")) is None  # optional parent: null-safe walk
    assert ev(col("home.city"), BOB) == "Bari"


def test_fields_on_untyped_values_are_null_safe():
    assert ev(col("a.b.c"), {"a": {"b": {"c": 3}}}, scope=ANY_SCOPE) == 3
    assert ev(col("a.b.c"), {"a": {"b": None}}, scope=ANY_SCOPE) is None
    assert ev(col("a.b"), {"a": 5}, scope=ANY_SCOPE) is None
    assert ev(col("a"), "not a record", scope=ANY_SCOPE) is None


def test_meta_key_value_timestamp():
    assert ev(key(), k="the-key") == "the-key"
    assert ev(value(), v=7, scope=ir.Scope(STR, INT)) == 7
    assert ev(timestamp(), ts=99) == 99
    assert ev(col("_key"), k="kk") == "kk"
    assert ev(col("_timestamp") + 1, ts=5) == 6


def test_meta_partition_offset_topic_from_the_source_message():
    m = Message("orders", 3, 41, None, b"{}", 0)
    assert ev(col("_partition"), meta=m) == 3
    assert ev(col("_offset"), meta=m) == 41
    assert ev(col("_topic"), meta=m) == "orders"
    assert ev(col("_topic"), meta=None) is None  # records made inside the pipeline have no source


@pytest.mark.parametrize("expr, expected", [
    (col("age") + 1, 31), (col("age") - 1, 29), (col("age") * 2, 60), (col("age") / 4, 7.5),
    (col("age") % 7, 2), (col("age") == 30, True), (col("age") != 30, False), (col("age") < 31, True),
    (col("age") <= 30, True), (col("age") > 30, False), (col("age") >= 30, True),
    (col("name") + "!", "Alice!"), (-col("age"), -30), (~col("vip"), False),
    (col("vip") & (col("age") > 1), True), (col("vip") | lit(False), True), (~col("vip") | lit(False), False),
    (col("nick").is_null(), True), (col("name").is_not_null(), True), (col("nick").is_not_null(), False),
    (30 - col("age"), 0), (2 * col("amount"), 5.0), (10 / col("age"), 10 / 30),
])
def test_operators(expr, expected):
    assert ev(expr) == expected


@pytest.mark.parametrize("expr", [
    col("score") + 1, col("score") - 1, col("score") * 2, col("score") / 2, col("score") % 2,
    col("score") > 1, col("score") >= 1, col("score") < 1, col("score") <= 1, -col("score"), ~col("flag"),
    col("home.city") + "x",
])
def test_null_propagates_through_operators(expr):
    assert ev(expr) is None


def test_null_equality_and_conditions():
    assert ev(col("nick") == lit(None)) is True
    assert ev(col("nick") == "bobby", BOB) is True
    assert ev(col("nick") == "bobby") is False
    # null counts as false in and/or, as in SQL's WHERE
    assert ev((col("score") > 1) & col("vip")) is False
    assert ev((col("score") > 1) | col("vip")) is True
    assert ev((col("score") > 1) | (col("age") > 99)) is False
    assert ev((col("score") > 1) & col("vip"), BOB) is False  # vip false
    assert ev(col("flag") & col("vip")) is False
    assert ev(col("flag") | col("vip"), BOB) is True


def test_record_and_list_construction():
    assert ev(record(who=col("name"), old=col("age") > 40, city=col("address.city"))) == \
        {"who": "Alice", "old": False, "city": "Oslo"}
    assert ev({"n": col("name"), "nested": {"x": lit(1)}}) == {"n": "Alice", "nested": {"x": 1}}
    assert ev(to_expr([col("age"), lit(1), col("score")])) == [30, 1, None]


def test_if_is_lazy_and_null_condition_is_false():
    safe = fn.if_(col("age") == 0, lit(0.0), 100 / col("age"))
    assert ev(safe, BOB) == 0.0  # the division is never evaluated
    assert ev(safe) == 100 / 30
    assert ev(fn.if_(col("score") > 1, "big", "small")) == "small"  # null condition
    assert ev(fn.if_(col("score") > 1, "big", "small"), BOB) == "big"
    assert ev(fn.if_(col("vip"), col("nick"), "x")) is None


def test_udf_by_import_path():
    assert ev(udf("udf_sample:risk", col("amount"), "XX")) == 5.0
    assert ev(udf("udf_sample:risk", col("amount"), "NO")) == 2.5
    assert ev(udf("udf_sample:Scoring.double", col("age"))) == 60
    assert import_callable("udf_sample:risk")(1.0, "XX") == 2.0


@pytest.mark.parametrize("path, message", [
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz' for udf \"no_such_module_xyz:f\""),
    ("udf_sample:missing", "module 'udf_sample' has no 'missing' (udf \"udf_sample:missing\")"),
    ("udf_sample:NOT_CALLABLE", "udf \"udf_sample:NOT_CALLABLE\" is not callable"),
])
def test_udf_import_errors_name_the_path(path, message):
    with pytest.raises(ImportError) as info:
        ev(udf(path, col("age")))
    assert message in str(info.value)


def test_python_callables_get_the_whole_value():
    seen = []

    def f(v):
        seen.append(v)
        return v["age"] + 1

    assert ev(expr_or_callable(f)) == 31
    assert seen == [ALICE]
    assert ev(expr_or_callable(lambda v: v.upper()), "abc", scope=ir.Scope(STR, STR)) == "ABC"


def test_unknown_node_kind_is_rejected():
    with pytest.raises(TypeError, match="cannot compile"):
        compile_function(object(), SCOPE)  # type: ignore[arg-type]


def test_user_text_is_never_evaluated():
    # A string literal that looks like code stays a string.
    assert ev(lit("__import__('os').system('false')")) == "__import__('os').system('false')"
    assert ev(col("__class__"), {"__class__": 1}, scope=ANY_SCOPE) == 1


# ---------------------------------------------------------------- built-ins

# (call, value, expected): every built-in, with typed arguments
BUILTIN_CASES = [
    (fn.lower(col("name")), ALICE, "alice"),
    (fn.upper(col("name")), ALICE, "ALICE"),
    (fn.trim(lit("  a ")), ALICE, "a"),
    (fn.length(col("name")), ALICE, 5),
    (fn.length(col("tags")), ALICE, 2),
    (fn.concat(col("name"), "-", col("age"), col("vip"), col("nick")), ALICE, "Alice-30true"),
    (fn.substr(lit("dataflow"), 4, 4), ALICE, "flow"),
    (fn.substr(lit("dataflow"), 4), ALICE, "flow"),
    (fn.replace(lit("a-b-c"), "-", "+"), ALICE, "a+b+c"),
    (fn.split(lit("a b  c")), ALICE, ["a", "b", "c"]),
    (fn.split(lit("a,b"), ","), ALICE, ["a", "b"]),
    (fn.starts_with(col("name"), "Al"), ALICE, True),
    (fn.ends_with(col("name"), "ce"), ALICE, True),
    (fn.contains(col("tags"), "b"), ALICE, True),
    (fn.contains(col("name"), "lic"), ALICE, True),
    (fn.to_str(col("vip")), ALICE, "true"),
    (fn.to_str(col("age")), ALICE, "30"),
    (fn.abs(col("amount")), BOB, 3.0),
    (fn.round(lit(2.567), 2), ALICE, 2.57),
    (fn.round(lit(2.5)), ALICE, 2),
    (fn.floor(lit(2.7)), ALICE, 2),
    (fn.ceil(lit(2.1)), ALICE, 3),
    (fn.sqrt(lit(9)), ALICE, 3.0),
    (fn.pow(lit(2), 10), ALICE, 1024),
    (fn.least(lit(3), col("age"), lit(1)), ALICE, 1),
    (fn.greatest(lit(3), col("age"), lit(1)), ALICE, 30),
    (fn.to_int(lit("42")), ALICE, 42),
    (fn.to_int(lit("4.9")), ALICE, 4),
    (fn.to_float(lit("2.5")), ALICE, 2.5),
    (fn.coalesce(col("nick"), col("name")), ALICE, "Alice"),
    (fn.coalesce(col("nick"), col("name")), BOB, "bobby"),
    (fn.if_(col("vip"), "y", "n"), ALICE, "y"),
    (fn.parse_time(lit("2024-01-01T00:00:00Z")), ALICE, 1704067200000),
    (fn.parse_time(lit("2024-01-01T01:00:00+01:00")), ALICE, 1704067200000),
    (fn.format_time(lit(0), "%Y-%m-%d"), ALICE, "1970-01-01"),
    (fn.format_time(lit(1500)), ALICE, "1970-01-01T00:00:01.500000Z"),
    (fn.year(col("ts")), ALICE, 1970),
    (fn.month(col("ts")), ALICE, 1),
    (fn.day(col("ts")), ALICE, 1),
    (fn.hour(col("ts")), BOB, 1),
    (fn.minute(col("ts")), ALICE, 1),
    (fn.truncate_time(col("ts"), 60_000), ALICE, 60_000),
]


@pytest.mark.parametrize("call, v, expected", BUILTIN_CASES, ids=lambda x: getattr(x, "__repr__")()[:40])
def test_builtin(call, v, expected):
    assert ev(call, v) == expected


def test_every_builtin_is_covered():
    covered = {c.expr.function for c, _, _ in BUILTIN_CASES} | {"now"}
    assert covered == set(BUILTINS)


def test_now_is_the_wall_clock_in_ms():
    import time

    before = int(time.time() * 1000)
    got = ev(fn.now())
    assert before <= got <= int(time.time() * 1000)


@pytest.mark.parametrize("call", [
    fn.lower(col("nick")), fn.upper(col("nick")), fn.trim(col("nick")), fn.length(col("nick")),
    fn.substr(col("nick"), 1), fn.replace(col("nick"), "a", "b"), fn.split(col("nick")),
    fn.starts_with(col("nick"), "b"), fn.ends_with(col("nick"), "b"), fn.contains(col("nick"), "b"),
    fn.to_str(col("nick")), fn.abs(col("score")), fn.round(col("score")), fn.floor(col("score")),
    fn.ceil(col("score")), fn.sqrt(col("score")), fn.pow(col("score"), 2), fn.least(col("score"), 1),
    fn.greatest(col("score"), 1), fn.to_int(col("score")), fn.to_float(col("score")),
    fn.parse_time(col("nick")), fn.format_time(col("score")), fn.year(col("score")),
    fn.truncate_time(col("score"), 1000), fn.upper(col("home.city")),
])
def test_null_propagates_through_builtins(call):
    assert ev(call) is None


def test_null_safe_builtins_see_nulls():
    assert ev(fn.concat(col("nick"), "x")) == "x"
    assert ev(fn.coalesce(col("nick"), col("home.city"))) is None
    assert ev(fn.coalesce(col("nick"), col("home.city"), "z")) == "z"


def test_a_builtin_that_raises_propagates_to_the_caller():
    # The engine catches it and dead-letters the record; compile_function does not hide it.
    with pytest.raises(ValueError):
        ev(fn.to_int(lit("abc")))


# Regression: nullability used to follow declared types only, and `score > 1` or
# `lower(nick)` are typed bool / str even when their operands are null. So
# `not (score > 1)` was True (a filter kept the record), `upper(lower(nick))` raised
# (the record was dead-lettered) and `length(nick) > 3` raised too.
@pytest.mark.parametrize("expr", [
    ~(col("score") > 1),
    fn.upper(fn.lower(col("nick"))),
    fn.length(col("nick")) > 3,
    -(col("score") * 2),
    fn.abs(col("score") - 1) + 1,
    fn.if_(col("vip"), fn.lower(col("nick")), "x"),
])
def test_null_propagates_through_nested_expressions(expr):
    assert ev(expr) is None


def test_nested_expressions_with_values_are_unchanged():
    assert ev(~(col("score") > 1), BOB) is False
    assert ev(fn.upper(fn.lower(col("nick"))), BOB) == "BOBBY"
    assert ev(fn.length(col("nick")) > 3, BOB) is True
    assert ev((col("score") > 1) & col("vip")) is False  # null and x: false, not null
