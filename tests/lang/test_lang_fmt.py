"""`dataflow fmt`: canonical layout, idempotent, comments kept, same plan."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.flow"))


def plan_json(text: str) -> str:
    return to_json(plan(parse_flow(text, "x.flow").topology()), locations=False)


def comments(text: str) -> list[str]:
    return [c.strip() for c in re.findall(r"#[^\n]*", text)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_in_canonical_layout(path: Path) -> None:
    text = path.read_text()
    assert format_source(text, str(path)) == text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.usefixtures("examples_importable")
def test_round_trip_of_a_squashed_example(path: Path) -> None:
    """Squash an example onto as few lines as its comments allow: fmt restores the same plan, stably."""
    text = path.read_text()
    # Layout is free: only a comment needs the end of its line.
    squashed = "".join(line.strip() + ("\n" if "#" in line else " ") for line in text.splitlines())
    assert squashed.count("\n") < text.count("\n") - 3
    once = format_source(squashed)
    assert format_source(once) == once
    assert plan_json(once) == plan_json(text)
    assert comments(once) == comments(text)


MESSY = """\
# header comment
pipeline   demo{partitions 2,broker "kafka://k:9092"}
record R{a:int,b:optional str # trailing on b
,c:list<R2?>}
topic  in : R  partitions 2 key str   # the input
topic out
stream s=in|filter(a+1)*2>3 and not(b is null)|map{a,total:a*(a-1)}
  # about the window
table t = s |group_by a| window hopping 10m   grace 1s step 1m|aggregate{n:count(),x:sum(total)}emit final
t.changes|to topic out
"""

CANONICAL = """\
# header comment
pipeline demo {
  partitions 2
  broker "kafka://k:9092"
}
record R {
  a: int
  b: optional str  # trailing on b
  c: list<R2?>
}
topic in: R key str partitions 2  # the input
topic out
stream s = in
  | filter (a + 1) * 2 > 3 and not b is null
  | map { a, total: a * (a - 1) }
# about the window
table t = s
  | group_by a
  | window hopping 10m step 1m grace 1s
  | aggregate { n: count(), x: sum(total) } emit final
t.changes | to topic out
"""


def test_a_messy_file_gets_the_canonical_layout() -> None:
    assert format_source(MESSY) == CANONICAL
    assert format_source(CANONICAL) == CANONICAL


def test_blank_lines_between_declarations_are_kept_once() -> None:
    assert format_source("pipeline p\n\n\n\ntopic a\ntopic b\n\n# c\n\ntopic c\n") == (
        "pipeline p\n\ntopic a\ntopic b\n\n# c\n\ntopic c\n")


def test_comments_inside_blocks_and_stages() -> None:
    text = """\
pipeline p
topic t
t
  | aggregate {  # why
      n: count()  # how many
      # and the sum
      s: sum(x)
    }
  | changes  # updates
  | filter n >  # inside an expression
      2
  | to stdout
"""
    once = format_source(text)
    assert once == """\
pipeline p
topic t
t
  | aggregate {
      # why
      n: count()  # how many
      # and the sum
      s: sum(x)
    }
  | changes  # updates
  # inside an expression
  | filter n > 2
  | to stdout
"""
    assert format_source(once) == once


def test_long_pipes_and_blocks_break_across_lines() -> None:
    text = ("pipeline p topic t t | map { a_rather_long_field: x, another_long_field: y, and_a_third_one: z, "
            "fourth: w } | to stdout")
    assert format_source(text) == """\
pipeline p
topic t
t
  | map {
      a_rather_long_field: x
      another_long_field: y
      and_a_third_one: z
      fourth: w
    }
  | to stdout
"""


def test_strings_and_topic_names() -> None:
    assert format_source('pipeline "my-app" topic "plain" topic "with-dash" stream x = topic "plain" | '
                         'to topic "with-dash"') == (
        'pipeline "my-app"\ntopic plain\ntopic "with-dash"\nstream x = topic plain | to topic "with-dash"\n')


def test_formatting_a_broken_file_reports_the_error() -> None:
    with pytest.raises(FlowError) as info:
        format_source("pipeline p\ntopic t\nt | filtr x\n", "b.flow")
    assert str(info.value).startswith("b.flow:3:5: error: unknown stage 'filtr'")
