"""Checking decoded values against declared record types: exact errors and normalization,
and the generated fast path agreeing with the general check on any value."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflow.ir.types import (ANY, BOOL, BYTES, FLOAT, INT, STR, TIMESTAMP, Field, ListType, OptionalType,
                               RecordType, Type)
from dataflow.runtime.records import validator

EVENT = RecordType("Event", (Field("id", INT), Field("user", STR), Field("amount", FLOAT),
                             Field("ts", TIMESTAMP), Field("note", OptionalType(STR)), Field("extra", ANY),
                             Field("tags", ListType(STR)),
                             Field("where", RecordType("Where", (Field("city", STR), Field("zip", OptionalType(INT)))))))


def outcome(check: Any, value: Any) -> tuple[str, Any]:
    try:
        return ("ok", check(value))
    except ValueError as e:
        return ("error", str(e))


def good() -> dict[str, Any]:
    return {"id": 1, "user": "u", "amount": 2, "ts": "1970-01-01T00:00:01Z", "note": None, "extra": [1],
            "tags": ["a"], "where": {"city": "Oslo"}}


@pytest.mark.parametrize(("change", "expected"), [
    ({}, ("ok", {"id": 1, "user": "u", "amount": 2, "ts": 1000, "note": None, "extra": [1], "tags": ["a"],
                 "where": {"city": "Oslo", "zip": None}})),
    ({"id": True}, ("error", "field 'id': expected an int, got a bool")),
    ({"id": True, "note": "n", "where": {"city": "Oslo", "zip": 1}}, ("error", "field 'id': expected an int, got a bool")),
    ({"amount": False, "note": "n", "where": {"city": "Oslo", "zip": 1}},
     ("error", "field 'amount': expected a number, got a bool")),
    ({"id": 1.5}, ("error", "field 'id': expected an int, got a number")),
    ({"amount": "3"}, ("error", "field 'amount': expected a number, got text")),
    ({"ts": "soon"}, ("error", "field 'ts': expected a timestamp (epoch ms or ISO-8601 text), got 'soon'")),
    ({"ts": "1700000000"}, ("error", "field 'ts': expected a timestamp (epoch ms or ISO-8601 text), got '1700000000', "
                                     "a number written as text: it looks like epoch seconds; a timestamp(s) field "
                                     "reads it written as a JSON number (no quotes), or convert it: to_int(...) * 1000")),
    ({"user": None}, ("error", "missing field 'user'")),
    ({"extra": None}, ("ok", None)),
    ({"tags": ["a", 3]}, ("error", "field 'tags': expected str, got an int")),
    ({"where": {"zip": 5}}, ("error", "missing field 'where.city'")),
    ({"where": {"city": "Oslo", "zip": "x"}}, ("error", "field 'where.zip': expected an int, got text")),
])
def test_errors_name_the_field_and_values_are_normalized(change: dict[str, Any], expected: tuple[str, Any]) -> None:
    value = {**good(), **change}
    result = outcome(validator(EVENT), value)
    if expected == ("ok", None):  # a null ANY field is kept as null
        assert result == ("ok", value)
    else:
        assert result == expected


def test_a_value_that_is_not_an_object() -> None:
    assert outcome(validator(EVENT), [1]) == ("error", "expected a Event object, got a list")


SIMPLE = st.sampled_from([STR, INT, FLOAT, BOOL, BYTES, TIMESTAMP, ANY])


def types(depth: int = 2) -> st.SearchStrategy[Type]:
    leaf = st.one_of(SIMPLE, SIMPLE.filter(lambda t: t != ANY).map(OptionalType),
                     SIMPLE.map(ListType))
    if depth == 0:
        return leaf
    return st.one_of(leaf, records(depth - 1), records(depth - 1).map(OptionalType))


def records(depth: int = 2) -> st.SearchStrategy[RecordType]:
    names = st.sampled_from(["a", "b", "c", "d-e", "f g"])
    return st.lists(st.tuples(names, types(depth)), max_size=4, unique_by=lambda f: f[0]).map(
        lambda fs: RecordType("R", tuple(Field(n, t) for n, t in fs)))


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
              st.text(max_size=4), st.sampled_from(["2026-11-21T09:00:00Z", "12"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["a", "b", "c", "d-e", "f g"]), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(record=records(), value=JSON)
def test_the_generated_check_agrees_with_the_general_one(record: RecordType, value: Any) -> None:
    fast = validator(record)
    assert fast is not None
    slow = fast.__globals__["slow"]  # the general check the generated one falls back to
    assert outcome(fast, copy.deepcopy(value)) == outcome(slow, copy.deepcopy(value))


def fitting(t: Type) -> st.SearchStrategy[Any]:
    """Values that (mostly) fit ``t``, so the fast path's success cases are exercised too."""
    if isinstance(t, OptionalType):
        return st.one_of(st.none(), fitting(t.inner))
    if isinstance(t, ListType):
        return st.lists(fitting(t.item), max_size=3)
    if isinstance(t, RecordType):
        return st.fixed_dictionaries({}, optional={f.name: st.one_of(fitting(f.type), JSON) for f in t.fields}) \
            if any(True for _ in t.fields) else st.just({})
    return {STR: st.text(max_size=3), INT: st.integers(), FLOAT: st.one_of(st.integers(), st.floats(allow_nan=False)),
            BOOL: st.booleans(), BYTES: st.text(max_size=3), ANY: JSON,
            TIMESTAMP: st.one_of(st.integers(0, 2**40), st.just("2026-11-21T09:00:00Z"))}[t]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), record=records())
def test_the_generated_check_agrees_on_values_that_mostly_fit(data: st.DataObject, record: RecordType) -> None:
    # every field but (sometimes) one fits, so a wrong type reaches the generated test
    near_miss = st.sampled_from([True, False, 0, 1.5, "x", None, [], {}])
    value = data.draw(st.fixed_dictionaries({f.name: fitting(f.type) for f in record.fields}))
    if record.fields and data.draw(st.booleans()):
        value[data.draw(st.sampled_from([f.name for f in record.fields]))] = data.draw(near_miss)
    fast = validator(record)
    assert fast is not None
    slow = fast.__globals__["slow"]
    assert outcome(fast, copy.deepcopy(value)) == outcome(slow, copy.deepcopy(value))
