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


def _doc_session() -> list[tuple[list[str], str]]:
    """The commands and outputs of the console block in docs/agents.md's "Asking a compiled pipeline"."""
    import re
    import shlex

    doc = (Path(__file__).resolve().parents[1] / "docs" / "agents.md").read_text()
    section = doc.split("### Asking a compiled pipeline", 1)[1]
    block = re.search(r"```console\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    lines = block.splitlines()
    return [(shlex.split(command[2:])[1:], output) for command, output in zip(lines[::2], lines[1::2])]


def test_the_docs_ask_session_writes_through_the_pipeline(tmp_path, monkeypatch):
    # The documented outputs, from a data directory that does not exist before the first ask.
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "examples").mkdir()
    for name in ("wordcount.flow", "fraud.flow"):
        (tmp_path / "examples" / name).write_text((root / "examples" / name).read_text())
    monkeypatch.chdir(tmp_path)
    session = _doc_session()
    assert [args[:1] for args, _ in session] == [["ask"]] * 3
    assert not (tmp_path / "new-dir").exists()
    for args, output in session:
        result = CliRunner().invoke(app, args)
        assert (result.exit_code, result.stdout) == (0, output + "\n"), (args, result.output)


def test_ask_says_in_its_help_that_it_writes_through():
    text = " ".join(CliRunner().invoke(app, ["ask", "--help"]).stdout.split())
    assert ("Asking writes through: the value goes into the agent's or the pipeline's source topic and is "
            "processed like any record, so it updates the pipeline's tables and state and reaches its output "
            "topics.") in text
