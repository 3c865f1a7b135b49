"""A rebalance in the middle of a stateful run: partitions that come back are restored
before any of their records is processed (no record reaches a table that is not open)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dataflow import Flow, agg, col
from dataflow.planner import plan as build_plan
from dataflow.runtime.state import RestoreError, StateManager
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import ProducerRecord

from .conftest import make_transport, record


def counting() -> Flow:
    flow = Flow("rebal", partitions=4)
    (flow.source("events", key=str)
         .aggregate(n=agg.count(), name="per_key"))
    return flow


async def test_records_fetched_while_a_partition_restores_wait_for_its_table(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Slow restores widen the window in which the transport already hands out records of
    # a partition whose on_assigned callback is still opening its table.
    real_open = StateManager.open

    async def slow_open(self, pairs, committed):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.05)
        await real_open(self, pairs, committed)

    monkeypatch.setattr(StateManager, "open", slow_open)
    plan = build_plan(counting().topology())
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    keys = [f"k{i}" for i in range(40)]
    try:
        first = Worker(plan, transport, WorkerOptions(batch_size=5, commit_every=10, data_dir=str(tmp_path / "a")))
        await first.start()
        running = asyncio.ensure_future(first.run())
        for round_ in range(3):
            await first.producer.send_batch([ProducerRecord("events", r.key, r.value) for r in
                                             (record({"round": round_}, key=k) for k in keys)])
            # A second member joins and leaves: the first loses half its partitions and gets
            # them back while records for them are waiting to be fetched.
            second = Worker(plan, transport, WorkerOptions(batch_size=5, commit_every=10,
                                                            data_dir=str(tmp_path / "b")))
            await second.start()
            await second.stop()
        for _ in range(2000):  # a bound on polls, not a timing assertion
            if await first.is_idle():
                break
            await asyncio.sleep(0.01)
        first.request_stop()
        await running
        rows = dict(first.tables["per_key"].rows())
        dead = dict(first.monitor.dead_letters_by_reason)
        await first.stop()
    finally:
        await transport.stop()
    assert dead == {}
    assert rows == {k: {"n": 3} for k in keys}


async def test_a_restore_that_fails_stops_the_run_with_the_reason(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its partitions would never become ready: the run must end loudly, not wait forever.
    async def broken_open(self, pairs, committed):  # type: ignore[no-untyped-def]
        raise RestoreError("cannot restore per_key[0]: rebal-per_key-changelog[0] returned nothing")

    monkeypatch.setattr(StateManager, "open", broken_open)
    plan = build_plan(counting().topology())
    transport = make_transport(kind, tmp_path / "log")
    await transport.start()
    try:
        worker = Worker(plan, transport, WorkerOptions(data_dir=str(tmp_path / "a")))
        await worker.start()
        with pytest.raises(RestoreError) as raised:
            await worker.run(until_idle=True)
        assert str(raised.value) == ("pipeline rebal cannot restore the tables of its partitions: cannot restore "
                                     "per_key[0]: rebal-per_key-changelog[0] returned nothing")
        await worker.stop()
    finally:
        await transport.stop()
