"""ir.types: what fits where, unification, and Python annotations."""
from __future__ import annotations

import datetime
import typing

import pytest

from dataflow import Record
from dataflow.ir.types import (ANY, BOOL, BYTES, FLOAT, INT, NULL, STR, TIMESTAMP, Field, ListType, OptionalType,
                               RecordType, from_python, is_assignable, is_numeric, optional, strip_optional,
                               to_json, unify)

POINT = RecordType("Point", (Field("x", INT), Field("y", INT)))
POINT3 = RecordType("Point3", (Field("x", INT), Field("y", INT), Field("z", FLOAT)))
LABELLED = RecordType("Labelled", (Field("x", INT), Field("label", OptionalType(STR))))


@pytest.mark.parametrize("value, target, ok", [
    (INT, INT, True),
    (INT, FLOAT, True),          # widening
    (FLOAT, INT, False),
    (INT, TIMESTAMP, True),      # epoch milliseconds
    (TIMESTAMP, INT, False),
    (STR, INT, False),
    (ANY, INT, True),
    (STR, ANY, True),
    (NULL, OptionalType(STR), True),
    (STR, OptionalType(STR), True),
    (OptionalType(STR), STR, False),  # a maybe-null value does not fit a non-null slot
    (OptionalType(INT), OptionalType(FLOAT), True),
    (NULL, STR, False),
    (ListType(INT), ListType(FLOAT), True),
    (ListType(STR), ListType(INT), False),
    (ListType(INT), INT, False),
    (POINT3, POINT, True),       # extra fields are fine
    (POINT, POINT3, False),      # a missing required field is not
    (POINT, LABELLED, True),     # a missing optional field is
    (RecordType("P", (Field("x", STR), Field("y", INT))), POINT, False),
    (BOOL, BYTES, False),
])
def test_is_assignable(value, target, ok):
    assert is_assignable(value, target) is ok


@pytest.mark.parametrize("a, b, result", [
    (INT, INT, INT),
    (INT, FLOAT, FLOAT),
    (FLOAT, INT, FLOAT),
    (ANY, STR, ANY),
    (NULL, STR, OptionalType(STR)),
    (STR, NULL, OptionalType(STR)),
    (NULL, ANY, ANY),
    (OptionalType(INT), INT, OptionalType(INT)),
    (OptionalType(INT), FLOAT, OptionalType(FLOAT)),
    (INT, TIMESTAMP, TIMESTAMP),
    (STR, INT, None),
    (ListType(INT), ListType(STR), None),
    (POINT3, POINT, POINT),
])
def test_unify(a, b, result):
    assert unify(a, b) == result


def test_optional_helpers():
    assert optional(STR) == OptionalType(STR)
    assert optional(OptionalType(STR)) == OptionalType(STR)
    assert optional(ANY) == ANY and optional(NULL) == NULL
    assert strip_optional(OptionalType(INT)) == INT and strip_optional(INT) == INT
    assert [is_numeric(t) for t in (INT, FLOAT, TIMESTAMP, ANY, OptionalType(INT), STR, BOOL)] == \
        [True, True, True, True, True, False, False]


class Address(Record):
    city: str
    zip: str | None


class Customer(Record):
    name: str
    tags: list[str]
    address: Address
    joined: datetime.datetime


@pytest.mark.parametrize("annotation, result", [
    (str, STR), (int, INT), (float, FLOAT), (bool, BOOL), (bytes, BYTES), (datetime.datetime, TIMESTAMP),
    (typing.Any, ANY), (object, ANY), (None, ANY), (type(None), NULL), ("int", INT), ("timestamp", TIMESTAMP),
    (list[str], ListType(STR)), (tuple[int, ...], ListType(INT)), (set[float], ListType(FLOAT)),
    (typing.List, ListType(ANY)), (str | None, OptionalType(STR)), (typing.Optional[int], OptionalType(INT)),
    (int | str, ANY), (INT, INT),
])
def test_from_python(annotation, result):
    assert from_python(annotation) == result


def test_from_python_reads_record_classes():
    schema = from_python(Customer)
    assert schema.describe() == "Customer { name: str, tags: list<str>, address: Address, joined: timestamp }"
    assert schema.field("address").type.describe() == "Address { city: str, zip: optional str }"
    assert schema.field("nope") is None
    assert schema.field_names == ("name", "tags", "address", "joined")


def test_from_python_rejects_what_it_cannot_type():
    with pytest.raises(TypeError, match=r"cannot use <class 'dict'> as a dataflow type; use str, int"):
        from_python(dict)


def test_render():
    assert [str(t) for t in (INT, OptionalType(STR), ListType(OptionalType(INT)), POINT)] == \
        ["int", "optional str", "list<optional int>", "Point"]


def test_an_anonymous_record_renders_its_fields():
    """Records made by map/aggregate/join have no name; messages must still say what they hold."""
    anonymous = RecordType("", (Field("x", FLOAT), Field("tags", ListType(STR))))
    assert str(anonymous) == "{ x: float, tags: list<str> }"
    assert str(RecordType("", ())) == "{ }"


def test_to_json():
    assert to_json(OptionalType(ListType(INT))) == {"optional": {"list": "int"}}
    assert to_json(POINT) == {"record": "Point", "fields": {"x": "int", "y": "int"}}


def test_records_round_trip_through_dicts():
    c = Customer(name="ada", tags=["a"], address=Address(city="x", zip=None), joined=datetime.datetime(2024, 1, 1))
    data = c.to_dict()
    assert data == {"name": "ada", "tags": ["a"], "address": {"city": "x", "zip": None},
                    "joined": datetime.datetime(2024, 1, 1)}
    assert Address.from_dict({"city": "y", "zip": "1", "extra": 1}) == Address(city="y", zip="1")
