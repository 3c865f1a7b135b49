"""Random and mutated `.flow` text: the only outcomes are a Flow or a FlowError with sane positions."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflow.builder import Flow
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.lang.diagnostics import source_lines
from dataflow.lang.parser import lark_parser
from dataflow.planner import plan
from dataflow.planner.render import to_json

EXAMPLES = [p.read_text() for p in sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.flow"))]
TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|[A-Za-z_]\w*|\d+\w*|==|!=|<=|>=|->|.", re.S)
WORDS = ["pipeline", "record", "topic", "udf", "stream", "table", "filter", "map", "flat_map", "group_by",
         "select_key", "through", "window", "tumbling", "hopping", "sliding", "step", "grace", "expires", "on",
         "time", "aggregate", "emit", "final", "to_table", "changes", "join", "left", "outer", "within", "merge",
         "branch", "default", "echo", "to", "stdout", "file", "key", "partitions", "serializer", "event_time",
         "optional", "list", "not", "and", "or", "is", "null", "true", "false", "count", "sum", "_key", "_value",
         "x", "amount", "ts", "|", "{", "}", "(", ")", "[", "]", "<", ">", ",", ":", ".", "=", "==", "-", "+",
         "*", "?", "\n", " ", "# c\n", '"s"', '"', "1", "1.5", "10s", "5m", "\t", "é", "\\", "@", "'", "\r",
         "\r\n", "9" * 30, "1e999"]

TERMINALS = {t.name for t in lark_parser().terminals} | {"$END"}

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    parts = tokens(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        if not parts:
            break
        i = draw(st.integers(0, len(parts) - 1))
        action = draw(st.sampled_from(["delete", "insert", "swap", "replace", "duplicate", "cut_chars"]))
        if action == "delete":
            del parts[i:i + draw(st.integers(1, 3))]
        elif action == "insert":
            parts.insert(i, draw(st.sampled_from(WORDS)))
        elif action == "swap":
            j = draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
        elif action == "replace":
            parts[i] = draw(st.sampled_from(WORDS))
        elif action == "duplicate":
            parts.insert(i, parts[i])
        else:
            chars = parts[i]
            k = draw(st.integers(0, len(chars)))
            parts[i] = chars[:k] + chars[k + 1:]
    return "".join(parts)


random_text = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join) | st.text(max_size=80)
prefixed = random_text.map(lambda s: "pipeline p\n" + s)


def check_outcome(text: str) -> None:
    lines = len(source_lines(text))  # LF, CRLF and CR all end a line
    try:
        result = parse_flow(text, "m.flow")
    except FlowError as error:
        assert error.diagnostics, "a FlowError always says what is wrong"
        for d in error.diagnostics:
            assert d.loc.file == "m.flow"
            assert 1 <= d.loc.line <= lines + 1, (str(d), lines)
            assert d.loc.column >= 1, str(d)
        assert "Traceback" not in str(error)
        for d in error.diagnostics:
            unquoted = re.sub(r"'[^']*'|\"[^\"]*\"|`[^`]*`", "", f"{d.message}; {d.hint}")
            assert not TERMINALS & set(re.findall(r"[A-Z_$][A-Z_0-9]+", unquoted)), str(d)
        return
    assert isinstance(result, Flow)


@SETTINGS
@given(mutated())
def test_mutated_examples(text: str) -> None:
    check_outcome(text)


@SETTINGS
@given(random_text | prefixed)
def test_random_text(text: str) -> None:
    check_outcome(text)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fmt_of_anything_that_parses_is_stable(text: str) -> None:
    try:
        once = format_source(text, "m.flow")
    except FlowError:
        return
    assert format_source(once, "m.flow") == once
    try:
        original = to_json(plan(parse_flow(text, "m.flow").topology()), locations=False)
    except FlowError:
        return
    assert to_json(plan(parse_flow(once, "m.flow").topology()), locations=False) == original


def test_the_pass_through_speedup_keeps_trees_and_positions() -> None:
    from lark import Lark

    from dataflow.lang.parser import grammar_text, lark_parser

    plain = Lark(grammar_text(), parser="lalr", lexer="contextual", propagate_positions=True,
                 maybe_placeholders=False)
    for text in EXAMPLES:
        fast, slow = lark_parser().parse(text), plain.parse(text)
        assert fast == slow
        spans = [[(t.data, t.meta.line, t.meta.column, t.meta.end_line, t.meta.end_column) for t in tree.iter_subtrees()]
                 for tree in (fast, slow)]
        assert spans[0] == spans[1]


@pytest.mark.parametrize("body", ["-" * 3000 + "x", " + ".join(["x"] * 3000), "not " * 3000 + "x"])
def test_nesting_too_deep_for_python_is_a_diagnostic(body: str) -> None:
    text = f"pipeline p\ntopic t\nt | filter {body} | to stdout\n"
    for compile_or_format in (parse_flow, format_source):
        with pytest.raises(FlowError) as info:
            compile_or_format(text, "deep.flow")
        assert str(info.value.diagnostics[0]).startswith("deep.flow:3:1: error: this declaration nests too deeply")
