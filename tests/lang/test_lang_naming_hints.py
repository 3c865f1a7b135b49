"""Two unnamed steps that would derive one name: the hint says exactly what to write, and
what it says compiles (issue 12's new-user findings)."""
from __future__ import annotations

import pytest

from dataflow import Flow, Record, agg, session
from dataflow.lang import FlowError, parse_flow

HEADER = """\
pipeline visits
record View { user: str, page: str, ts: timestamp }
topic views: View
stream by_user = views | group_by user
"""

SESSIONS = """\
table a = by_user | window session 30s on ts grace 1m | aggregate { n: count() }
table b = by_user | window session 30s on ts grace 1m | aggregate { n: count() }
a | to stdout
b | to stdout
"""


def report(body: str) -> str:
    with pytest.raises(FlowError) as info:
        parse_flow(HEADER + body, "visits.flow")
    return str(info.value)


def test_two_unnamed_session_windows_of_named_tables_get_a_hint_naming_the_window() -> None:
    assert report(SESSIONS) == """\
visits.flow:6:21: error: this step would be named 'by_user.session_30s' like an earlier one; its topic or store \
name derives from it; name the window: `stream b_window = by_user | window session 30s on ts grace 1m`, then \
`table b = b_window | aggregate ...`
table b = by_user | window session 30s on ts grace 1m | aggregate { n: count() }
                    ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"""


def test_what_the_hint_says_compiles() -> None:
    fixed = SESSIONS.replace(
        "table b = by_user | window session 30s on ts grace 1m | aggregate { n: count() }",
        "stream b_window = by_user | window session 30s on ts grace 1m\ntable b = b_window | aggregate { n: count() }")
    flow = parse_flow(HEADER + fixed, "visits.flow")
    assert {"a", "b", "b_window", "by_user.session_30s"} <= {node.name for node in flow.topology().nodes()}


def test_in_an_unnamed_pipe_the_hint_derives_a_name_and_says_the_earlier_steps_elide() -> None:
    body = ("views | filter page != \"x\" | group_by user | window tumbling 1m | aggregate { n: count() } "
            "| to stdout\n")
    assert report(body + body.replace("1m", "2m")) == """\
visits.flow:6:30: error: this step would be named 'views.by_user' like an earlier one; its topic or store \
name derives from it; name the group by: `stream views_by_user_2 = views | ... | group_by user`, then \
`views_by_user_2 | window ...`
views | filter page != "x" | group_by user | window tumbling 2m | aggregate { n: count() } | to stdout
                             ^~~~~~~~~~~~~"""


class View(Record):
    user: str
    ts: int


def test_the_builder_hint_names_the_method_to_give_the_name_to() -> None:
    flow = Flow("visits")
    by_user = flow.source("views", value=View).group_by("user", name="by_user")
    by_user.window(session("30s", on="ts")).aggregate({"n": agg.count()}, name="a")
    with pytest.raises(ValueError) as e:
        by_user.window(session("30s", on="ts")).aggregate({"n": agg.count()}, name="b")
    assert str(e.value).split(": ", 1)[1] == (
        "this step would be named 'by_user.session_30s' like an earlier one; its topic or store name derives "
        "from it, so give it a name: .window(..., name=\"...\")")
