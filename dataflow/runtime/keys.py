"""Checking the keys of records read from a topic that declares a key type.

A key that does not fit is a malformed record (dead-lettered with the reason), never a
silently wrong answer: a null key on a keyed topic, or a key of another type, would
land every such record in one partition and one row. A table read from a topic never
takes a null key, whatever its key type: all keyless records would collapse into one row.

Keys are decoded as JSON, and text that is not JSON is taken as plain text (`u123` is the
str "u123"), so on a `key str` topic the keys `123`, `{"a":1}`, `[1,2]` and `true` are an
int, an object, a list and a bool: refused.

>>> from dataflow.ir.types import STR, ANY
>>> check = key_checker("users", STR, table=False)
>>> check("u1")
'u1'
>>> check(123)
Traceback (most recent call last):
ValueError: key 123 on topic users does not fit its declared key str: expected str, got an int
>>> key_checker("clicks", ANY, table=False) is None
True
"""
from __future__ import annotations

from typing import Any, Callable

import orjson

from ..ir.types import ANY, OptionalType, Type
from .records import validator


def key_checker(topic: str, key_type: Type, *, table: bool) -> Callable[[Any], Any] | None:
    """A function returning the (normalized) key or raising ValueError; None when any key fits."""
    if key_type == ANY and not table:
        return None
    nullable = isinstance(key_type, OptionalType) and not table
    inner = key_type.inner if isinstance(key_type, OptionalType) else key_type
    check = validator(inner)
    declared = f"which declares key {key_type.render()}" if key_type != ANY else "which is read as a table"

    def check_key(key: Any) -> Any:
        if key is None:
            if nullable:
                return None
            raise ValueError(f"null key on topic {topic}, {declared}")
        if check is None:
            return key
        try:
            return check(key)
        except ValueError as e:
            raise ValueError(f"key {_show(key)} on topic {topic} does not fit its declared key "
                             f"{key_type.render()}: {e}") from None

    return check_key


def _show(key: Any) -> str:
    try:
        text = orjson.dumps(key).decode()
    except TypeError:
        text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."
