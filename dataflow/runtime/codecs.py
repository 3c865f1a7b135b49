"""Value codecs: ``json`` (orjson), ``msgpack`` and ``raw`` bytes.

Every decoding (and encoding) failure raises one :class:`CodecError` with the codec name
and a short reason, which the runtime uses to route a malformed record to a dead-letter
topic. The batch variants keep the hot path in one comprehension and fall back to
per-record work only when a record is bad.

>>> codec = get_codec("json")
>>> codec.loads(codec.dumps({"amount": 5}))
{'amount': 5}
>>> codec.loads_many([b'{"a": 1}', b"[1,"], errors="return")
[{'a': 1}, CodecError('json', 'unexpected end of data: line 1 column 4 (char 3)')]
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import msgpack
import orjson

__all__ = ["Codec", "CodecError", "JsonCodec", "MsgpackCodec", "RawCodec", "codec_names", "get_codec", "register_codec"]

Errors = Literal["raise", "return"]


class CodecError(ValueError):
    """A value could not be encoded or decoded by ``codec``; ``reason`` says why, briefly.

    >>> str(CodecError("json", "unexpected end of data"))
    'json: unexpected end of data'
    """

    def __init__(self, codec: str, reason: str) -> None:
        super().__init__(codec, reason)
        self.codec = codec
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.codec}: {self.reason}"


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


class Codec(ABC):
    """Turns values into bytes and back.

    >>> get_codec("raw").dumps("café")
    b'caf\\xc3\\xa9'
    """

    name: ClassVar[str]

    @abstractmethod
    def dumps(self, obj: Any) -> bytes: ...

    @abstractmethod
    def loads(self, data: bytes) -> Any: ...

    def dumps_many(self, objs: Iterable[Any]) -> list[bytes]:
        """Encode a batch; raises :class:`CodecError` on the first value that fails."""
        return [self.dumps(obj) for obj in objs]

    def loads_many(self, datas: Iterable[bytes], *, errors: Errors = "raise") -> list[Any]:
        """Decode a batch in order. ``errors="raise"`` raises on the first bad record;
        ``errors="return"`` puts a :class:`CodecError` in its place instead, so one bad
        record can be dead-lettered without losing the rest of the batch."""
        datas = datas if isinstance(datas, list) else list(datas)
        try:
            return self._loads_batch(datas)
        except CodecError:
            pass  # find the bad records one by one, with their own reasons
        out: list[Any] = []
        for data in datas:
            try:
                out.append(self.loads(data))
            except CodecError as exc:
                if errors == "raise":
                    raise
                out.append(exc)
        return out

    def _loads_batch(self, datas: list[bytes]) -> list[Any]:
        loads = self.loads
        return [loads(data) for data in datas]

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


def _no_value(codec: str) -> CodecError:
    return CodecError(codec, "no value (null record)")


class JsonCodec(Codec):
    """JSON via orjson: UTF-8 bytes, compact, dict keys of any scalar type."""

    name = "json"
    _OPTIONS = orjson.OPT_NON_STR_KEYS

    def dumps(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=self._OPTIONS)
        except orjson.JSONEncodeError as exc:
            raise CodecError(self.name, _reason(exc)) from None

    def loads(self, data: bytes) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            # orjson reports a wrong input type as a decode error too; name it plainly.
            if data is None:
                raise _no_value(self.name) from None
            if not isinstance(data, (bytes, bytearray, memoryview, str)):
                raise CodecError(self.name, f"expected bytes, got {type(data).__name__}") from None
            raise CodecError(self.name, _reason(exc)) from None

    def dumps_many(self, objs: Iterable[Any]) -> list[bytes]:
        dumps, option = orjson.dumps, self._OPTIONS
        try:
            return [dumps(obj, option=option) for obj in objs]
        except orjson.JSONEncodeError as exc:
            raise CodecError(self.name, _reason(exc)) from None

    def _loads_batch(self, datas: list[bytes]) -> list[Any]:
        loads = orjson.loads
        try:
            return [loads(data) for data in datas]
        except orjson.JSONDecodeError:
            raise CodecError(self.name, "batch has a malformed record") from None


class MsgpackCodec(Codec):
    """MessagePack: bytes stay bytes, strings are UTF-8, maps may have non-str keys."""

    name = "msgpack"

    def dumps(self, obj: Any) -> bytes:
        try:
            return msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(self.name, _reason(exc)) from None

    def loads(self, data: bytes) -> Any:
        if data is None:
            raise _no_value(self.name)
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=False)
        except msgpack.ExtraData:
            raise CodecError(self.name, "extra bytes after the value") from None
        except msgpack.FormatError:
            raise CodecError(self.name, "invalid msgpack data") from None
        except msgpack.StackError:
            raise CodecError(self.name, "nested too deeply") from None
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            # ValueError covers FormatError, StackError, truncated data and bad UTF-8.
            raise CodecError(self.name, _reason(exc)) from None


class RawCodec(Codec):
    """Bytes pass through; ``str`` is encoded as UTF-8; decoding returns the bytes."""

    name = "raw"

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode("utf-8", "surrogatepass")
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        raise CodecError(self.name, f"cannot encode {type(obj).__name__}; expected bytes or str")

    def loads(self, data: bytes) -> Any:
        if isinstance(data, bytes):
            return data
        if isinstance(data, (bytearray, memoryview)):
            return bytes(data)
        if data is None:
            raise _no_value(self.name)
        raise CodecError(self.name, f"expected bytes, got {type(data).__name__}")


_codecs: dict[str, Codec] = {codec.name: codec for codec in (JsonCodec(), MsgpackCodec(), RawCodec())}


def get_codec(name: str) -> Codec:
    """The codec registered as ``name``.

    >>> get_codec("msgpack").name
    'msgpack'
    """
    try:
        return _codecs[name]
    except KeyError:
        raise ValueError(f"unknown codec {name!r}; hint: use one of {', '.join(codec_names())}") from None


def codec_names() -> list[str]:
    return sorted(_codecs)


def register_codec(codec: Codec) -> None:
    """Make ``codec`` available to :func:`get_codec` under ``codec.name``."""
    if codec.name in _codecs and _codecs[codec.name] is not codec:
        raise ValueError(f"a codec named {codec.name!r} is already registered")
    _codecs[codec.name] = codec
