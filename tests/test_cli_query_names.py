"""`dataflow query` on a name that is not a table says what it is and which tables there are."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow.cli import app

ADS = """\
pipeline ads

record Impression { imp_id: str, ad_id: str, shown_at: timestamp(s) }
record AdClick { imp_id: str, clicked_at: timestamp(s) }
topic impressions: Impression key str partitions 1
topic ad_clicks: AdClick key str partitions 1

stream shown = impressions | event_time shown_at
stream clicked = ad_clicks | event_time clicked_at
stream matched = shown | join clicked within 10s
matched | to stdout
stream per_ad_sessions = shown | group_by ad_id | window session 1m
table per_ad = per_ad_sessions | aggregate { n: count() }
per_ad | to stdout
"""

TABLES = "its tables are: matched.left, matched.right, per_ad"
TO_TABLE = ("hint: to query a stream's latest row per key, make a table of it: `| to_table` (.flow), "
            "`.to_table()` (Python)")


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("ads")
    (root / "ads.flow").write_text(ADS)
    (root / "imp.jsonl").write_text('{"key": "i1", "value": {"imp_id": "i1", "ad_id": "a", "shown_at": 1700000000}}\n')
    result = CliRunner().invoke(app, ["run", str(root / "ads.flow"), "--data-dir", str(root / "data"), "--keyed",
                                      "-i", f"impressions={root / 'imp.jsonl'}", "--until-idle", "-q"])
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize(("name", "error"), [
    ("matched", "pipeline ads has no table 'matched': it is a stream (the output of its join step; matched.left "
                f"and matched.right buffer its inputs), which keeps no rows; {TABLES}; {TO_TABLE}"),
    ("shown", f"pipeline ads has no table 'shown': it is a stream (the output of its event_time step), which keeps "
              f"no rows; {TABLES}; {TO_TABLE}"),
    ("impressions", "pipeline ads has no table 'impressions': it is a stream (read from the topic impressions), "
                    f"which keeps no rows; {TABLES}; {TO_TABLE}"),
    ("per_ad_sessions", "pipeline ads has no table 'per_ad_sessions': it is a window, and its rows are in the "
                        f"table 'per_ad'; {TABLES}"),
    ("per_adz", f"pipeline ads has no table 'per_adz'; did you mean 'per_ad'? {TABLES}"),
    ("nothing", f"pipeline ads has no table 'nothing'; {TABLES}"),
])
def test_a_name_that_is_not_a_table_says_what_it_is(ran, name, error):
    result = CliRunner().invoke(app, ["query", str(ran / "ads.flow"), name, "--data-dir", str(ran / "data")])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: {error}\n")


def test_the_table_itself_answers(ran):
    result = CliRunner().invoke(app, ["query", str(ran / "ads.flow"), "per_ad", "--data-dir", str(ran / "data")])
    assert (result.exit_code, result.stdout) == (
        0, '{"key":"a","value":{"n":1,"window_start":1700000000000,"window_end":1700000000000}}\n')
