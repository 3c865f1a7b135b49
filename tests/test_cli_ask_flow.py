"""`dataflow ask` on a compiled pipeline: through a source topic, on the embedded log."""
from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dataflow.cli import app

PIPELINE = """pipeline tally

topic votes
topic totals

table counts = votes | group_by choice | aggregate { n: count() }
counts.changes | to topic totals
"""


def ask(*args: str):
    return CliRunner().invoke(app, ["ask", *args])


def test_ask_a_flow_through_its_source_topic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tally.flow").write_text(PIPELINE)
    first = ask("tally.flow", "votes", "--value", '{"choice": "tea"}')
    assert (first.exit_code, first.stdout) == (0, '{"n":1}\n'), first.output
    # the state the asks built up persists in the data directory, as any run's does
    second = ask("tally.flow", "votes", "--value", '{"choice": "tea"}')
    assert second.stdout == '{"n":2}\n'


def test_asking_through_a_topic_that_is_not_a_source_says_which_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tally.flow").write_text(PIPELINE)
    result = ask("tally.flow", "totals", "--value", "1")
    assert result.exit_code == 1
    assert result.stderr == "error: pipeline tally has no source topic 'totals'; ask through one of: votes\n"
