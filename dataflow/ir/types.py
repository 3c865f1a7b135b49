"""Value types and record schemas, with the rules that decide what fits where."""
from __future__ import annotations

import datetime
import typing
from dataclasses import dataclass, field


class Type:
    """Base of all dataflow types. Instances are frozen and compare by value."""

    def render(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render()


#: the units a timestamp can be written in on a topic, and milliseconds per unit
TIMESTAMP_UNITS = {"s": 1000, "ms": 1, "us": 0.001, "ns": 0.000001}


@dataclass(frozen=True)
class Primitive(Type):
    """`str`, `int`, `float`, `bool`, `bytes`, `timestamp`, `null` or `any`.

    A timestamp has a `unit`: how its numbers are written on a topic (`timestamp(s)` holds
    epoch seconds). Inside a pipeline every timestamp is epoch milliseconds, so the unit
    takes no part in equality: `timestamp(s)` fits wherever `timestamp` does.

    >>> timestamp_type("s").render(), timestamp_type("s") == TIMESTAMP, timestamp_type("ms").render()
    ('timestamp(s)', True, 'timestamp')
    """

    name: str
    unit: str | None = field(default=None, compare=False, repr=False)  # timestamps only; None: ms

    def render(self) -> str:
        return f"{self.name}({self.unit})" if self.unit else self.name


@dataclass(frozen=True)
class OptionalType(Type):
    inner: Type

    def render(self) -> str:
        return f"optional {self.inner.render()}"


@dataclass(frozen=True)
class ListType(Type):
    item: Type

    def render(self) -> str:
        return f"list<{self.item.render()}>"


@dataclass(frozen=True)
class Field:
    name: str
    type: Type


@dataclass(frozen=True)
class RecordType(Type):
    """A named record: an ordered tuple of typed fields.

    >>> r = RecordType("Click", (Field("user", STR), Field("n", INT)))
    >>> r.render(), r.field("n").type
    ('Click', Primitive(name='int'))
    """

    name: str
    fields: tuple[Field, ...]

    def render(self) -> str:
        if self.name:
            return self.name
        # Records made by map, aggregate or join have no name: say what they hold.
        inner = ", ".join(f"{f.name}: {f.type.render()}" for f in self.fields)
        return f"{{ {inner} }}" if inner else "{ }"

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def describe(self) -> str:
        inner = ", ".join(f"{f.name}: {f.type.render()}" for f in self.fields)
        return f"{self.name} {{ {inner} }}"


STR = Primitive("str")
INT = Primitive("int")
FLOAT = Primitive("float")
BOOL = Primitive("bool")
BYTES = Primitive("bytes")
TIMESTAMP = Primitive("timestamp")
NULL = Primitive("null")
ANY = Primitive("any")

PRIMITIVES = {t.name: t for t in (STR, INT, FLOAT, BOOL, BYTES, TIMESTAMP, ANY)}
NUMERIC = (INT, FLOAT)


def timestamp_type(unit: str = "ms") -> Primitive:
    """The timestamp type whose numbers are in `unit` (s, ms, us or ns) on a topic."""
    if unit not in TIMESTAMP_UNITS:
        raise ValueError(f"unknown timestamp unit {unit!r}; units are: {', '.join(TIMESTAMP_UNITS)}")
    return TIMESTAMP if unit == "ms" else Primitive("timestamp", unit)


def timestamp_unit(t: Type) -> str:
    """The unit of a timestamp type (`ms` unless declared otherwise)."""
    return getattr(t, "unit", None) or "ms"


def strip_optional(t: Type) -> Type:
    return t.inner if isinstance(t, OptionalType) else t


def optional(t: Type) -> Type:
    if t in (ANY, NULL) or isinstance(t, OptionalType):
        return t
    return OptionalType(t)


def is_numeric(t: Type) -> bool:
    t = strip_optional(t)
    return t in NUMERIC or t == ANY or t == TIMESTAMP


def is_assignable(value: Type, target: Type) -> bool:
    """Can a value of type `value` be stored where `target` is expected?

    >>> is_assignable(INT, FLOAT), is_assignable(FLOAT, INT), is_assignable(NULL, OptionalType(STR))
    (True, False, True)
    """
    if value == target or ANY in (value, target):
        return True
    if isinstance(target, OptionalType):
        return value == NULL or is_assignable(strip_optional(value), target.inner)
    if isinstance(value, OptionalType):
        return False
    if target == FLOAT and value == INT:
        return True
    if target == TIMESTAMP and value == INT:
        return True
    if isinstance(target, ListType) and isinstance(value, ListType):
        return is_assignable(value.item, target.item)
    if isinstance(target, RecordType) and isinstance(value, RecordType):
        return all(
            (vf := value.field(tf.name)) is not None and is_assignable(vf.type, tf.type)
            or (vf is None and isinstance(tf.type, OptionalType))
            for tf in target.fields
        )
    return False


def unify(a: Type, b: Type) -> Type | None:
    """The narrowest type holding both, or None when there is none."""
    if a == b:
        return a
    if ANY in (a, b):
        return ANY
    if a == NULL:
        return optional(b)
    if b == NULL:
        return optional(a)
    if is_assignable(a, b):
        return b
    if is_assignable(b, a):
        return a
    sa, sb = strip_optional(a), strip_optional(b)
    if {sa, sb} <= set(NUMERIC):
        out: Type = FLOAT
        return optional(out) if (isinstance(a, OptionalType) or isinstance(b, OptionalType)) else out
    return None


_PY_TYPES: dict[object, Type] = {
    str: STR, int: INT, float: FLOAT, bool: BOOL, bytes: BYTES,
    datetime.datetime: TIMESTAMP, typing.Any: ANY, object: ANY, type(None): NULL,
}


def from_python(annotation: object) -> Type:
    """A dataflow type from a Python annotation, a `Record` subclass or a dataflow type.

    >>> from_python(int), from_python(list[str]).render(), from_python(str | None).render()
    (Primitive(name='int'), 'list<str>', 'optional str')
    """
    if isinstance(annotation, Type):
        return annotation
    if annotation is None:
        return ANY
    schema = getattr(annotation, "__dataflow_schema__", None)
    if isinstance(schema, RecordType):
        return schema
    if annotation in _PY_TYPES:
        return _PY_TYPES[annotation]  # type: ignore[index]
    if isinstance(annotation, str) and annotation in PRIMITIVES:
        return PRIMITIVES[annotation]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (list, tuple, set, frozenset) and args:
        return ListType(from_python(args[0]))
    if origin in (list, tuple, set, frozenset):
        return ListType(ANY)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return OptionalType(from_python(rest[0]))
        return ANY
    raise TypeError(f"cannot use {annotation!r} as a dataflow type; use str, int, float, bool, "
                    "bytes, datetime, list[...], X | None or a dataflow.Record subclass")


def to_json(t: Type) -> object:
    """A stable JSON form of a type for plans."""
    if isinstance(t, Primitive):
        return t.render()
    if isinstance(t, OptionalType):
        return {"optional": to_json(t.inner)}
    if isinstance(t, ListType):
        return {"list": to_json(t.item)}
    if isinstance(t, RecordType):
        return {"record": t.name, "fields": {f.name: to_json(f.type) for f in t.fields}}
    raise TypeError(t)
