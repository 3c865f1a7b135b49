"""App lifecycle: resuming from commits on the local log, late subscriptions, draining on
stop, graceful shutdown of ``app.main()`` on SIGTERM."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from dataflow.runtime.app import App
from dataflow.transport.base import TP, open_transport

REPO = Path(__file__).resolve().parents[2]


def make_app(url: str, out: list[int]) -> App:
    app = App("resume", broker=url)
    source = app.topic("source", partitions=2)

    @app.agent(source)
    async def collect(stream):
        async for value in stream:
            out.append(value)

    return app


async def test_local_log_restart_resumes_where_it_committed(tmp_path: Path) -> None:
    url = f"local://{tmp_path}"
    first: list[int] = []
    app = make_app(url, first)
    await app.start()
    await app.topic("source").send_many([(f"k{i}", i) for i in range(10)])
    await app.run_until_idle()

    second: list[int] = []
    app = make_app(url, second)
    await app.start()
    await app.topic("source").send_many([(f"k{i}", i) for i in range(10, 15)])
    await app.run_until_idle()

    assert sorted(first) == list(range(10))
    assert sorted(second) == list(range(10, 15))


async def test_stop_drains_in_flight_work_before_the_final_commit() -> None:
    app = App("drain", commit_interval=60, commit_every=10**6)
    source = app.topic("source", partitions=1)
    started = asyncio.Event()
    release = asyncio.Event()
    done: list[int] = []

    @app.agent(source)
    async def slow(stream):
        async for value in stream:
            started.set()
            await release.wait()
            done.append(value)

    await app.start()
    await source.send_many([(None, i) for i in range(3)])
    await started.wait()
    stopping = asyncio.ensure_future(app.stop())
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await stopping
    assert done == [0, 1, 2]
    assert app.monitor.committed == {"source[0]": 3}


async def test_a_stream_derived_after_start_resubscribes_without_losing_or_repeating() -> None:
    app = App("late", commit_every=1, startup_timeout=0.01)
    source = app.topic("source", partitions=2)
    go = asyncio.Event()
    out: list[tuple[str, int]] = []

    @app.agent(source)
    async def late(stream):
        await go.wait()  # the consumer is already running when group_by subscribes
        async for key, value in stream.group_by(lambda v: f"g{v % 2}", name="late").items():
            out.append((key, value))

    await app.start()
    await source.send_many([(f"k{i}", i) for i in range(6)])
    while app._tracker.in_flight < 6:  # delivered, waiting for the agent
        await asyncio.sleep(0.001)
    first_consumer = app._consumer
    go.set()
    await source.send_many([(f"k{i}", i) for i in range(6, 10)])
    await app.run_until_idle()
    assert app._consumer is not first_consumer  # it rejoined with the repartition topic
    assert sorted(out) == sorted((f"g{i % 2}", i) for i in range(10))


async def test_monitor_counts_and_default_agent_topic() -> None:
    app = App("mon")
    seen: list[int] = []

    @app.agent()
    async def worker(stream):
        async for value in stream:
            seen.append(value)

    await app.start()
    for i in range(3):
        await worker.send(value=i)
    await app.run_until_idle()
    stats = app.monitor.as_dict()
    assert seen == [0, 1, 2]
    assert stats["messages_received_by_topic"] == {"mon-worker": 3}
    assert stats["messages_sent_by_topic"] == {"mon-worker": 3}
    assert stats["events_by_agent"] == {"worker": 3}
    assert stats["commits"] >= 1
    assert sum(v for k, v in stats["committed_offsets"].items() if k.startswith("mon-worker")) == 3


SCRIPT = """
import asyncio, sys
from dataflow.runtime.app import App
from dataflow.transport.base import ProducerRecord, TopicSpec
from dataflow.transport.local import LocalTransport

async def feed():
    async with LocalTransport(sys.argv[1]) as transport:
        await transport.create_topics([TopicSpec("source", 1)])
        await transport.producer().send_batch([ProducerRecord("source", None, b"%d" % i) for i in range(3)])

asyncio.run(feed())
app = App("signals", broker=None, data_dir=sys.argv[1], commit_interval=60)

@app.agent(app.topic("source", partitions=1))
async def collect(stream):
    async for value in stream:
        print("got", value, flush=True)

print("exit", app.main(), flush=True)
"""


async def test_main_stops_gracefully_on_sigterm_and_commits(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None
    lines = [(await proc.stdout.readline()).decode().strip() for _ in range(3)]
    assert lines == ["got 0", "got 1", "got 2"]
    proc.send_signal(signal.SIGTERM)
    rest, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    assert rest.decode().strip() == "exit 0"
    async with open_transport(None, str(data)) as transport:
        consumer = transport.consumer("signals", ["source"])
        assert await consumer.committed(TP("source", 0)) == 3
