"""Writing timestamps back in the unit a sink topic declares.

Inside a pipeline every timestamp is epoch milliseconds. A topic whose declared record
type says `timestamp(s)` (or `us`, `ns`) is read by others in that unit, so what a
pipeline writes there is converted back: an int when exact (seconds of a whole second),
else a float for seconds (1700000000.123) and an int for `us`/`ns`.

>>> from dataflow.ir.types import RecordType, Field, STR, timestamp_type
>>> encode = unit_encoder(RecordType("R", (Field("u", STR), Field("at", timestamp_type("s")))))
>>> encode({"u": "a", "at": 1700000000123}), encode({"u": "b", "at": 1700000000000})
({'u': 'a', 'at': 1700000000.123}, {'u': 'b', 'at': 1700000000})
>>> unit_encoder(RecordType("R", (Field("at", timestamp_type("ms")),))) is None
True
"""
from __future__ import annotations

from typing import Any, Callable

from ..ir.types import TIMESTAMP, ListType, OptionalType, RecordType, Type, timestamp_unit

Encode = Callable[[Any], Any]


def unit_encoder(t: Type | None) -> Encode | None:
    """A function writing the timestamps inside values of type `t` in their declared units;
    None when every timestamp in `t` is in milliseconds (nothing to do)."""
    if t is None:
        return None
    if isinstance(t, OptionalType):
        inner = unit_encoder(t.inner)
        return None if inner is None else (lambda v: None if v is None else inner(v))
    if isinstance(t, ListType):
        item = unit_encoder(t.item)
        return None if item is None else (lambda v: [item(x) for x in v] if isinstance(v, list) else v)
    if isinstance(t, RecordType):
        fields = [(f.name, enc) for f in t.fields if (enc := unit_encoder(f.type)) is not None]
        if not fields:
            return None

        def encode_record(v: Any) -> Any:
            if not isinstance(v, dict):
                return v
            out = dict(v)  # the record may be shared with other steps: never change it in place
            for name, enc in fields:
                if name in out:
                    out[name] = enc(out[name])
            return out
        return encode_record
    if t == TIMESTAMP and timestamp_unit(t) != "ms":
        return _from_ms(timestamp_unit(t))
    return None


def _from_ms(unit: str) -> Encode:
    if unit == "s":
        def seconds(v: Any) -> Any:
            if type(v) is not int:
                return v
            whole, ms = divmod(v, 1000)
            return whole if ms == 0 else v / 1000
        return seconds
    factor = 1000 if unit == "us" else 1_000_000
    return lambda v: v * factor if type(v) is int else v
