"""The worker's loop on memory://: commit cadence, idleness, stopping, keys, the monitor."""
from __future__ import annotations

import asyncio
import io

from dataflow import Flow, col
from dataflow.planner import plan as build_plan
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, ProducerRecord
from dataflow.transport.memory import MemoryTransport


def flow(name: str = "w") -> Flow:
    f = Flow(name, partitions=1)
    f.source("n", value=int).filter(col("_value") >= 0).to("out")
    return f


async def started(options: WorkerOptions, f: Flow | None = None) -> tuple[MemoryTransport, Worker]:
    transport = MemoryTransport()
    await transport.start()
    worker = Worker(build_plan((f or flow()).topology()), transport, options)
    await worker.start()
    return transport, worker


def numbers(start: int, stop: int, key: bytes | None = None) -> list[ProducerRecord]:
    return [ProducerRecord("n", key, str(i).encode()) for i in range(start, stop)]


async def test_commit_every_counts_messages():
    transport, worker = await started(WorkerOptions(batch_size=10, commit_every=30, commit_interval=3600))
    await worker.producer.send_batch(numbers(0, 100))
    await worker.run(until_idle=True)
    assert worker.monitor.commits == 3  # after 30, 60 and 90 messages
    assert worker.monitor.committed == {"n[0]": 90}
    await worker.stop()  # the final commit takes the rest
    assert worker.monitor.commits == 4
    assert transport.broker.committed("w", TP("n", 0)) == 100
    await transport.stop()


async def test_without_due_commits_only_stop_commits():
    transport, worker = await started(WorkerOptions(batch_size=10, commit_every=10**9, commit_interval=3600))
    await worker.producer.send_batch(numbers(0, 50))
    await worker.run(until_idle=True)
    assert worker.monitor.commits == 0
    assert transport.broker.committed("w", TP("n", 0)) is None
    await worker.stop()
    assert worker.monitor.commits == 1
    assert transport.broker.committed("w", TP("n", 0)) == 50
    await transport.stop()


async def test_commit_interval_zero_commits_after_every_batch():
    transport, worker = await started(WorkerOptions(batch_size=10, commit_every=10**9, commit_interval=0))
    await worker.producer.send_batch(numbers(0, 30))
    await worker.run(until_idle=True)
    assert worker.monitor.commits == 3
    await worker.stop()
    await transport.stop()


async def test_is_idle_only_when_every_partition_is_read_to_its_end():
    transport, worker = await started(WorkerOptions(batch_size=10))
    assert await worker.is_idle()
    await worker.producer.send_batch(numbers(0, 5))
    assert not await worker.is_idle()
    await worker.run(until_idle=True)
    assert await worker.is_idle()
    assert worker.monitor.as_dict()["lag"] == {"n[0]": 0}
    await worker.stop()
    await transport.stop()


async def test_request_stop_ends_a_run_without_until_idle():
    transport, worker = await started(WorkerOptions(batch_size=10, poll_timeout=0.01))
    await worker.producer.send_batch(numbers(0, 5))
    task = asyncio.create_task(worker.run())

    async def wait_processed() -> None:
        while worker.monitor.sent_by_topic.get("out", 0) < 5:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait_processed(), 10)
    worker.request_stop()
    await asyncio.wait_for(task, 10)
    await worker.stop()
    assert transport.broker.committed("w", TP("n", 0)) == 5
    await transport.stop()


async def test_keys_are_json_or_plain_text_and_the_stdout_sink_uses_the_options_stream():
    f = Flow("keys", partitions=1)
    f.source("n", value=int).print()
    out = io.StringIO()
    transport, worker = await started(WorkerOptions(stdout=out), f)
    await worker.producer.send_batch([ProducerRecord("n", b'"json-key"', b"1"), ProducerRecord("n", b"plain key", b"2"),
                                      ProducerRecord("n", b'{"id": 3}', b"3"), ProducerRecord("n", None, b"4")])
    await worker.run(until_idle=True)
    await worker.stop()
    assert out.getvalue().splitlines() == ['{"key":"json-key","value":1}', '{"key":"plain key","value":2}',
                                           '{"key":{"id":3},"value":3}', '{"key":null,"value":4}']
    await transport.stop()


async def test_monitor_counts_reads_sends_and_offsets():
    transport, worker = await started(WorkerOptions(batch_size=4))
    await worker.producer.send_batch(numbers(-2, 8))
    await worker.run(until_idle=True)
    await worker.stop()
    d = worker.monitor.as_dict()
    assert d["messages_received_by_topic"] == {"n": 10}
    assert d["messages_sent_by_topic"] == {"out": 8}
    assert d["events_by_agent"] == {"n": 10}
    assert d["batches"] == 3
    assert d["read_offsets"] == {"n[0]": 10}
    assert d["end_offsets"] == {"n[0]": 10}
    assert d["committed_offsets"] == {"n[0]": 10}
    assert d["dead_letters"] == 0
    await transport.stop()
