"""SIGKILL a stateful `dataflow run` at several points, restart it until done: exactly-once.

On the embedded local log a commit is one atomic transaction of the outputs, the
changelogs and the consumer offsets, so however often the run is killed, its tables and its
sink topics must end up exactly as an uninterrupted run leaves them: nothing lost,
nothing counted twice, and no output record written twice.

Kills land at points chosen by a seeded random generator (reproducible) and never depend
on timing: the pipeline, told by environment variables, stops dead (a busy loop, after
writing a marker file) at one of

* ``source`` -- the first source record with id >= N (mid-batch in the first sub-topology),
* ``aggregate`` -- the first record with id >= N the keyed aggregate folds in (mid-batch in
  the stateful sub-topology, its table partly updated and not yet committed),
* ``commit`` -- the N-th commit of the run that wrote changelog records, right AFTER its
  transaction is durable and BEFORE the LevelDB stores have taken its changes (stores
  behind their changelogs: the restart must replay them);

and the test SIGKILLs the process as soon as it sees the marker.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow.loader import load_pipeline
from dataflow.planner import plan as build_plan
from dataflow.runtime.query import read_table
from dataflow.runtime.watermarks import is_heartbeat
from dataflow.state.stores import LevelDBStore, store_path
from dataflow.state.table import PLAIN_KEYS, TablePartition
from dataflow.transport.base import TP
from dataflow.transport.local import LocalTransport

pytestmark = pytest.mark.slow

SEED = 20240605
RECORDS = 3000
USERS = 23
KILLS = 8
SETTINGS = ["--set", "batch_size=40", "--set", "commit_every=150"]
T0 = 1_700_000_000_000

PIPELINE = '''
import os
from pathlib import Path

from dataflow import Flow, Record, agg, col, tumbling

MODE = os.environ.get("CRASH_MODE")
AT = int(os.environ.get("CRASH_AT", "0"))


def _hang():
    Path(os.environ["CRASH_MARKER"]).write_text(MODE)
    while True:  # busy, no sleep: the test kills us here
        pass


def source_gate(v):
    if MODE == "source" and v["id"] >= AT:
        _hang()
    return True


def amount(v):
    if MODE == "aggregate" and v["id"] >= AT:
        _hang()
    return v["amount"]


if MODE == "commit":
    from dataflow.runtime.state import StateManager

    _flush = StateManager.flush
    _calls = [0]

    async def flush(self, results):
        # Called after the commit's transaction is durable, before the stores take it.
        if results:  # the transaction carried changelog records
            _calls[0] += 1
            if _calls[0] >= AT:
                _hang()
        return await _flush(self, results)

    StateManager.flush = flush


class Tx(Record):
    id: int
    user: str
    amount: int
    ts: int


flow = Flow("crashy", partitions=3)
txs = flow.source("tx", value=Tx, timestamp="ts").filter(source_gate, name="gate")
by_user = txs.group_by("user", name="by_user")
totals = by_user.aggregate(n=agg.count(), total=agg.sum(amount), last=agg.latest("id"), name="totals")
totals.to("totals-out")
per_second = by_user.window(tumbling("1s", grace="150ms", expires="4s", on="ts")).aggregate(
    n=agg.count(), total=agg.sum("amount"), ids=agg.collect("id"), name="per_second", emit="final")
per_second.changes().filter(col("n") > 0, name="closed").to("windows-out")
'''

SINKS = ("totals-out", "windows-out", "crashy-by_user-repartition")


def write_input(path: Path) -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    rows = []
    for i in range(RECORDS):
        # Mostly in order; some events up to 300 ms early (the grace is 150 ms: some are late).
        ts = T0 + i * 10 - (rng.randrange(300) if rng.random() < 0.2 else 0)
        rows.append({"id": i, "user": f"u{rng.randrange(USERS)}", "amount": rng.randrange(1, 100), "ts": ts})
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return rows


def cli(pipe: Path, data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dataflow.cli", "run", str(pipe), "--data-dir", str(data), "-q", *SETTINGS, *args]


async def run_to_end(cmd: list[str], env: dict[str, str] | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()


async def run_and_kill(cmd: list[str], mode: str, at: int, marker: Path) -> bool:
    """Run until the pipeline hangs at its crash point, then SIGKILL it; False if it finished first."""
    marker.unlink(missing_ok=True)
    env = {**os.environ, "CRASH_MODE": mode, "CRASH_AT": str(at), "CRASH_MARKER": str(marker)}
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not marker.exists() and proc.returncode is None:
            assert loop.time() < deadline, "the run neither reached its crash point nor finished"
            await asyncio.sleep(0.02)
        if proc.returncode is not None:
            err = await proc.stderr.read()  # type: ignore[union-attr]
            assert proc.returncode == 0, err.decode()
            return False
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        return True
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def results(pipe: Path, data: Path) -> dict[str, Any]:
    """The tables (as `dataflow query` reads them) and every sink topic, per key in order."""
    plan = build_plan(load_pipeline(str(pipe)).topology())
    out: dict[str, Any] = {name: await read_table(plan, name, data) for name in ("totals", "per_second")}
    transport = LocalTransport(data)
    await transport.start()
    try:
        log = transport.log
        for topic in SINKS:
            per_key: dict[Any, list[Any]] = {}
            for p in range(log.spec(topic).partitions):
                for m in await log.read(TP(topic, p), 0, log.end_offset(TP(topic, p))):
                    if is_heartbeat(m):
                        continue  # watermarks for the reader: where they fall depends on batching
                    # Keys never change partition, so each key's records keep one order.
                    per_key.setdefault(m.key, []).append((p, orjson.loads(m.value)))
            out[topic] = per_key
        # Everything read is committed. (How many records the repartition partitions hold
        # depends on batching: heartbeats carry watermarks to partitions a batch skipped.)
        out["committed"] = {tp: (log.committed("crashy", tp), log.end_offset(tp)) for tp in
                            [TP("tx", 0)] + [TP("crashy-by_user-repartition", p) for p in range(3)]}
        out["dead"] = sum(log.end_offset(TP("crashy-dead-letters", p))
                          for p in range(log.spec("crashy-dead-letters").partitions))
    finally:
        await transport.stop()
    return out


async def stores_behind(pipe: Path, data: Path) -> list[tuple[str, int]]:
    """The table partitions whose LevelDB store has not applied all of its changelog."""
    plan = build_plan(load_pipeline(str(pipe)).topology())
    transport = LocalTransport(data)
    await transport.start()
    behind = []
    try:
        for store in plan.stores:
            for p in range(store.partitions):
                if not store_path(data, store.name, p).exists():
                    continue
                leveldb = LevelDBStore(store.name, p, store_path(data, store.name, p))
                try:
                    applied = TablePartition(leveldb, PLAIN_KEYS).changelog_offset
                finally:
                    leveldb.close()
                if applied < transport.log.end_offset(TP(store.changelog, p)):
                    behind.append((store.name, p))
    finally:
        await transport.stop()
    return behind


async def test_sigkill_a_stateful_run_again_and_again_then_nothing_is_lost_or_counted_twice(tmp_path):
    pipe = tmp_path / "crashy_pipe.py"
    pipe.write_text(PIPELINE)
    inputs = tmp_path / "tx.jsonl"
    rows = write_input(inputs)

    # The uninterrupted run.
    calm = tmp_path / "calm"
    await run_to_end(cli(pipe, calm, "--input", f"tx={inputs}", "--until-idle"))
    expected = await results(pipe, calm)

    # Sanity of the reference itself: the keyed totals are what the input says.
    n, total = Counter(r["user"] for r in rows), Counter()
    for r in rows:
        total[r["user"]] += r["amount"]
    assert expected["totals"] == sorted(
        (u, {"n": n[u], "total": total[u], "last": max(r["id"] for r in rows if r["user"] == u)}) for u in n)
    assert expected["committed"][TP("tx", 0)] == (RECORDS, RECORDS)
    assert all(committed == end for committed, end in expected["committed"].values())
    assert expected["dead"] == 0
    assert 0 < len(expected["per_second"]) < sum(len(v) for v in expected["windows-out"].values())

    # The crashing runs: kill points at increasing positions, in a seeded random order of kinds.
    rng = random.Random(SEED)
    points = sorted(rng.sample(range(200, RECORDS - 800), KILLS))
    kills = [(rng.choice(["source", "aggregate", "commit"]), at) for at in points]
    crashed = tmp_path / "crashed"
    marker = tmp_path / "hung"
    kinds = []
    for i, (mode, at) in enumerate(kills):
        at = rng.randrange(1, 6) if mode == "commit" else at
        extra = ["--input", f"tx={inputs}"] if i == 0 else []
        assert await run_and_kill(cli(pipe, crashed, *extra, "--until-idle"), mode, at, marker), (
            f"kill {i} ({mode} at {at}) did not land: the run finished first")
        kinds.append(mode)
        if mode == "commit":
            assert await stores_behind(pipe, crashed), "the kill left no store behind its changelog"
    assert set(kinds) == {"source", "aggregate", "commit"}
    await run_to_end(cli(pipe, crashed, "--until-idle"))

    got = await results(pipe, crashed)
    assert got["committed"][TP("tx", 0)] == (RECORDS, RECORDS)
    assert all(committed == end for committed, end in got["committed"].values())
    assert got["dead"] == 0
    assert got["totals"] == expected["totals"]
    assert got["per_second"] == expected["per_second"]
    for topic in SINKS:
        assert got[topic] == expected[topic], f"{topic} differs from the uninterrupted run"
