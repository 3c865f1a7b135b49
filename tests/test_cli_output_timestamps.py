"""The "timestamp" that `--output` and `dataflow tail` print is the record's event time, for a
sink and for an `echo` alike (not the time the record was written)."""
from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from dataflow.cli import app

PIPE = """\
pipeline stamps

record View { user: str, ts: timestamp(s) }
topic views: View partitions 1
topic echoed
topic out

views | event_time ts | echo echoed | map { user } | to topic out
"""


def test_sinks_and_echoes_carry_the_event_time_set_in_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("stamps.flow").write_text(PIPE)
    Path("views.jsonl").write_text('{"user": "ann", "ts": 1700000000.5}\n{"user": "bob", "ts": 1600000000}\n')
    run = CliRunner().invoke(app, ["run", "stamps.flow", "-i", "views=views.jsonl", "-o", "echoed=-", "-o", "out=-",
                                   "--until-idle", "-q"])
    assert run.exit_code == 0, run.output
    printed = sorted((row["topic"], row["value"]["user"], row["timestamp"])
                     for row in map(orjson.loads, run.stdout.splitlines()))
    assert printed == [("echoed", "ann", 1700000000500), ("echoed", "bob", 1600000000000),
                       ("out", "ann", 1700000000500), ("out", "bob", 1600000000000)]
    tail = CliRunner().invoke(app, ["tail", "echoed", "--from-beginning", "--data-dir", ".dataflow/stamps"])
    assert tail.exit_code == 0, tail.output
    assert [orjson.loads(line)["timestamp"] for line in tail.stdout.splitlines()] == [1700000000500, 1600000000000]
