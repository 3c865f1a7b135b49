"""SIGKILL a time-aligned join on the local log, restart until done: exactly-once still holds.

A stream-table left join (orders keyed by customer, a customers table whose tiers change
over time) reads its two inputs in event-time order, with records buffered across fetches.
Killed mid-slice (a map after the join stops dead) or right after a commit's transaction,
then restarted, the run must end exactly as an uninterrupted one: the same joined rows per
key, in the same order, and the same totals. The answer depends on the order the inputs are
taken in, so replaying buffered records from the wrong offset, or committing past one, shows.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow.loader import load_pipeline
from dataflow.planner import plan as build_plan
from dataflow.runtime.query import read_table
from dataflow.transport.base import TP
from dataflow.transport.local import LocalTransport

from .test_crash_stateful import run_and_kill, run_to_end, stores_behind

pytestmark = pytest.mark.slow

SEED = 1212
ORDERS = 2000
CUSTOMERS = 60
KILLS = 6
SETTINGS = ["--set", "batch_size=40", "--set", "commit_every=150"]
T0 = 1_700_000_000_000

PIPELINE = '''
import os
from pathlib import Path

from dataflow import Flow, Record, agg

MODE = os.environ.get("CRASH_MODE")
AT = int(os.environ.get("CRASH_AT", "0"))


def _hang():
    Path(os.environ["CRASH_MARKER"]).write_text(MODE)
    while True:  # busy, no sleep: the test kills us here
        pass


def gate(v):
    if MODE == "join" and v["id"] >= AT:
        _hang()
    return v


if MODE == "commit":
    from dataflow.runtime.state import StateManager

    _flush = StateManager.flush
    _calls = [0]

    async def flush(self, results):
        if results:  # the transaction carried changelog records
            _calls[0] += 1
            if _calls[0] >= AT:
                _hang()
        return await _flush(self, results)

    StateManager.flush = flush


class Customer(Record):
    tier: str
    since: int


class Order(Record):
    id: int
    amount: int
    ts: int


flow = Flow("aligncrash", partitions=3)
customers = flow.table("customers", key=str, value=Customer, timestamp="since")
orders = flow.source("orders", key=str, value=Order, timestamp="ts")
enriched = orders.join(customers, how="left", name="enriched").map(gate, name="gate")
enriched.to("enriched-out")
enriched.aggregate(n=agg.count(), total=agg.sum("amount"), tier=agg.latest("tier"), name="totals")
'''


def write_inputs(tmp: Path) -> tuple[Path, Path]:
    """Customers change tier now and then; orders come all along, some before their customer."""
    rng = random.Random(SEED)
    customers, orders = [], []
    for i in range(CUSTOMERS * 3):
        customers.append({"key": f"c{rng.randrange(CUSTOMERS)}",
                          "value": {"tier": rng.choice(["gold", "silver"]), "since": T0 + i * 100}})
    for i in range(ORDERS):
        orders.append({"key": f"c{rng.randrange(CUSTOMERS)}",
                       "value": {"id": i, "amount": rng.randrange(1, 100), "ts": T0 + i * 10}})
    paths = tmp / "customers.jsonl", tmp / "orders.jsonl"
    for path, rows in zip(paths, (customers, orders)):
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return paths


def cli(pipe: Path, data: Path, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "dataflow.cli", "run", str(pipe), "--data-dir", str(data), "-q", "--keyed",
            *SETTINGS, *args]


async def results(pipe: Path, data: Path) -> dict[str, Any]:
    plan = build_plan(load_pipeline(str(pipe)).topology())
    out: dict[str, Any] = {"totals": await read_table(plan, "totals", data)}
    transport = LocalTransport(data)
    await transport.start()
    try:
        log = transport.log
        per_key: dict[Any, list[Any]] = {}
        for p in range(3):
            for m in await log.read(TP("enriched-out", p), 0, log.end_offset(TP("enriched-out", p))):
                per_key.setdefault(m.key, []).append(orjson.loads(m.value))
        out["enriched"] = per_key
        out["committed"] = {tp: log.committed("aligncrash", tp) for tp in
                            [TP(t, p) for t in ("customers", "orders") for p in range(3)]}
    finally:
        await transport.stop()
    return out


async def test_sigkill_an_aligned_join_again_and_again_then_it_ends_as_an_uninterrupted_run(tmp_path):
    pipe = tmp_path / "aligncrash_pipe.py"
    pipe.write_text(PIPELINE)
    customers, orders = write_inputs(tmp_path)
    inputs = ["--input", f"orders={orders}", "--input", f"customers={customers}"]

    calm = tmp_path / "calm"
    await run_to_end(cli(pipe, calm, *inputs, "--until-idle"))
    expected = await results(pipe, calm)
    assert sum(len(v) for v in expected["enriched"].values()) == ORDERS
    tiers = [row["tier"] for rows in expected["enriched"].values() for row in rows]
    assert {None, "gold", "silver"} <= set(tiers)  # some orders came before their customer

    rng = random.Random(SEED)
    points = sorted(rng.sample(range(100, ORDERS - 500), KILLS))
    crashed, marker = tmp_path / "crashed", tmp_path / "hung"
    kinds = []
    for i, at in enumerate(points):
        mode = ["join", "commit"][i % 2]
        at = rng.randrange(1, 4) if mode == "commit" else at
        extra = inputs if i == 0 else []
        assert await run_and_kill(cli(pipe, crashed, *extra, "--until-idle"), mode, at, marker), (
            f"kill {i} ({mode} at {at}) did not land: the run finished first")
        kinds.append(mode)
        if mode == "commit":
            assert await stores_behind(pipe, crashed), "the kill left no store behind its changelog"
    await run_to_end(cli(pipe, crashed, "--until-idle"))

    got = await results(pipe, crashed)
    assert got == expected
