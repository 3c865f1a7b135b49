"""ir.functions: every built-in does what its documented example says, and type-checks the same way.

The examples (`name(args) = result`) are parsed as data: the argument list and the result go
through `ast.literal_eval` after `.flow` spellings (true, false, null, 1m) are mapped to Python
ones. Nothing is passed to eval.
"""
from __future__ import annotations

import ast
import re

import pytest

from dataflow.builder.expressions import to_expr
from dataflow.ir import functions
from dataflow.ir.durations import parse_duration
from dataflow.ir.expr import Call, ExprTypeError, FieldRef, Literal, Scope, infer
from dataflow.ir.functions import BUILTINS, suggest
from dataflow.ir.types import ANY, BOOL, FLOAT, INT, STR, TIMESTAMP, Field, ListType, OptionalType, RecordType, \
    is_assignable

EXAMPLE = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\) = (?P<result>.+)$")
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\b(?:true|false|null)\b|\b\d+(?:ms|s|m|h|d)\b')
SPELLING = {"true": "True", "false": "False", "null": "None"}
#: examples that are not `call = literal`: checked by their own tests below
NOT_LITERAL = {"if", "now"}


def python_literal(flow_text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        tok = match.group(0)
        if tok.startswith('"'):
            return tok
        return SPELLING.get(tok) or str(parse_duration(tok))
    return TOKEN.sub(swap, flow_text)


def parse_example(example: str) -> tuple[str, tuple, object]:
    match = EXAMPLE.match(example)
    assert match, f"example {example!r} does not read `name(args) = result`"
    args = ast.literal_eval(f"({python_literal(match['args'])},)") if match["args"] else ()
    return match["name"], args, ast.literal_eval(python_literal(match["result"]))


LITERAL_EXAMPLES = [b.example for b in BUILTINS.values() if b.name not in NOT_LITERAL]


def test_every_builtin_documents_an_example():
    assert [b.name for b in BUILTINS.values() if not b.example] == []
    assert [b.name for b in BUILTINS.values() if not b.example.startswith(f"{b.name}(")] == []


@pytest.mark.parametrize("example", LITERAL_EXAMPLES)
def test_builtin_example(example):
    name, args, expected = parse_example(example)
    spec = BUILTINS[name]
    result = spec.impl(*args)
    assert result == expected and type(result) is type(expected)
    # the type rule agrees with the value: the result fits the type the checker gives the call
    call = Call(name, tuple(to_expr(a) for a in args))
    call_type = infer(call, Scope(ANY, ANY))
    assert is_assignable(infer(to_expr(expected), Scope(ANY, ANY)), call_type), (call_type, expected)


def test_if():
    spec = BUILTINS["if"]
    assert (spec.impl(True, "big", "small"), spec.impl(False, "big", "small")) == ("big", "small")
    rec = RecordType("O", (Field("amount", FLOAT),))
    call = Call("if", (Call("greatest", (FieldRef(("amount",)), Literal(100))), Literal("big"), Literal("small")))
    with pytest.raises(ExprTypeError, match="the condition of if\\(\\) must be bool, got float"):
        infer(call, Scope(STR, rec))
    ok = Call("if", (Literal(True), Literal(1), Literal(2.5)))
    assert infer(ok, Scope(STR, rec)) == FLOAT


def test_now(monkeypatch):
    monkeypatch.setattr(functions.time, "time", lambda: 1_700_000_000.25)
    assert BUILTINS["now"].impl() == 1_700_000_000_250
    assert infer(Call("now", ()), Scope(ANY, ANY)) == TIMESTAMP


def test_split_drops_empty_parts():
    """As documented: "Splits text into a list of strings; empty parts are dropped"."""
    split = BUILTINS["split"].impl
    assert split("a,,b,", ",") == ["a", "b"]
    assert split(" a  b ") == ["a", "b"]


def test_optional_arguments():
    assert BUILTINS["substr"].impl("dataflow", 4) == "flow"
    assert BUILTINS["round"].impl(2.5) == 2 and BUILTINS["round"].impl(3.7) == 4
    assert BUILTINS["format_time"].impl(1500) == "1970-01-01T00:00:01.500000Z"
    assert BUILTINS["to_str"].impl(False) == "false"
    assert BUILTINS["concat"].impl("a", None, "b") == "ab"


@pytest.mark.parametrize("call, message, hint", [
    (Call("lower", ()), "lower() takes 1 argument, got 0", "lower(text: str)"),
    (Call("substr", (Literal("a"),)), "substr() takes 2 to 3 arguments, got 1", "substr(text: str, start: int, length: int)"),
    (Call("concat", ()), "concat() takes at least 1 argument, got 0", "concat(value, ...)"),
    (Call("upper", (Literal(1),)), "argument 1 of upper() must be str, got int", "upper(text: str)"),
    (Call("sqrt", (Literal("9"),)), "argument 1 of sqrt() must be float, got str", "sqrt(x: number)"),
    (Call("least", (Literal(1), Literal("a"))), "arguments have incompatible types: int, str", ""),
    (Call("uper", (Literal("a"),)), "unknown function 'uper'", "did you mean 'upper'?"),
    (Call("zzz", ()), "unknown function 'zzz'", "see the list of built-in functions in docs/language.md"),
])
def test_call_type_errors(call, message, hint):
    with pytest.raises(ExprTypeError) as e:
        infer(call, Scope(ANY, ANY))
    assert (e.value.message, e.value.hint) == (message, hint)


@pytest.mark.parametrize("call, result", [
    (Call("length", (Literal("abc"),)), INT),
    (Call("abs", (Literal(-2.5),)), FLOAT),
    (Call("round", (Literal(2.5),)), INT),
    (Call("round", (Literal(2.5), Literal(1))), FLOAT),
    (Call("pow", (Literal(2), Literal(3))), INT),
    (Call("pow", (Literal(2), Literal(0.5))), FLOAT),
    (Call("coalesce", (FieldRef(("nick",)), Literal("anon"))), STR),
    (Call("coalesce", (Literal("anon"), FieldRef(("nick",)))), OptionalType(STR)),
    (Call("split", (FieldRef(("nick",)),)), ListType(STR)),
    (Call("contains", (Literal("abc"), Literal("b"))), BOOL),
])
def test_call_types(call, result):
    scope = Scope(STR, RecordType("U", (Field("nick", OptionalType(STR)),)))
    assert infer(call, scope) == result


def test_suggest():
    assert suggest("amout", ["amount", "account"]) == "amount"
    assert suggest("zzz", ["amount"]) is None
