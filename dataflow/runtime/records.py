"""Checking decoded values against their declared types before a pipeline sees them.

A value that does not fit is a malformed record: the worker sends it to the
dead-letter topic with the reason, and the stream goes on. Timestamps, written in
their field's declared unit or as ISO-8601 text, become epoch milliseconds here, once
(`ir.timestamps`).

>>> from dataflow.ir.types import RecordType, Field, FLOAT, TIMESTAMP
>>> check = validator(RecordType("W", (Field("amount", FLOAT), Field("ts", TIMESTAMP))))
>>> check({"amount": 5, "ts": "1970-01-01T00:00:01Z"})
{'amount': 5, 'ts': 1000}
>>> check({"ts": 0})
Traceback (most recent call last):
ValueError: missing field 'amount'
"""
from __future__ import annotations

from typing import Any, Callable

from ..ir.timestamps import to_epoch_ms
from ..ir.types import (ANY, BOOL, BYTES, FLOAT, INT, STR, TIMESTAMP, ListType, OptionalType, RecordType,
                        Type, timestamp_unit)

Check = Callable[[Any], Any]


def validator(t: Type) -> Check | None:
    """A function that returns the (normalized) value or raises ValueError; None when anything fits."""
    if t == ANY:
        return None
    return _build(t, "")


def _build(t: Type, where: str) -> Check:
    if isinstance(t, OptionalType):
        inner = _build(t.inner, where)
        return lambda v: None if v is None else inner(v)
    if isinstance(t, RecordType):
        fields = [(f.name, f.type, _build(f.type, f"{where}{f.name}.") if f.type != ANY else None) for f in t.fields]

        def check_record(v: Any) -> Any:
            if not isinstance(v, dict):
                raise ValueError(f"expected a {t.render() or 'record'} object, got {_kind(v)}")
            for name, ftype, check in fields:
                if name not in v or v[name] is None:
                    if isinstance(ftype, OptionalType) or ftype == ANY:
                        v.setdefault(name, None)
                        continue
                    raise ValueError(f"missing field '{where}{name}'")
                if check is not None:
                    try:
                        v[name] = check(v[name])
                    except ValueError as e:
                        msg = str(e)
                        raise ValueError(msg if msg.startswith("field") or msg.startswith("missing")
                                         else f"field '{where}{name}': {msg}") from None
            return v

        return _fast_record(t, fields, check_record)
    if isinstance(t, ListType):
        item = _build(t.item, where) if t.item != ANY else None

        def check_list(v: Any) -> Any:
            if not isinstance(v, list):
                raise ValueError(f"expected a list, got {_kind(v)}")
            return [item(x) for x in v] if item else v

        return check_list
    if t == TIMESTAMP:
        unit = timestamp_unit(t)

        def check_ts(v: Any) -> int:
            return to_epoch_ms(v, unit)
        return check_ts
    if t == FLOAT:
        def check_float(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"expected a number, got {_kind(v)}")
            return v
        return check_float
    if t == INT:
        def check_int(v: Any) -> Any:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"expected an int, got {_kind(v)}")
            return v
        return check_int
    py = {STR: str, BOOL: bool, BYTES: (bytes, str)}.get(t)  # type: ignore[call-overload]
    if py is None:
        return lambda v: v

    def check_simple(v: Any) -> Any:
        if not isinstance(v, py):
            raise ValueError(f"expected {t.render()}, got {_kind(v)}")
        return v

    return check_simple


# Exact types a JSON decoder produces for each simple field type: a type() identity test
# is several times cheaper than isinstance() with the bool exclusions of the checks above.
_EXACT: dict[Type, tuple[str, ...]] = {STR: ("str",), INT: ("int",), BOOL: ("bool",), FLOAT: ("float", "int"),
                                       BYTES: ("str", "bytes")}


def _fast_record(t: RecordType, fields: list[tuple[str, Type, Check | None]], slow: Check) -> Check:
    """A record check generated for its fields, for values that fit: every field present,
    simple fields of an exact JSON type. Anything else (a missing or null field, a wrong
    type, a nested check that fails) goes to ``slow``, which normalizes or says what is
    wrong exactly as before; so the generated code never has to phrase an error."""
    lines = ["def check_record(v):", "    if type(v) is not dict:", "        return slow(v)"]
    nested: dict[str, Check] = {"slow": slow}
    for index, (name, ftype, check) in enumerate(fields):
        inner = ftype.inner if isinstance(ftype, OptionalType) else ftype
        lines.append(f"    x = v.get({name!r})")
        exact = _EXACT.get(inner)
        if exact is not None:
            test = " and ".join(f"type(x) is not {py}" for py in exact)
            lines += [f"    if {test}:", "        return slow(v)"]
        elif inner == ANY or check is None:
            lines += ["    if x is None:", "        return slow(v)"]
        else:
            nested[f"check_{index}"] = check
            lines += ["    if x is None:", "        return slow(v)",
                      "    try:", f"        v[{name!r}] = check_{index}(x)",
                      "    except ValueError:", "        return slow(v)"]
    lines.append("    return v")
    namespace: dict[str, Any] = dict(nested)
    exec(compile("\n".join(lines), f"<check {t.render() or 'record'}>", "exec"), namespace)  # noqa: S102
    return namespace["check_record"]  # type: ignore[no-any-return]


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "a list", str: "text", bool: "a bool", int: "an int",
            float: "a number"}.get(type(v), type(v).__name__)
