#!/usr/bin/env python
"""Throughput on Kafka: dataflow's W1, W2, W3 and W4 beside a raw aiokafka loop, on a local Tansu broker.

Input: 200,000 JSON records such as `{"id":41,"user":"user-41","amount":41.5,"ts":...}`, keyed
by one of 1,000 users, on a 4-partition topic, produced before timing. `ts` is event time in
epoch ms, 1 ms apart (record i at T0 + i ms), so 200,000 records span 200 s: twenty 10-second
windows, each holding 10 records of every user. Only W3 and W4 read it.

  raw  a hand-written aiokafka loop: getmany -> orjson.loads -> filter -> map ->
       orjson.dumps -> producer.send -> await the batch -> commit (W1's work)
  W1   a compiled stateless pipeline: filter(amount >= 100) -> map {id, upper(user),
       cents: amount * 100} -> to(out)
  W2   group_by(user) -> aggregate(n: count, total: sum(amount)) in a LevelDB table with
       its changelog -> every update (emit changes) to an output topic
  W3   group_by(user) -> 10-second tumbling windows on `ts` -> count, emit final (each
       window once, when it closes) -> to an output topic
  W4   sessions: each user is active 20 s out of every 30 (a filter keeps a user's records of
       seconds n with (n + user) % 30 < 20: 2/3 of the input) -> group_by(user) -> session
       windows on `ts`, gap 5 s -> count, emit final -> to an output topic. A user's records
       are 1 s apart, so a session holds 20 of them and ends with 11 s of silence.

W1 to W4 are run by dataflow's Worker on kafka://, with a fresh temporary data_dir
(so tables are LevelDB stores) and the plan's commit settings. Every run reads with a fresh
consumer group and writes fresh output topics, with acks=all and 256 KiB batches, keys
kept. The raw loop sends record by record with linger_ms=5 (its fastest setting);
dataflow's driver sends each partition's share of a batch as one closed batch, so it does
not linger. The clock runs from the first fetch (after the group join) until every input
record is consumed, every output acknowledged and the offsets committed. After each W2/W3/W4
run (not timed) the output topic is read back and checked against a reference computed
here: W2's last update per user must be {n: 200, total: 200 * (k + 0.5)}, W3's windows
must each count 10 with every window present once, W4's sessions must be exactly the
reference's (bounds and count), each once (the runs are bounded: their end closes the last
windows and sessions). Runs alternate (raw, W1, W2, W3, W4, raw, ...) and each is reported
as the median of `--repeat` (3) runs in msgs/s of input.

    .venv/bin/python scripts/bench_kafka.py                   # starts its own Tansu broker
    .venv/bin/python scripts/bench_kafka.py --records 50000   # quicker
    .venv/bin/python scripts/bench_kafka.py --workloads raw,w2 --repeat 1
    .venv/bin/python scripts/bench_kafka.py --broker kafka://localhost:9092 --json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tansu import fast_groups, start_tansu, stop_tansu  # noqa: E402

KEYS = 1_000
PARTITIONS = 4
THRESHOLD = 100  # amount >= 100 keeps 90% of the records
T0 = 1_790_000_000_000  # event time of record 0 (epoch ms, a multiple of the window size)
TS_STEP = 1  # ms of event time between consecutive records
WINDOW_MS = 10_000
SESSION_GAP_MS = 5_000
WORKLOADS = ("raw", "w1", "w2", "w3", "w4")


def payload(i: int) -> bytes:
    return b'{"id":%d,"user":"user-%d","amount":%d.5,"ts":%d}' % (i, i % KEYS, i % 1000, T0 + i * TS_STEP)


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


def _event_type():  # type: ignore[no-untyped-def]
    from dataflow import Record

    class Event(Record):
        id: int
        user: str
        amount: float
        ts: int

    return Event


def build_w1(topic: str, tag: str):  # type: ignore[no-untyped-def]
    from dataflow import Flow, Record, col, fn

    class Event(Record):  # W1 reads no `ts`: the same record type as before it was added
        id: int
        user: str
        amount: float

    flow = Flow(f"bench-w1-{tag}", partitions=PARTITIONS)
    (flow.source(topic, key=str, value=Event, partitions=PARTITIONS)
         .filter(col("amount") >= THRESHOLD)
         .map({"id": col("id"), "user": fn.upper(col("user")), "cents": col("amount") * 100})
         .to(f"w1-out-{tag}"))
    return flow, f"w1-out-{tag}"


def build_w2(topic: str, tag: str):  # type: ignore[no-untyped-def]
    from dataflow import Flow, agg

    flow = Flow(f"bench-w2-{tag}", partitions=PARTITIONS)
    (flow.source(topic, key=str, value=_event_type(), partitions=PARTITIONS)
         .group_by("user", name="by_user")
         .aggregate(n=agg.count(), total=agg.sum("amount"), name="per_user")
         .changes()
         .to(f"w2-out-{tag}"))
    return flow, f"w2-out-{tag}"


def build_w3(topic: str, tag: str):  # type: ignore[no-untyped-def]
    from dataflow import Flow, tumbling

    flow = Flow(f"bench-w3-{tag}", partitions=PARTITIONS)
    (flow.source(topic, key=str, value=_event_type(), partitions=PARTITIONS)
         .group_by("user", name="by_user")
         .window(tumbling(f"{WINDOW_MS // 1000}s", on="ts"))
         .count(name="per_window", emit="final")
         .changes()
         .to(f"w3-out-{tag}"))
    return flow, f"w3-out-{tag}"


async def read_topic(url: str, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of `topic`, partition by partition, with a throwaway consumer (not timed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=url.removeprefix("kafka://"), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Tansu may report the end of a multi-record batch as its first offset + 1, so the end
        # is also taken from each fetch's high watermark, which is exact (see docs/kafka.md).
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + 60

        async def done(tp: TopicPartition) -> bool:
            high = consumer.highwater(tp)
            return high is not None and await consumer.position(tp) >= max(high, ends[tp])

        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for msgs in batch.values():
                out.extend((m.key, m.value) for m in msgs)
            if not batch and all([await done(tp) for tp in tps]):
                return out
        raise RuntimeError(f"could not read {topic} to its end within 60 s")
    finally:
        await consumer.stop()


def active(v: dict) -> bool:
    """W4's filter: user u is active in seconds n with (n + u) % 30 < 20 (record i = n * KEYS + u)."""
    return (v["id"] // KEYS + v["id"] % KEYS) % 30 < 20


def build_w4(topic: str, tag: str):  # type: ignore[no-untyped-def]
    from dataflow import Flow, session

    flow = Flow(f"bench-w4-{tag}", partitions=PARTITIONS)
    (flow.source(topic, key=str, value=_event_type(), partitions=PARTITIONS)
         .filter(active, name="active")
         .group_by("user", name="by_user")
         .window(session(f"{SESSION_GAP_MS // 1000}s", on="ts"))
         .count(name="sessions", emit="final")
         .changes()
         .to(f"w4-out-{tag}"))
    return flow, f"w4-out-{tag}"


def check_w2(records: list[tuple[bytes | None, bytes | None]], inputs: int) -> str | None:
    """W2's last update per user must equal the reference count and sum; None if it does."""
    import orjson

    last: dict[object, dict] = {}
    for k, v in records:
        last[orjson.loads(k) if k else None] = orjson.loads(v) if v else None
    expected = {}
    for u in range(min(KEYS, inputs)):
        n = len(range(u, inputs, KEYS))
        expected[f"user-{u}"] = {"n": n, "total": n * ((u % 1000) + 0.5)}
    if len(records) != inputs:
        return f"{len(records):,} updates on the output topic, expected {inputs:,} (one per input record)"
    wrong = [(k, last.get(k), want) for k, want in expected.items()
             if not last.get(k) or last[k].get("n") != want["n"] or abs(last[k].get("total", 0) - want["total"]) > 1e-6]
    if wrong or len(last) != len(expected):
        return f"{len(wrong)} users with a wrong last update (e.g. {wrong[:3]}), {len(last)} users seen"
    return None


def check_w3(records: list[tuple[bytes | None, bytes | None]], inputs: int) -> str | None:
    """W3's windows must each hold the reference count, every surely-closed window once."""
    import orjson

    reference: dict[tuple[str, int], int] = {}
    for i in range(inputs):
        start = (T0 + i * TS_STEP) // WINDOW_MS * WINDOW_MS
        reference[(f"user-{i % KEYS}", start)] = reference.get((f"user-{i % KEYS}", start), 0) + 1
    seen: dict[tuple[str, int], int] = {}
    for k, v in records:
        row = orjson.loads(v)  # type: ignore[arg-type]
        key = orjson.loads(k) if k else None
        if isinstance(key, dict):  # a windowed key, if the runtime keys outputs by key and window
            key = key.get("key", key)
        w = (key, row["window_start"])
        if w in seen:
            return f"window {w} emitted twice"
        seen[w] = row["count"]
    wrong = [(w, n, reference.get(w)) for w, n in seen.items() if reference.get(w) != n]
    if wrong:
        return f"{len(wrong)} windows with a wrong count (e.g. {wrong[:3]})"
    # The run is bounded (until idle): its end closes every window, the last ones included.
    missing = [w for w in reference if w not in seen]
    if missing or len(seen) != len(reference):
        return f"{len(missing)} windows missing (e.g. {missing[:3]}), {len(seen)} emitted of {len(reference)}"
    return None


def check_w4(records: list[tuple[bytes | None, bytes | None]], inputs: int) -> str | None:
    """W4's sessions must be the reference's, each once (the run is bounded: its end closes them all)."""
    import orjson

    times: dict[str, list[int]] = {}
    for i in range(inputs):
        if active({"id": i}):
            times.setdefault(f"user-{i % KEYS}", []).append(T0 + i * TS_STEP)
    reference: dict[tuple[str, int], tuple[int, int]] = {}  # (user, start) -> (end, count)
    for user, ts in times.items():
        start = prev = ts[0]
        n = 0
        for t in ts:
            if t - prev > SESSION_GAP_MS:
                reference[(user, start)] = (prev, n)
                start, n = t, 0
            prev, n = t, n + 1
        reference[(user, start)] = (prev, n)
    seen: dict[tuple[str, int], tuple[int, int]] = {}
    for k, v in records:
        row = orjson.loads(v)  # type: ignore[arg-type]
        w = (orjson.loads(k) if k else None, row["window_start"])
        if w in seen:
            return f"session {w} emitted twice"
        seen[w] = (row["window_end"], row["count"])
    wrong = [(w, got, reference.get(w)) for w, got in seen.items() if reference.get(w) != got]
    if wrong:
        return f"{len(wrong)} sessions unlike the reference (e.g. {wrong[:3]})"
    missing = [w for w in reference if w not in seen]
    if missing or len(seen) != len(reference):
        return f"{len(missing)} sessions missing (e.g. {missing[:3]}), {len(seen)} emitted of {len(reference)}"
    return None


CHECKS = {"w2": check_w2, "w3": check_w3, "w4": check_w4}
BUILDERS = {"w1": build_w1, "w2": build_w2, "w3": build_w3, "w4": build_w4}


async def run_flow(name: str, url: str, topic: str, records: int) -> dict[str, object]:
    from dataflow.planner import plan as build_plan
    from dataflow.runtime.worker import Worker, WorkerOptions
    from dataflow.transport.base import open_transport

    tag = uuid.uuid4().hex[:8]
    flow, out = BUILDERS[name](topic, tag)
    plan = build_plan(flow.topology())
    settings = plan.settings
    with tempfile.TemporaryDirectory(prefix=f"bench-kafka-{name}-") as data_dir:
        transport = open_transport(url, data_dir, settings)
        await transport.start()
        try:
            worker = Worker(plan, transport, WorkerOptions(
                batch_size=settings.batch_size, commit_every=settings.commit_every,
                commit_interval=settings.commit_interval, data_dir=data_dir))
            await worker.start()  # creates topics, joins the group: not timed
            started = time.perf_counter()
            await worker.run(until_idle=True)
            await worker.stop()  # drain, commit
            seconds = time.perf_counter() - started
        finally:
            await transport.stop()
    stats = worker.monitor.as_dict()
    result: dict[str, object] = {
        "seconds": seconds, "out": stats["messages_sent_by_topic"].get(out, 0),
        "changelog_records": stats["changelog_records"], "late_events": stats["late_events"],
        "dead_letters": stats["dead_letters"], "commits": stats["commits"],
    }
    if name in CHECKS:
        result["check"] = CHECKS[name](await read_topic(url, out), records) or "ok"
    return result


async def run_raw(url: str, topic: str, records: int) -> dict[str, object]:
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
    return {"seconds": seconds, "out": sent}


def runner(name: str) -> Callable[[str, str, int], Awaitable[dict[str, object]]]:
    if name == "raw":
        return run_raw
    return lambda url, topic, records: run_flow(name, url, topic, records)


def parse_workloads(text: str) -> list[str]:
    names = [w.strip().lower() for w in text.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"workloads are a comma-separated list of {', '.join(WORKLOADS)}")
    return [w for w in WORKLOADS if w in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workloads", type=parse_workloads, default=list(WORKLOADS),
                        help="comma-separated, of raw,w1,w2,w3,w4 (default: all)")
    parser.add_argument("--broker", help="kafka://HOST:PORT of a running broker; default: start Tansu")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()

    fast_groups()  # the group join is not timed; short timeouts keep the whole run short
    from dataflow.runtime.process import tune_for_throughput

    tune_for_throughput()  # what `dataflow run` does
    proc = None
    url = args.broker
    if url is None:
        proc, url = start_tansu()
    runs: dict[str, list[float]] = {name.upper() if name != "raw" else name: [] for name in args.workloads}
    details: dict[str, list[dict[str, object]]] = {name: [] for name in runs}
    try:
        topic = f"bench-in-{uuid.uuid4().hex[:8]}"
        asyncio.run(produce_input(url, topic, args.records))
        for _ in range(args.repeat):
            for name in args.workloads:
                label = name.upper() if name != "raw" else name
                result = asyncio.run(runner(name)(url, topic, args.records))
                seconds = float(result["seconds"])  # type: ignore[arg-type]
                runs[label].append(args.records / seconds)
                details[label].append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()})
                if not args.json:
                    extra = "".join(f", {k.replace('_', ' ')} {v:,}" for k, v in result.items()
                                    if k in ("changelog_records", "late_events") and v)
                    check = f", check {result['check']}" if "check" in result else ""
                    print(f"{label:>4}: {args.records / seconds:,.0f} msgs/s ({seconds:.2f} s, "
                          f"{result['out']:,} out{extra}{check})", flush=True)
    finally:
        if proc is not None:
            stop_tansu(proc)
    medians = {name: statistics.median(values) for name, values in runs.items()}
    result_doc: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_average": os.getloadavg(), "records": args.records, "partitions": PARTITIONS, "keys": KEYS,
        "repeat": args.repeat, "runs_msgs_per_s": runs, "median_msgs_per_s": medians, "runs": details,
    }
    if "raw" in medians:
        result_doc["vs_raw"] = {name: value / medians["raw"] for name, value in medians.items() if name != "raw"}
    if args.json:
        print(json.dumps(result_doc, indent=2))
    else:
        vs_raw = result_doc.get("vs_raw", {})
        print("median: " + ", ".join(
            f"{name} {value:,.0f} msgs/s" + (f" ({100 * vs_raw[name]:.0f}% of raw)" if name in vs_raw else "")
            for name, value in medians.items()))
    failed = [f"{name} run {i + 1}: {d['check']}" for name, ds in details.items()
              for i, d in enumerate(ds) if d.get("check", "ok") != "ok"]
    if failed:
        sys.exit("wrong results:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main()
