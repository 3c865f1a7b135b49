"""Codecs: exact encodings, one error type with a short reason, batch decoding."""
from __future__ import annotations

import doctest

import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataflow.runtime.codecs as codecs_module
from dataflow.runtime.codecs import Codec, CodecError, codec_names, get_codec, register_codec

json = get_codec("json")
mp = get_codec("msgpack")
raw = get_codec("raw")


def test_registry() -> None:
    assert codec_names() == ["json", "msgpack", "raw"]
    assert [get_codec(name).name for name in codec_names()] == ["json", "msgpack", "raw"]
    with pytest.raises(ValueError, match=r"unknown codec 'yaml'; hint: use one of json, msgpack, raw"):
        get_codec("yaml")


def test_register_codec_refuses_to_shadow() -> None:
    class Upper(Codec):
        name = "json"

        def dumps(self, obj: object) -> bytes:
            return str(obj).upper().encode()

        def loads(self, data: bytes) -> object:
            return data.decode()

    with pytest.raises(ValueError, match="a codec named 'json' is already registered"):
        register_codec(Upper())


def test_json_is_compact_utf8() -> None:
    assert json.dumps({"user": "zoë", "amount": 12.5, "tags": ["a"], "ok": True, "none": None}) == (
        '{"user":"zoë","amount":12.5,"tags":["a"],"ok":true,"none":null}'.encode()
    )
    assert json.dumps({1: "a"}) == b'{"1":"a"}'
    assert json.loads(b'{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}
    assert json.loads(bytearray(b"[1]")) == [1]
    assert json.loads(memoryview(b"[2]")) == [2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[1,", "unexpected end of data: line 1 column 4 (char 3)"),
        (b"nope", "invalid literal, expected 'null': line 1 column 1 (char 0)"),
        (b"", "Input is a zero-length, empty document: line 1 column 1 (char 0)"),
        (None, "no value (null record)"),
        (42, "expected bytes, got int"),
    ],
)
def test_json_decode_errors(data: object, reason: str) -> None:
    with pytest.raises(CodecError) as info:
        json.loads(data)  # type: ignore[arg-type]
    assert (info.value.codec, info.value.reason, str(info.value)) == ("json", reason, f"json: {reason}")
    assert isinstance(info.value, ValueError)


def test_json_encode_error() -> None:
    with pytest.raises(CodecError) as info:
        json.dumps({"blob": b"\x00"})
    assert (info.value.codec, info.value.reason) == ("json", "Type is not JSON serializable: bytes")
    with pytest.raises(CodecError, match="json: Type is not JSON serializable: set"):
        json.dumps_many([{"ok": 1}, {1, 2}])


def test_loads_many_raise_and_return() -> None:
    batch = [b'{"a":1}', b"[1,", b'"s"', None]
    assert json.loads_many([b"1", b"2"]) == [1, 2]
    assert json.loads_many(iter([b"1", b"2"])) == [1, 2]
    with pytest.raises(CodecError, match="json: unexpected end of data"):
        json.loads_many(batch)
    out = json.loads_many(batch, errors="return")
    assert out[0] == {"a": 1} and out[2] == "s"
    assert [(e.codec, e.reason) for e in (out[1], out[3])] == [
        ("json", "unexpected end of data: line 1 column 4 (char 3)"),
        ("json", "no value (null record)"),
    ]
    assert json.dumps_many([1, "x"]) == [b"1", b'"x"']


def test_msgpack_roundtrip_keeps_bytes_and_int_keys() -> None:
    value = {"blob": b"\x00\xff", "n": -3, 1: [1.5, None, True]}
    assert mp.dumps({"a": 1}) == b"\x81\xa1a\x01"
    assert mp.loads(mp.dumps(value)) == value
    assert mp.loads_many([mp.dumps(1), mp.dumps("x")]) == [1, "x"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x92\x01", "Unpack failed: incomplete input"),
        (b"\x01\x02", "extra bytes after the value"),
        (b"\xc1", "invalid msgpack data"),
        (b"\x91" * 2000 + b"\x01", "nested too deeply"),
        (b"\xa2\xff\xfe", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        (None, "no value (null record)"),
    ],
)
def test_msgpack_decode_errors(data: bytes | None, reason: str) -> None:
    with pytest.raises(CodecError) as info:
        mp.loads(data)  # type: ignore[arg-type]
    assert (info.value.codec, info.value.reason) == ("msgpack", reason)


def test_msgpack_encode_error() -> None:
    with pytest.raises(CodecError) as info:
        mp.dumps(object())
    assert info.value.codec == "msgpack"
    assert info.value.reason == "can not serialize 'object' object"


def test_raw_passes_bytes_through() -> None:
    blob = b"\x00\x01binary"
    assert raw.dumps(blob) is blob
    assert raw.loads(blob) is blob
    assert raw.dumps("café") == b"caf\xc3\xa9"
    assert raw.dumps(bytearray(b"ab")) == b"ab"
    assert raw.loads(memoryview(b"cd")) == b"cd"
    assert raw.loads_many([b"a", b"b"]) == [b"a", b"b"]


def test_raw_errors() -> None:
    with pytest.raises(CodecError) as info:
        raw.dumps(12)
    assert (info.value.codec, info.value.reason) == ("raw", "cannot encode int; expected bytes or str")
    with pytest.raises(CodecError, match=r"raw: no value \(null record\)"):
        raw.loads(None)  # type: ignore[arg-type]
    assert [str(e) for e in raw.loads_many([b"x", None], errors="return")[1:]] == ["raw: no value (null record)"]  # type: ignore[list-item]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_roundtrip(value: object) -> None:
    assert json.loads(json.dumps(value)) == value


@given(json_values | st.binary())
def test_msgpack_roundtrip(value: object) -> None:
    assert mp.loads(mp.dumps(value)) == value


@given(st.binary())
def test_json_never_raises_anything_but_codec_error(data: bytes) -> None:
    try:
        json.loads(data)
    except CodecError as exc:
        assert exc.codec == "json" and exc.reason


@given(st.binary())
def test_msgpack_never_raises_anything_but_codec_error(data: bytes) -> None:
    try:
        mp.loads(data)
    except CodecError as exc:
        assert exc.codec == "msgpack" and exc.reason


def test_doctests() -> None:
    assert doctest.testmod(codecs_module).failed == 0
