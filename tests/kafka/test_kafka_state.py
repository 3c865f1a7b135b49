"""Stateful pipelines on the Kafka test broker: tables with changelogs, recovery, and a
worker that dies mid-stream while another takes over its partitions and their state."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dataflow import Flow, agg, col
from dataflow.planner import plan as build_plan
from dataflow.runtime.query import read_table
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import ProducerRecord, TopicSpec, open_transport
from tests.kafka_broker import unique_name

from .conftest import record


def counting(name: str, source: str, partitions: int) -> Flow:
    flow = Flow(name, partitions=partitions)
    (flow.source(source, key=str)
         .group_by(col("user"), name="by_user")
         .aggregate(n=agg.count(), last=agg.max("seq"), name="per_user"))
    return flow


async def test_a_keyed_count_on_kafka_and_its_table_rebuilt_from_the_changelog(kafka_url: str, tmp_path: Path) -> None:
    name, source = unique_name("kcount"), unique_name("events")
    plan = build_plan(counting(name, source, 4).topology())
    inputs = [record({"user": f"u{i % 7}", "seq": i}, key=f"e{i}") for i in range(200)]
    expected = sorted((f"u{u}", {"n": len(range(u, 200, 7)), "last": max(range(u, 200, 7))}) for u in range(7))
    transport = open_transport(kafka_url, str(tmp_path))
    await transport.start()
    try:
        await transport.create_topics([TopicSpec(source, 4)])
        worker = Worker(plan, transport, WorkerOptions(data_dir=str(tmp_path / "a")))
        await worker.start()
        await worker.producer.send_batch([ProducerRecord(source, r.key, r.value) for r in inputs])
        await worker.run(until_idle=True)
        assert sorted(worker.tables["per_user"].rows()) == expected
        await worker.stop()
    finally:
        await transport.stop()
    # A fresh data directory has no store at all: every partition is rebuilt from the changelog.
    rows = await read_table(plan, "per_user", tmp_path / "fresh", broker=kafka_url)
    assert sorted(rows) == expected


WORKER = '''
import os, pathlib
from dataflow import Flow, agg, col

def mark(v):
    # Worker A stops (spinning, as if stuck) at its 40th record, after writing a marker,
    # so the test can SIGKILL it mid-stream without guessing at timing.
    if os.environ.get("HANG_MARKER"):
        global seen
        seen = globals().get("seen", 0) + 1
        if seen == 40:
            pathlib.Path(os.environ["HANG_MARKER"]).write_text("hung")
            while True:
                pass
    return v

flow = Flow(os.environ["PIPELINE_NAME"], partitions=8)
(flow.source(os.environ["SOURCE"], key=str)
     .map(mark)
     .group_by(col("user"), name="by_user")
     .aggregate(n=agg.count(), last=agg.max("seq"), name="per_user"))
'''


async def test_two_workers_share_eight_partitions_and_one_survives_a_sigkill(kafka_url: str, tmp_path: Path) -> None:
    """Retried once, with new names, if the scenario hangs: about one run in eight, the Tansu
    broker never completes the rebalance after a member of the group is SIGKILLed (the
    survivor's heartbeats keep failing with "rebalancing"; seen since 2026-12-02, under
    investigation). A wrong table is never retried: it fails the test at once."""
    for attempt in (1, 2):
        try:
            await asyncio.wait_for(_survives_a_sigkill(kafka_url, tmp_path / f"attempt-{attempt}"), 100)
            return
        except asyncio.TimeoutError:
            if attempt == 2:
                raise


async def _survives_a_sigkill(kafka_url: str, tmp_path: Path) -> None:
    tmp_path.mkdir()
    name, source = unique_name("pair"), unique_name("events")
    pipeline = tmp_path / "pair.py"
    pipeline.write_text(WORKER)
    env = {**os.environ, "PIPELINE_NAME": name, "SOURCE": source}
    os.environ.update(PIPELINE_NAME=name, SOURCE=source)
    try:
        from dataflow.loader import load_pipeline
        plan = build_plan(load_pipeline(str(pipeline), {}).topology())
    finally:
        os.environ.pop("PIPELINE_NAME")
        os.environ.pop("SOURCE")
    events = [{"user": f"u{i % 25}", "seq": i} for i in range(2000)]
    transport = open_transport(kafka_url, str(tmp_path))
    await transport.start()
    marker = tmp_path / "hung"
    survivor = None
    victim = None
    try:
        await transport.create_topics([TopicSpec(source, 8)])
        producer = transport.producer()
        await producer.start()
        await producer.send_batch([ProducerRecord(source, orjson.dumps(f"e{i}"), orjson.dumps(e))
                                   for i, e in enumerate(events)])
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dataflow.cli", "run", str(pipeline), "--broker", kafka_url,
            "--data-dir", str(tmp_path / "a"), "-q", "--set", "batch_size=10", "--set", "commit_every=20",
            env={**env, "HANG_MARKER": str(marker)}, stderr=asyncio.subprocess.PIPE)
        survivor = Worker(plan, transport, WorkerOptions(batch_size=10, commit_every=20,
                                                         data_dir=str(tmp_path / "b")))
        await survivor.start()
        running = asyncio.ensure_future(survivor.run())
        for _ in range(3000):  # a bound on polls, not a timing assertion
            if marker.exists() or victim.returncode is not None:
                break
            await asyncio.sleep(0.02)
        assert marker.exists(), (await victim.stderr.read()).decode()  # type: ignore[union-attr]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        # The survivor takes over all eight partitions once the group notices the death.
        for _ in range(3000):
            if len(survivor.consumer.assignment()) == 16 and await survivor.is_idle():  # source + repartition
                break
            await asyncio.sleep(0.05)
        assert len(survivor.consumer.assignment()) == 16
        survivor.request_stop()
        await running
        await survivor.stop()
        await producer.stop()
    finally:
        if victim is not None and victim.returncode is None:
            victim.kill()  # a hung attempt: leave no worker behind in the group
            await victim.wait()
        await transport.stop()
    rows = dict(await read_table(plan, "per_user", tmp_path / "b", broker=kafka_url))
    reference = Counter(e["user"] for e in events)
    assert sorted(rows) == sorted(reference)
    for user, count in reference.items():
        # at-least-once: replayed records may be counted twice, never fewer; max is exact
        assert rows[user]["n"] >= count, user
        assert rows[user]["last"] == max(e["seq"] for e in events if e["user"] == user)
