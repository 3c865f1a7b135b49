"""`.flow` join conditions: how `on KEYS and CONDITION` parses, its diagnostics, and fmt."""
from __future__ import annotations

import pytest

from dataflow import Flow, Record, col, key
from dataflow.ir import expr as ir
from dataflow.ir import nodes as n
from dataflow.lang import FlowError, format_source, parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json

HEADER = """\
pipeline ads

record Impression {
  imp_id: str
  ad_id: str
  n: int
}

record Click {
  imp_id: str
  ad_id: str
  flag: bool
}

topic impressions: Impression key str
topic clicks: Click key str
topic out
"""


class Impression(Record):
    imp_id: str
    ad_id: str
    n: int


class Click(Record):
    imp_id: str
    ad_id: str
    flag: bool


def joined(body: str) -> n.Join:
    flow = parse_flow(HEADER + body, "ads.flow")
    return next(node for node in flow.topology().nodes() if isinstance(node, n.Join))


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        parse_flow(HEADER + body, "ads.flow")
    return str(info.value)


def plan_json(flow: Flow) -> str:
    return to_json(plan(flow.topology()), locations=False)


def builder(**join: object) -> Flow:
    flow = Flow("ads")
    flow.topic("impressions", key=str, value=Impression)
    flow.topic("clicks", key=str, value=Click)
    flow.topic("out")
    clicks, impressions = flow.source("clicks"), flow.source("impressions")
    clicks.join(impressions, within="10m", name="j", **join).to("out")  # type: ignore[arg-type]
    return flow


# --------------------------------------------------------------------------- parsing
def test_the_first_and_after_the_keys_starts_the_condition() -> None:
    node = joined("stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id == impressions_imp_id\n"
                  "j | to topic out\n")
    assert ir.render(node.condition) == "imp_id == impressions_imp_id"  # type: ignore[arg-type]
    assert plan_json(parse_flow(HEADER + "stream j = clicks | join impressions within 10m on ad_id = ad_id "
                                         "and imp_id == impressions_imp_id\nj | to topic out\n")) == \
        plan_json(builder(on="ad_id", right_on="ad_id", condition=col("imp_id") == col("impressions_imp_id")))


def test_everything_after_the_first_and_is_the_condition() -> None:
    node = joined("stream j = clicks | join impressions within 10m on ad_id and flag and n > 1 or imp_id == \"x\"\n"
                  "j | to topic out\n")
    assert ir.render(node.condition) == 'flag and n > 1 or imp_id == "x"'  # type: ignore[arg-type]


def test_a_condition_with_one_key_and_options_in_any_order() -> None:
    a = parse_flow(HEADER + "stream j = clicks | join impressions on ad_id and n > 1 within 10m\nj | to topic out\n")
    b = parse_flow(HEADER + "stream j = clicks | join impressions within 10m on ad_id and n > 1\nj | to topic out\n")
    assert plan_json(a) == plan_json(b) == plan_json(builder(on="ad_id", condition=col("n") > 1))


def test_key_as_a_join_key_means_no_re_key() -> None:
    a = parse_flow(HEADER + "stream j = clicks | join impressions within 10m on _key and n > 1\nj | to topic out\n")
    assert plan_json(a) == plan_json(builder(condition=col("n") > 1))
    b = parse_flow(HEADER + "stream j = clicks | join impressions within 10m on _key = _key\nj | to topic out\n")
    assert plan_json(b) == plan_json(builder())


def test_old_joins_keep_their_meaning() -> None:
    """Keys that were valid before (any expression up to a comparison) parse to the same plan."""
    for keys, on, right_on in [("ad_id", "ad_id", None), ("ad_id = imp_id", "ad_id", "imp_id"),
                               ("lower(ad_id) = upper(imp_id)", None, None),
                               ("imp_id + \"-\" = lower(imp_id)", None, None),
                               ("ad_id == imp_id = n > 1", None, None)]:
        flow = parse_flow(HEADER + f"stream j = clicks | join impressions within 10m on {keys}\nj | to topic out\n")
        node = next(x for x in flow.topology().nodes() if isinstance(x, n.Join))
        assert node.condition is None, keys
        if on is not None:
            assert plan_json(flow) == plan_json(builder(on=on, right_on=right_on)), keys


def test_a_bool_key_is_written_in_parentheses() -> None:
    node = joined("stream j = clicks | join impressions within 10m on (flag and true) = (n > 1) and n > 2\n"
                  "j | to topic out\n")
    assert ir.render(node.condition) == "n > 2"  # type: ignore[arg-type]
    flow = parse_flow(HEADER + "stream j = clicks | join impressions within 10m on (flag and true) = (n > 1) "
                               "and n > 2\nj | to topic out\n")
    keys = [x for x in flow.topology().nodes() if isinstance(x, n.GroupBy)]
    assert sorted(ir.render(x.key) for x in keys) == ["flag and true", "n > 1"]


def test_table_table_condition_is_written_on_key() -> None:
    body = ("table a = topic impressions\ntable b = topic clicks\n"
            "table j = a | left join b on _key and imp_id == b_imp_id\nj | to topic out\n")
    node = joined(body)
    assert (node.how, ir.render(node.condition)) == ("left", "imp_id == b_imp_id")  # type: ignore[arg-type]
    flow = Flow("ads")
    flow.topic("out")
    a = flow.table("impressions", key=str, value=Impression, name="a")
    b = flow.table("clicks", key=str, value=Click, name="b")
    a.join(b, how="left", condition=col("imp_id") == col("b_imp_id"), name="j").to("out")
    assert plan_json(parse_flow(HEADER + body)) == plan_json(flow)


def test_stream_table_condition_keeps_the_table_key() -> None:
    body = "table imps = topic impressions\nstream j = clicks | join imps on imp_id and n > 1\nj | to topic out\n"
    assert ir.render(joined(body).condition) == "n > 1"  # type: ignore[arg-type]


# --------------------------------------------------------------------------- diagnostics
def test_a_condition_that_is_not_a_bool_says_what_a_join_condition_is() -> None:
    assert report("stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id\n"
                  "j | to topic out\n") == """\
ads.flow:18:70: error: the join condition must be a bool, got str; \
a join condition is true for the pairs of records that match: compare fields of the two sides, \
e.g. imp_id == impressions_imp_id
stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id
                                                                     ^~~~~~"""


def test_the_issue_example_comparing_a_field_with_itself() -> None:
    assert report("stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id == imp_id\n"
                  "j | to topic out\n") == """\
ads.flow:18:70: error: the join condition compares 'imp_id' with itself, so it is always true; \
the right input's 'imp_id' is called 'impressions_imp_id' in the joined row
stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id == imp_id
                                                                     ^~~~~~~~~~~~~~~~"""


def test_an_unknown_field_in_a_condition() -> None:
    assert report("stream j = clicks | join impressions within 10m on ad_id and zzz > 1\n"
                  "j | to topic out\n") == """\
ads.flow:18:62: error: unknown field 'zzz' in the joined row; \
the condition reads the joined row: imp_id, ad_id, flag, impressions_imp_id, impressions_ad_id, n
stream j = clicks | join impressions within 10m on ad_id and zzz > 1
                                                             ^~~"""
    assert report("stream j = clicks | join impressions within 10m on ad_id and flg\nj | to topic out\n") == """\
ads.flow:18:62: error: unknown field 'flg' in the joined row; did you mean 'flag'?
stream j = clicks | join impressions within 10m on ad_id and flg
                                                             ^~~"""


def test_a_condition_cannot_read_the_metadata_of_one_record() -> None:
    assert report("stream j = clicks | join impressions within 10m on ad_id and _offset > 3\n"
                  "j | to topic out\n").splitlines()[0] == (
        "ads.flow:18:62: error: a join condition cannot read _offset: a joined row comes from two records; "
        "compare fields of the two sides instead")


def test_key_and_timestamp_in_a_condition_are_the_joined_row_s() -> None:
    node = joined('stream j = clicks | join impressions within 10m on ad_id and _key != "x" and _timestamp > 0\n'
                  "j | to topic out\n")
    assert ir.render(node.condition) == '_key != "x" and _timestamp > 0'  # type: ignore[arg-type]


def test_an_outer_join_of_two_tables_cannot_take_a_condition() -> None:
    assert report("table a = topic impressions\ntable b = topic clicks\n"
                  "table j = a | outer join b on _key and n > 1\nj | to topic out\n").splitlines()[0] == (
        "ads.flow:20:15: error: an outer join of two tables cannot take a condition: where it is false, both "
        "sides' rows would need the one key; use a left join (the right side's fields are null where the "
        "condition is false)")


def test_a_table_join_keys_must_be_key() -> None:
    assert report("table a = topic impressions\ntable b = topic clicks\n"
                  "table j = a | join b on ad_id and n > 1\nj | to topic out\n").splitlines()[0] == (
        "ads.flow:20:22: error: tables are joined on their keys; 'on' re-keys a stream; re-key the table's input "
        "before it becomes a table; a condition alone is written 'on _key and CONDITION'")


def test_double_equals_between_keys_keeps_its_hint_with_a_condition() -> None:
    assert report("stream j = clicks | join impressions within 10m on ad_id == ad_id and n > 1\n"
                  "j | to topic out\n").splitlines()[0] == (
        "ads.flow:18:49: error: join keys are written 'on left_key = right_key', not with '=='; "
        "on ad_id = ad_id and n > 1")


def test_builder_condition_errors_point_at_the_builder_call() -> None:
    from dataflow.planner import check

    flow = builder(on="ad_id", condition=col("imp_id"))
    [d] = check(flow.topology())
    assert (d.message, d.rule) == ("the join condition must be a bool, got str", "type")
    assert str(d.loc).endswith(f"{__name__.split('.')[-1]}.py:{_builder_join_line()}")
    flow = builder(condition=key() == "x")
    assert check(flow.topology()) == []


def _builder_join_line() -> int:
    import inspect
    lines, start = inspect.getsourcelines(builder)
    return start + next(i for i, line in enumerate(lines) if "clicks.join(" in line)


# --------------------------------------------------------------------------- fmt
@pytest.mark.parametrize("written, canonical", [
    ("on   ad_id=ad_id   and imp_id==impressions_imp_id", "on ad_id = ad_id and imp_id == impressions_imp_id"),
    ("on ad_id and (flag and n > 1)", "on ad_id and flag and n > 1"),
    ("on ad_id and (flag or n > 1) and n < 9", "on ad_id and (flag or n > 1) and n < 9"),
    ("on (flag and true) = (n > 1) and n > 2", "on (flag and true) = n > 1 and n > 2"),
    ("on (not flag) = (n > 2) and n > 2", "on (not flag) = n > 2 and n > 2"),
])
def test_fmt_prints_conditions_canonically(written: str, canonical: str) -> None:
    text = HEADER + f"stream j = clicks | join impressions within 10m {written}\nj | to topic out\n"
    once = format_source(text)
    assert f"join impressions within 10m {canonical}\n" in once
    assert format_source(once) == once
    assert plan_json(parse_flow(once)) == plan_json(parse_flow(text))


# --------------------------------------------------------------------------- plans
def test_the_plan_shows_the_condition_in_text_json_and_dot() -> None:
    from dataflow.planner.render import describe, to_dot, to_text

    p = plan(builder(on="ad_id", right_on="ad_id", condition=col("imp_id") == col("impressions_imp_id")).topology())
    assert [line for line in to_text(p, locations=False).splitlines() if "Join:" in line] == [
        "  Join: j [inner, within 10m, condition: imp_id == impressions_imp_id]"]
    [node] = [x for a in describe(p, locations=False)["agents"] for x in a["nodes"] if x["kind"] == "join"]
    assert {k: node[k] for k in ("how", "within", "condition")} == {
        "how": "inner", "within": "10m", "condition": "imp_id == impressions_imp_id"}
    assert [line for line in to_dot(p).splitlines() if '"j" [' in line] == [
        '    "j" [shape=box, label="Join\\nj\\ninner, within 10m, condition: imp_id ==\\nimpressions_imp_id"];']
    # a join without a condition prints as it always did
    plain = plan(builder(on="ad_id", right_on="ad_id").topology())
    [node] = [x for a in describe(plain, locations=False)["agents"] for x in a["nodes"] if x["kind"] == "join"]
    assert "condition" not in node


# --------------------------------------------------------------------------- old files
OLD_JOIN_ON = 'join_on: "on" expr ("=" expr)?\n'
OLD_KEYS = ["ad_id", "ad_id = imp_id", "lower(ad_id) = upper(imp_id)", 'imp_id + "-" = lower(imp_id)',
            "ad_id == imp_id = n > 1", "(flag and true) = (n > 1)", "-to_int(imp_id) = n * 2"]


def _old_parser() -> object:
    """The grammar before join conditions, whose `on` took any expression as a key."""
    from lark import Lark

    from dataflow.lang import parser

    text = parser.grammar_text()
    start = text.index("// keys are comparisons at most")
    end = text.index("join_condition: \"and\" expr\n") + len("join_condition: \"and\" expr\n")
    old = Lark(text[:start] + OLD_JOIN_ON + text[end:], parser="lalr", lexer="contextual", propagate_positions=True,
               maybe_placeholders=False, lexer_callbacks={"COMMENT": parser._keep_comment})
    return old


def _old_files() -> list[str]:
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "language.md").read_text()
    blocks = re.findall(r"^```flow( preamble)?\n(.*?)^```", doc, re.S | re.M)
    preamble = next(body for marker, body in blocks if marker)
    texts = [body if body.lstrip().startswith(("pipeline", "#")) else preamble + body
             for marker, body in blocks if not marker and " join " in body and "and CONDITION" not in body]
    texts = [t for t in texts if " and " not in t.split(" join ", 1)[1].split("\n", 1)[0]]
    texts += [p.read_text() for p in sorted((root / "examples").glob("*.flow"))]
    texts += [HEADER + f"stream j = clicks | join impressions within 10m on {keys}\nj | to topic out\n"
              for keys in OLD_KEYS]
    return texts


@pytest.mark.usefixtures("examples_importable")
def test_files_without_conditions_compile_to_the_plans_the_old_grammar_gave(monkeypatch) -> None:
    from dataflow.lang import parser

    texts = _old_files()
    assert len(texts) > len(OLD_KEYS) + 5
    new = [plan_json(parse_flow(t)) for t in texts]
    monkeypatch.setattr(parser, "lark_parser", _old_parser)
    old = [plan_json(parse_flow(t)) for t in texts]
    assert old == new
    # and the old grammar is really in use: it read the issue's join as a right key `ad_id and ...`
    with pytest.raises(FlowError, match="'and' needs a bool, got str"):
        parse_flow(HEADER + "stream j = clicks | join impressions within 10m on ad_id = ad_id and imp_id == imp_id\n"
                            "j | to topic out\n")


def test_the_grammar_has_no_lalr_conflicts() -> None:
    """lark resolves a shift/reduce conflict silently as a shift (logging it): none may exist."""
    import logging

    from lark import Lark, logger

    from dataflow.lang.parser import grammar_text

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        Lark(grammar_text(), parser="lalr", lexer="contextual", maybe_placeholders=False, cache=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [m for m in seen if "conflict" in m.lower()] == []
