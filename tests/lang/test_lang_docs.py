"""docs/language.md documents every grammar rule and built-in, and every example in it compiles."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dataflow.ir.functions import BUILTINS
from dataflow.lang import parse_flow
from dataflow.lang.docs import END, START, builtins_markdown
from dataflow.lang.fmt import _Formatter
from dataflow.lang.parser import lark_parser
from dataflow.lang.transform import FlowTransformer

DOC = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
BLOCKS = re.findall(r"^```flow( preamble)?\n(.*?)^```", DOC, re.S | re.M)
PREAMBLE = next(body for marker, body in BLOCKS if marker)
EXAMPLES = [body for marker, body in BLOCKS if not marker]


def rule_names() -> set[str]:
    """Every rule and alias of the grammar that a user can meet (not lark's internal `_x` helpers)."""
    rules = lark_parser().rules
    names = {str(r.origin.name) for r in rules} | {str(r.alias) for r in rules if r.alias}
    return {n for n in names if not n.startswith("_")}


def tree_names() -> set[str]:
    """The rules and aliases that appear as nodes of a parse tree (inlined `?rules` do not)."""
    names = set()
    for r in lark_parser().rules:
        if r.alias:
            names.add(str(r.alias))
        elif not r.options.expand1 and not str(r.origin.name).startswith("_"):
            names.add(str(r.origin.name))
    return names


@pytest.mark.parametrize("name", sorted(rule_names()))
def test_every_grammar_rule_is_documented(name: str) -> None:
    assert f"`{name}`" in DOC


@pytest.mark.parametrize("name", sorted(tree_names()))
def test_every_tree_rule_has_a_transformer_method(name: str) -> None:
    assert name in vars(FlowTransformer) or any(name in vars(base) for base in FlowTransformer.__mro__[1:3])


def test_the_builtin_table_is_generated_from_builtins() -> None:
    section = DOC.split(START, 1)[1].split(END, 1)[0]
    assert section == "\n" + builtins_markdown(), "run: python -m dataflow.lang.docs docs/language.md"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_is_used_in_a_runnable_example(name: str) -> None:
    assert any(re.search(rf"\b{name}\(", body) for body in EXAMPLES), name


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
@pytest.mark.usefixtures("examples_importable")  # the agents the examples call are examples/storefront/
def test_every_flow_example_in_the_docs_compiles(index: int) -> None:
    body = EXAMPLES[index]
    text = body if body.lstrip().startswith(("pipeline", "#")) else PREAMBLE + body
    flow = parse_flow(text, f"docs-example-{index}.flow")
    assert len(flow.topology()) > 0


def test_the_formatter_knows_every_statement_kind() -> None:
    statements = {"pipeline_decl", "record_decl", "topic_decl", "udf_decl", "stream_decl", "table_decl", "pipe_stmt"}
    assert statements <= tree_names()
    assert all(hasattr(_Formatter, s) for s in statements)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
@pytest.mark.usefixtures("examples_importable")  # the agents the examples call are examples/storefront/
def test_every_docs_example_formats_stably_to_the_same_plan(index: int) -> None:
    from dataflow.lang import format_source
    from dataflow.planner import plan
    from dataflow.planner.render import to_json

    body = EXAMPLES[index]
    text = body if body.lstrip().startswith(("pipeline", "#")) else PREAMBLE + body
    once = format_source(text)
    assert format_source(once) == once
    assert (to_json(plan(parse_flow(once).topology()), locations=False)
            == to_json(plan(parse_flow(text).topology()), locations=False))
