"""Session windows end to end: the visits example on memory:// and the local log, and
`dataflow query` of a session table, with exact tables and outputs."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.lang import parse_flow
from dataflow.loader import load_pipeline

from .conftest import record, run_flow

MIN = 60_000
T = 1_700_000_000_000 - 1_700_000_000_000 % (60 * MIN)  # a whole hour

# (user, minutes after T, page), in arrival order. Gap 30m, grace 1m.
VIEWS = [("u1", 0, "home"), ("u2", 0, "home"), ("u1", 10, "cart"),
         ("u2", 30.5, "blog"),  # more than 30m after u2's first view: a second session
         ("u2", 15, "about"),  # within 30m of both (and [0, 0] is still open): they merge into [0, 30.5]
         ("u1", 50, "home"),  # stream time 50m closes u1's [0, 10] (10 + 30 + 1 < 50); a new session
         ("u1", 30, "faq"),  # touches the closed [0, 10] (and the open [50, 50]): late, sessions stay > 30m apart
         ("u3", 120, "home")]  # stream time 120m closes every session but this one; the end of input closes it


def at(minutes: float) -> int:
    return T + int(minutes * MIN)


def bounds(start: float, end: float) -> dict[str, int]:
    return {"window_start": at(start), "window_end": at(end)}


def views() -> list[Any]:
    return [record({"user": u, "page": p, "ts": at(m)}, u) for u, m, p in VIEWS]


async def test_visits_example_merges_moves_and_closes_sessions(kind, tmp_path):
    flow = load_pipeline("examples/visits.flow", {"partitions": 1})
    run = await run_flow(kind, tmp_path, flow, {"views": views()})
    assert run.tables["visits"] == [
        (("u1", at(0)), {"views": 2, "pages": ["home", "cart"], **bounds(0, 10)}),
        (("u2", at(0)), {"views": 3, "pages": ["home", "blog", "about"], **bounds(0, 30.5)}),  # in arrival order
        (("u1", at(50)), {"views": 1, "pages": ["home"], **bounds(50, 50)}),
        (("u3", at(120)), {"views": 1, "pages": ["home"], **bounds(120, 120)}),
    ]
    assert [(orjson.loads(m.key), orjson.loads(m.value), m.timestamp) for m in run.topics["visit-updates"]] == [
        ("u1", {"views": 1, "pages": ["home"], **bounds(0, 0)}, at(0)),
        ("u2", {"views": 1, "pages": ["home"], **bounds(0, 0)}, at(0)),
        ("u1", {"views": 2, "pages": ["home", "cart"], **bounds(0, 10)}, at(10)),
        ("u2", {"views": 1, "pages": ["blog"], **bounds(30.5, 30.5)}, at(30.5)),
        ("u2", {"views": None, "pages": None, **bounds(30.5, 30.5)}, at(15)),  # retracted: merged into [0, 30.5]
        ("u2", {"views": 3, "pages": ["home", "blog", "about"], **bounds(0, 30.5)}, at(15)),
        ("u1", {"views": 1, "pages": ["home"], **bounds(50, 50)}, at(50)),
        ("u3", {"views": 1, "pages": ["home"], **bounds(120, 120)}, at(120)),
    ]
    # emit final: once each, when closed, by end; stamped with the session's last event time. The run is
    # bounded (until idle), so the end of its input closes u3's session too.
    assert [(orjson.loads(m.key), orjson.loads(m.value), m.timestamp) for m in run.topics["finished-visits"]] == [
        ("u1", {"views": 2, "exit": "cart", **bounds(0, 10)}, at(10)),
        ("u2", {"views": 3, "exit": "about", **bounds(0, 30.5)}, at(30.5)),
        ("u1", {"views": 1, "exit": "home", **bounds(50, 50)}, at(50)),
        ("u3", {"views": 1, "exit": "home", **bounds(120, 120)}, at(120)),
    ]
    assert run.monitor.as_dict()["late_events_by_step"] == {"visits": 1, "finished": 1}  # u1's view at 30m


async def test_an_event_that_only_touches_a_closed_session_is_late(kind, tmp_path):
    flow = load_pipeline("examples/visits.flow", {"partitions": 1})
    inputs = views()
    # right after u1@50m: 19.5m is recent enough for a session of its own (19.5 + 30 + 1 >= 50), but it
    # touches only u1's closed [0, 10] (and not [50, 50]): late. At the end, -5m is late by its own time.
    inputs.insert(6, record({"user": "u1", "page": "late", "ts": at(19.5)}, "u1"))
    inputs.append(record({"user": "u1", "page": "late", "ts": at(-5)}, "u1"))
    run = await run_flow(kind, tmp_path, flow, {"views": inputs}, batch_size=1)
    assert run.tables["visits"][0] == (("u1", at(0)), {"views": 2, "pages": ["home", "cart"], **bounds(0, 10)})
    assert len(run.tables["visits"]) == 4 and len(run.topics["visit-updates"]) == 8
    assert run.monitor.as_dict()["late_events_by_step"] == {"visits": 3, "finished": 3}  # 19.5m, 30m and -5m
    assert len(run.topics["finished-visits"]) == 4  # u3's closed by the end of input


def test_dataflow_query_prints_the_live_sessions(tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    Path("views.jsonl").write_bytes(b"".join(
        orjson.dumps({"user": u, "page": p, "ts": at(m)}) + b"\n" for u, m, p in VIEWS))
    flow = str(repo_root / "examples" / "visits.flow")
    result = CliRunner().invoke(app, ["run", flow, "--input", "views=views.jsonl", "--until-idle", "--data-dir", "d",
                                      "--set", "partitions=1", "--output", "visit-updates=updates.jsonl"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["query", flow, "visits", "u2", "--data-dir", "d", "--set", "partitions=1"])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line) for line in result.stdout.splitlines()] == [
        {"key": "u2", "value": {"views": 3, "pages": ["home", "blog", "about"], **bounds(0, 30.5)}}]
    result = CliRunner().invoke(app, ["query", flow, "visits", "--data-dir", "d", "--set", "partitions=1"])
    assert [(row["key"], row["value"]["window_start"]) for row in map(orjson.loads, result.stdout.splitlines())] == [
        ("u1", at(0)), ("u2", at(0)), ("u1", at(50)), ("u3", at(120))]


async def test_the_session_example_of_docs_state_md_sends_what_it_says(tmp_path, repo_root):
    doc = (repo_root / "docs" / "state.md").read_text()
    section = doc.split("### Session windows", 1)[1].split("\n## ", 1)[0]
    flow_text = re.findall(r"^```flow\n(.*?)^```", section, re.S | re.M)
    inputs, outputs = re.findall(r"^```jsonl\n(.*?)^```", section, re.S | re.M)
    assert len(flow_text) == 1
    views = [record(view, view["user"]) for view in map(orjson.loads, inputs.splitlines())]
    run = await run_flow("memory", tmp_path, parse_flow(flow_text[0], "state.md"), {"views": views})
    assert [{"key": k, "value": v} for k, v in run.pairs("visit-updates")] == list(
        map(orjson.loads, outputs.splitlines()))
    assert [(k, v["views"], v["window_end"]) for k, v in run.tables["visits"]] == [(("ann", 0), 4, 60000)]
