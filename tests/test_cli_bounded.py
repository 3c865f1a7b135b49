"""`dataflow run --until-idle` is a bounded run: the end of its input closes what waits for time.

Issue 12, finding 4: with `--until-idle`, `emit final` left the last window of each key
open and left joins never emitted their unmatched rows. Each expected output here is
computed by brute force from the generated input.
"""
from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.transport.base import partition_for

SUMS = '''
pipeline sums

record Reading {
  sensor: str
  v: int
  ts: timestamp
}

topic readings: Reading key str event_time ts partitions 2
topic closed

table per_sensor = readings
  | window tumbling 10s
  | aggregate { n: count(), total: sum(v) } emit final
per_sensor.changes | to topic closed
'''

CLICKS = '''
pipeline attribution

record Impression {
  impression_id: str
  ad_id: str
  ts: timestamp
}

record Click {
  impression_id: str
  ts: timestamp
}

topic impressions: Impression key str event_time ts partitions 2
topic clicks: Click key str event_time ts partitions 2
topic attributed

impressions | left join clicks within 10s | to topic attributed
'''

T0 = 1_700_000_000_000
WINDOW = 10_000


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def write_lines(path: str, rows: list) -> None:
    Path(path).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def out_values(path: str) -> list[tuple]:
    return [(r["key"], r["value"]) for r in map(orjson.loads, Path(path).read_text().splitlines())]


def readings(seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows, ts = [], T0
    for _ in range(300):
        ts += rng.randrange(0, 700)
        sensor = f"s{rng.randrange(7)}"
        rows.append({"key": sensor, "value": {"sensor": sensor, "v": rng.randrange(100), "ts": ts}})
    return rows


def windows(rows: list[dict]) -> dict[tuple[str, int], dict]:
    out: dict[tuple[str, int], dict] = {}
    for r in rows:
        v = r["value"]
        start = v["ts"] - v["ts"] % WINDOW
        w = out.setdefault((v["sensor"], start), {"n": 0, "total": 0, "window_start": start,
                                                  "window_end": start + WINDOW})
        w["n"] += 1
        w["total"] += v["v"]
    return out


def test_emit_final_with_until_idle_emits_every_window_of_every_key(workdir):
    Path("sums.flow").write_text(SUMS)
    rows = readings(seed=4)
    write_lines("in.jsonl", rows)
    result = invoke("sums.flow", "--keyed", "-i", "readings=in.jsonl", "-o", "closed=out.jsonl", "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    got = out_values("out.jsonl")
    expected = windows(rows)
    assert sorted((k, v["window_start"]) for k, v in got) == sorted(expected)  # each window once
    assert {(k, v["window_start"]): v for k, v in got} == expected


def test_until_idle_unbounded_leaves_the_last_windows_open_for_the_next_run(workdir):
    Path("sums.flow").write_text(SUMS)
    rows = readings(seed=9)
    write_lines("in.jsonl", rows)
    result = invoke("sums.flow", "--keyed", "-i", "readings=in.jsonl", "-o", "closed=out.jsonl",
                    "--until-idle", "--unbounded", "-q")
    assert result.exit_code == 0, result.output
    # Stream time is per partition: a window closes once its partition's highest time passes its end.
    high: dict[int, int] = defaultdict(int)
    for r in rows:
        p = partition_for(orjson.dumps(r["key"]), 2)
        high[p] = max(high[p], r["value"]["ts"])
    expected = {(s, start): w for (s, start), w in windows(rows).items()
                if start + WINDOW <= high[partition_for(orjson.dumps(s), 2)]}
    assert {(k, v["window_start"]): v for k, v in out_values("out.jsonl")} == expected
    assert len(out_values("out.jsonl")) == len(expected)
    # The next (bounded) run over the same state, with no new input, closes the rest (its
    # --output goes on where the last one stopped).
    again = invoke("sums.flow", "-o", "closed=rest.jsonl", "--until-idle", "-q")
    assert again.exit_code == 0, again.output
    rest = out_values("rest.jsonl")
    assert {(k, v["window_start"]): v for k, v in rest} == {
        key: w for key, w in windows(rows).items() if key not in expected}
    assert len(rest) + len(expected) == len(windows(rows))


def test_unbounded_needs_until_idle(workdir):
    Path("sums.flow").write_text(SUMS)
    result = invoke("sums.flow", "--unbounded")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --unbounded goes with --until-idle; hint: a run without --until-idle "
                                     "is unbounded already")


def test_a_left_join_emits_its_unmatched_rows_at_the_end_of_input(workdir):
    Path("clicks.flow").write_text(CLICKS)
    rng = random.Random(7)
    imps, clicks = [], []
    for i in range(120):
        ts = T0 + i * 3_000 + rng.randrange(2_000)
        imps.append({"key": f"i{i}", "value": {"impression_id": f"i{i}", "ad_id": f"a{i % 5}", "ts": ts}})
        if rng.random() < 0.5:  # clicked, sometimes too late to count
            cts = ts + rng.choice([1_000, 9_000, 10_000, 11_000, 30_000])
            clicks.append({"key": f"i{i}", "value": {"impression_id": f"i{i}", "ts": cts}})
    # Each input in time order: a click older than both inputs' time would be late (the join
    # has no grace), and the inputs are taken in time order across the two topics.
    clicks.sort(key=lambda c: c["value"]["ts"])
    write_lines("imps.jsonl", imps)
    write_lines("clicks.jsonl", clicks)
    result = invoke("clicks.flow", "--keyed", "-i", "impressions=imps.jsonl", "-i", "clicks=clicks.jsonl",
                    "-o", "attributed=out.jsonl", "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    click_at = {c["key"]: c["value"]["ts"] for c in clicks}
    expected = []
    for imp in imps:
        i, v = imp["key"], imp["value"]
        c = click_at.get(i)
        matched = c is not None and abs(c - v["ts"]) <= 10_000
        expected.append((i, {**v, "clicks_impression_id": i if matched else None,
                             "clicks_ts": c if matched else None}))
    assert sorted(out_values("out.jsonl"), key=lambda kv: kv[0]) == sorted(expected, key=lambda kv: kv[0])


def doc_example() -> str:
    """The `.flow` example of "Bounded and unbounded runs" in docs/state.md."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "state.md").read_text()
    section = text[text.index("## Bounded and unbounded runs"):]
    return section[section.index("```flow\n") + len("```flow\n"):section.index("```\n", section.index("```flow"))]


def test_the_bounded_run_example_of_the_docs_emits_every_window(workdir):
    Path("sensors.flow").write_text(doc_example())
    rows = readings(seed=21)
    write_lines("readings.jsonl", rows)
    result = invoke("sensors.flow", "--keyed", "--input", "readings=readings.jsonl", "--output", "closed=out.jsonl",
                    "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    got = out_values("out.jsonl")
    assert len(got) == len(windows(rows))
    assert {(k, v["window_start"]): v for k, v in got} == windows(rows)
