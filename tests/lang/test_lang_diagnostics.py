"""Whole-text diagnostics: each mistake gives exactly one message at the right line and column."""
from __future__ import annotations

import re

import pytest

from dataflow.lang import FlowError, format_diagnostics, parse_flow
from dataflow.ir.diagnostics import Diagnostic
from dataflow.ir.location import SourceLocation

HEADER = """\
pipeline fraud

record Withdrawal {
  account_id: str
  amount: float
  country: str
}

topic withdrawals: Withdrawal key str
topic alerts
"""


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        parse_flow(HEADER + body, "fraud.flow")
    return str(info.value)


def test_a_typo_in_a_field_name() -> None:
    assert report("stream large = withdrawals | filter amout > 1000\nlarge | to topic alerts\n") == """\
fraud.flow:11:37: error: unknown field 'amout' in Withdrawal; did you mean 'amount'?
stream large = withdrawals | filter amout > 1000
                                    ^~~~~"""


def test_a_missing_pipe() -> None:
    assert report("stream large = withdrawals\n  filter amount > 1000\nlarge | to topic alerts\n") == """\
fraud.flow:12:3: error: expected '|' before 'filter'; each stage of a pipe starts with '|'
  filter amount > 1000
  ^~~~~~"""


def test_a_missing_pipe_on_one_line() -> None:
    assert report("withdrawals | filter amount > 1000 to topic alerts\n") == """\
fraud.flow:11:36: error: expected '|' before 'to'; each stage of a pipe starts with '|'
withdrawals | filter amount > 1000 to topic alerts
                                   ^~"""


def test_an_unknown_function() -> None:
    assert report('withdrawals | filter lowr(country) == "nl" | to topic alerts\n') == """\
fraud.flow:11:22: error: unknown function 'lowr'; did you mean 'lower'?
withdrawals | filter lowr(country) == "nl" | to topic alerts
                     ^~~~"""


def test_a_type_error() -> None:
    assert report("withdrawals | filter country > 1000 | to topic alerts\n") == """\
fraud.flow:11:22: error: cannot compare str with int using '>'
withdrawals | filter country > 1000 | to topic alerts
                     ^~~~~~~~~~~~~~"""


def test_an_unknown_stage_names_the_closest() -> None:
    assert report("withdrawals | filtr amount > 1 | to topic alerts\n") == """\
fraud.flow:11:15: error: unknown stage 'filtr'; did you mean 'filter'?
withdrawals | filtr amount > 1 | to topic alerts
              ^~~~~"""


def test_independent_mistakes_are_all_reported() -> None:
    text = report("stream a = withdrawls | filter amount > 1\n"
                  "stream b = withdrawals | map { x: amount * 2 }\n"
                  "b | to topic alert\n"
                  "a | to topic alerts\n")
    assert text == """\
fraud.flow:11:12: error: unknown stream, table or topic 'withdrawls'; did you mean 'withdrawals'?
stream a = withdrawls | filter amount > 1
           ^~~~~~~~~~
fraud.flow:13:14: error: unknown topic 'alert'; did you mean 'alerts'?
b | to topic alert
             ^~~~~"""


def test_several_syntax_errors_are_reported() -> None:
    text = report("stream a = withdrawals | filter amount >\n"
                  "stream b = withdrawals | map { x: }\n"
                  "b | to topic alerts\n")
    assert text == """\
fraud.flow:11:41: error: unfinished statement; expected an expression; 'stream' on line 12 starts a new declaration
stream a = withdrawals | filter amount >
                                        ^
fraud.flow:12:35: error: unexpected '}'; expected an expression
stream b = withdrawals | map { x: }
                                  ^"""


def test_unterminated_string() -> None:
    assert report('withdrawals | filter country == "nl | to topic alerts\n') == """\
fraud.flow:11:33: error: unterminated string; close it with " on the same line
withdrawals | filter country == "nl | to topic alerts
                                ^"""


def test_end_of_file_inside_an_expression() -> None:
    assert report("withdrawals | filter (amount > 1") == """\
fraud.flow:11:33: error: unexpected end of file; expected ')'
withdrawals | filter (amount > 1
                                ^"""


def test_single_equals_gets_a_hint() -> None:
    # `and`/`or` are listed since join keys stop at a comparison (so '=' no longer follows any expression)
    assert report("withdrawals | filter amount = 1 | to topic alerts").splitlines()[0] == (
        "fraud.flow:11:29: error: unexpected '='; expected a new declaration, '|', 'and' or 'or'; compare with '=='")


def test_settings_are_checked_one_by_one() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow('pipeline p { partitons 3, partitions "a", processing_guarantee twice }\n', "p.flow")
    assert str(info.value) == """\
p.flow:1:14: error: unknown setting 'partitons'; did you mean 'partitions'?
pipeline p { partitons 3, partitions "a", processing_guarantee twice }
             ^~~~~~~~~
p.flow:1:27: error: setting 'partitions' must be a whole number >= 1, not a string
pipeline p { partitons 3, partitions "a", processing_guarantee twice }
                          ^~~~~~~~~~~~~~
p.flow:1:43: error: setting 'processing_guarantee' must be one of at_least_once, exactly_once, not twice
pipeline p { partitons 3, partitions "a", processing_guarantee twice }
                                          ^~~~~~~~~~~~~~~~~~~~~~~~~~"""


def test_overrides_apply_and_are_checked() -> None:
    flow = parse_flow("pipeline p { partitions 2 }\ntopic t\nt | to stdout", overrides={"partitions": "8"})
    assert flow.settings.partitions == 8
    with pytest.raises(FlowError) as info:
        parse_flow("pipeline p\ntopic t\nt | to stdout", "p.flow", overrides={"partitons": "8"})
    assert str(info.value).splitlines()[0] == (
        "p.flow:1:1: error: unknown setting 'partitons' (an override); did you mean 'partitions'?")


def test_unknown_types_and_records_declared_twice() -> None:
    with pytest.raises(FlowError) as info:
        parse_flow("pipeline p\nrecord A { n: integer }\nrecord B { a: A, c: Strng }\nrecord B { }\n", "t.flow")
    messages = [str(d) for d in info.value.diagnostics]
    assert messages == [
        "t.flow:2:15: error: unknown type 'integer'; did you mean 'int'?",
        "t.flow:3:21: error: unknown type 'Strng'; did you mean 'str'?",
    ]  # record A failed, so `a: A` stays quiet; B failed, so its second declaration is not a duplicate


def test_the_planner_rules_point_at_the_flow_source() -> None:
    text = report("stream w = withdrawals | window tumbling 1m\nw | to topic alerts\n")
    assert text.splitlines()[0].startswith("fraud.flow:11:26: error: window 'w' is not followed by an aggregation")


def test_declared_kind_must_match_the_pipe() -> None:
    text = report("stream t = withdrawals | group_by account_id | aggregate { n: count() }\n")
    assert text.splitlines()[0] == ("fraud.flow:11:8: error: 't' is declared as a stream, but its pipe makes a "
                                    "table; write `table t = ...`, or end the pipe with '| changes'")


def test_stream_steps_on_a_table_say_what_to_do() -> None:
    text = report("table t = withdrawals | group_by account_id | aggregate { n: count() }\n"
                  "t | filter n > 2 | to topic alerts\n")
    assert text.splitlines()[0] == ("fraud.flow:12:5: error: 'filter' needs a stream, but its input is a table; "
                                    "insert '| changes' to use the stream of the table's updates")


@pytest.mark.parametrize("body", [
    "withdrawals | filter amount > ) | to stdout\n",
    "withdrawals | map { a: 1 b: } | to stdout\n",
    "withdrawals | window tumbling 5 | aggregate { n: count() }\n",
    "withdrawals | to topic\n",
    "topic x: list<str key str\n",
    "udf f(str -> str = \"a:b\"\n",
    "stream = withdrawals | to stdout\n",
    "withdrawals -> to stdout\n",
])
def test_expected_tokens_are_never_lark_names(body: str) -> None:
    text = report(body)
    assert not re.search(r"__ANON|\b[A-Z]{3,}\b|\$END", text), text
    assert re.match(r"fraud\.flow:\d+:\d+: error: ", text)


def test_format_diagnostics_without_source_or_span() -> None:
    d1 = Diagnostic("boom", SourceLocation("a.flow", 1, 3), "try again")
    d2 = Diagnostic("elsewhere", SourceLocation("b.py", 4, 1))
    d3 = Diagnostic("past the end", SourceLocation("a.flow", 3, 1))
    assert format_diagnostics([d1, d2, d3], {"a.flow": "ab\tcd\n"}) == (
        "a.flow:1:3: error: boom; try again\nab\tcd\n  ^\nb.py:4:1: error: elsewhere\n"
        "a.flow:3:1: error: past the end")


def test_tabs_keep_the_caret_aligned() -> None:
    d = Diagnostic("x", SourceLocation("a.flow", 1, 3, 1, 5))
    assert format_diagnostics([d], {"a.flow": "\t\tabc"}).splitlines()[2] == "\t\t^~"


@pytest.mark.parametrize("body, first_line", [
    ("pipeline other\n", "fraud.flow:11:1: error: a file has one pipeline header, at the top; "
                         "put its settings in the header: `pipeline NAME { setting value }`"),
    ("withdrawals | to sdtout\n", "fraud.flow:11:18: error: unexpected name 'sdtout'; expected 'agent', 'file', 'stdout' or "
                                  "'topic'; did you mean 'stdout'?"),
    ("withdrawals | filter amount > 1 || amount < 0 | to stdout\n",
     "fraud.flow:11:34: error: unexpected '|'; expected a stage such as 'filter' or 'map'; write 'and' and 'or'"),
    ("withdrawals | filter country == 'nl' | to stdout\n",
     "fraud.flow:11:33: error: strings use double quotes; write \"text\" instead of 'text'"),
    ("record R { a int }\n", "fraud.flow:11:14: error: unexpected name 'int'; expected ':'"),
    ("withdrawals | join withdrawals within 5 | to stdout\n",
     "fraud.flow:11:39: error: unexpected number 5; expected a duration like 30s; "
     "a duration has a unit: 500ms, 10s, 5m, 1h or 1d"),
])
def test_more_syntax_messages(body: str, first_line: str) -> None:
    assert report(body).splitlines()[0] == first_line


def test_load_flow_reads_utf8_with_or_without_a_bom(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dataflow.lang import load_flow

    path = tmp_path / "bom.flow"
    path.write_bytes("\ufeffpipeline p\ntopic t\nt | to stdout\n".encode("utf-8"))
    assert load_flow(path).name == "p"
    path.write_bytes(b"pipeline p\ntopic t\nt | filter x == \"\xff\" | to stdout\n")
    with pytest.raises(FlowError) as info:
        load_flow(path)
    assert str(info.value.diagnostics[0]) == f"{path}:3:18: error: this file is not UTF-8 text; save it as UTF-8"
