"""The driver runs what `dataflow run` runs: the same input gives the same outputs, record
for record, partition by partition (a repartition, a windowed table with a grace period and
late events, a filter and dead letters)."""
from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.testing import InputRecord, PipelineDriver

PIPELINE = """\
pipeline shop {
  partitions 3
}

record Payment {
  account: str
  amount: float
  ts: timestamp
}

topic payments: Payment key str event_time ts
topic large
topic totals

stream big = payments | filter amount > 80 | map { account, amount, doubled: amount * 2 }
big | to topic large

table per_account = payments
  | group_by account
  | window tumbling 10s grace 2s
  | aggregate { n: count(), total: sum(amount) } emit final
per_account.changes | to topic totals
"""

OUTPUTS = ["large", "totals", "shop-dead-letters"]


def input_lines() -> list[bytes]:
    """Keyed payments, somewhat out of order (some late), with malformed ones among them."""
    rng = random.Random(17)
    lines = []
    for i in range(400):
        ts = i * 250 + rng.choice([0, 0, 0, -1_500, -4_000, -13_000])
        account = rng.choice(["ann", "bob", "cy", "dee", "eve"])
        if i % 97 == 5:
            lines.append(b'{"key": "zed", "value": {"account": "zed", "amount": "lots", "ts": 5}}')
        elif i % 89 == 7:
            lines.append(b"{not json")
        else:
            payment = {"account": account, "amount": rng.randint(1, 100) * 1.0, "ts": max(ts, 0)}
            lines.append(orjson.dumps({"key": rng.choice([account, "other"]), "value": payment}))
    return lines


def run_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict]]:
    monkeypatch.chdir(tmp_path)
    Path("shop.flow").write_text(PIPELINE)
    Path("in.jsonl").write_bytes(b"\n".join(input_lines()) + b"\n")
    args = ["run", "shop.flow", "--broker", "memory://", "--keyed", "--input", "payments=in.jsonl", "--until-idle",
            "--quiet"]
    for topic in OUTPUTS:
        args += ["--output", f"{topic}={topic}.jsonl"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {topic: [orjson.loads(line) for line in Path(f"{topic}.jsonl").read_bytes().splitlines()]
            for topic in OUTPUTS}


def per_partition(rows: list[tuple[int, tuple]]) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for partition, row in rows:
        out.setdefault(partition, []).append(row)
    return out


def test_a_driver_run_and_dataflow_run_until_idle_give_identical_outputs(tmp_path, monkeypatch):
    ran = run_cli(tmp_path, monkeypatch)

    records = []
    for line in input_lines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            records.append(InputRecord(line))  # as `run --input` sends it: the bytes as they are
            continue
        records.append(InputRecord(obj["value"], key=obj["key"]))
    with PipelineDriver(Path("shop.flow")) as driver:
        driver.pipe_many("payments", records)
        driver.end_input()
        for topic in ["large", "totals"]:
            expected = per_partition([(r["partition"], (r["key"], r["value"], r["timestamp"])) for r in ran[topic]])
            got = per_partition([(r.partition, (r.key, r.value, r.timestamp)) for r in driver.read(topic)])
            assert got == expected, topic
        # A dead letter keeps the time it was received with, the wall clock of each run: the rest is the same.
        assert [(d.key, d.value, d.stage, d.reason, d.source) for d in driver.dead_letters()] == [
            (r["key"], r["value"], r["headers"]["dataflow.stage"], r["headers"]["dataflow.error"],
             r["headers"]["dataflow.source"]) for r in ran["shop-dead-letters"]]
        late = driver.monitor.as_dict()["late_events"]
    # The data exercises all of it: every partition of the windowed table, late events, both kinds of dead letter.
    assert {topic: len(rows) for topic, rows in ran.items()} == {"large": 69, "totals": 50, "shop-dead-letters": 10}
    assert {r["partition"] for r in ran["totals"]} == {0, 1, 2}
    assert late == 38
