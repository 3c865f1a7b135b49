#!/usr/bin/env python
"""Round-trip latency and throughput of agent RPC (`agent.ask`, `agent.join`), on memory:// or Kafka.

One app, one agent with 4 actors over a 4-partition topic that yields `value * 2`. The
asker is the same process, so a round trip is: produce the request, the app's consumer
fetches it, an actor processes it, the reply is produced to the reply topic, the reply
consumer fetches it and fulfils the promise. On memory:// all of that stays in the
process; on kafka:// every step goes through the broker (`--broker kafka://HOST:PORT`, or
`--tansu` to start a local Tansu broker as scripts/bench_kafka.py does). On Kafka each run
uses a fresh app name, so fresh topics and consumer groups; the group joins happen in the
warm-up, which is not timed.

  latency     sequential asks, one at a time: p50 / p99 / max of each round trip
  concurrent  asks with up to --in-flight outstanding (asyncio.gather in windows): asks/s
  join        agent.join over a list of values: values/s

    .venv/bin/python scripts/bench_ask.py                 # defaults below, on memory://
    .venv/bin/python scripts/bench_ask.py --asks 5000 --json
    .venv/bin/python scripts/bench_ask.py --tansu         # on a local Tansu broker it starts
    .venv/bin/python scripts/bench_ask.py --broker kafka://localhost:9092
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataflow.runtime.app import App  # noqa: E402


def build(broker: str, data_dir: str) -> tuple[App, object]:
    # memory:// is fresh per transport; on a real broker a fresh name means fresh topics and groups
    name = "bench-ask" if broker.startswith("memory://") else f"bench-ask-{uuid.uuid4().hex[:8]}"
    app = App(name, broker=broker, data_dir=data_dir, topic_partitions=4)

    @app.agent(concurrency=4)
    async def double(stream):
        async for value in stream:
            yield value * 2

    return app, double


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def bench(broker: str, asks: int, in_flight: int, join_size: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-ask-") as data_dir:
        return await _bench(broker, data_dir, asks, in_flight, join_size)


async def _bench(broker: str, data_dir: str, asks: int, in_flight: int, join_size: int) -> dict[str, object]:
    app, double = build(broker, data_dir)
    await app.start()
    try:
        for n in range(200):  # warm up: reply consumer started (group joined), code paths hot
            await double.ask(n, key=f"k{n}")  # type: ignore[attr-defined]

        latencies = []
        for n in range(asks):
            started = time.perf_counter()
            await double.ask(n, key=f"k{n}")  # type: ignore[attr-defined]
            latencies.append(time.perf_counter() - started)
        latencies.sort()

        started = time.perf_counter()
        for window in range(0, asks * 5, in_flight):
            await asyncio.gather(*(double.ask(n, key=f"k{n}")  # type: ignore[attr-defined]
                                   for n in range(window, min(window + in_flight, asks * 5))))
        concurrent_seconds = time.perf_counter() - started

        started = time.perf_counter()
        results = await double.join(range(join_size))  # type: ignore[attr-defined]
        join_seconds = time.perf_counter() - started
        assert results == [n * 2 for n in range(join_size)]
    finally:
        await app.stop()
    return {
        "broker": broker.split("://", 1)[0] + "://",
        "sequential_asks": asks,
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50) * 1000, 3),
            "p99": round(percentile(latencies, 0.99) * 1000, 3),
            "max": round(latencies[-1] * 1000, 3),
            "mean": round(statistics.fmean(latencies) * 1000, 3),
        },
        "concurrent_asks": asks * 5,
        "in_flight": in_flight,
        "concurrent_asks_per_second": round(asks * 5 / concurrent_seconds),
        "join_values": join_size,
        "join_values_per_second": round(join_size / join_seconds),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asks", type=int, default=5000, help="sequential asks (the concurrent run does 5x)")
    parser.add_argument("--in-flight", type=int, default=1000, help="outstanding asks in the concurrent run")
    parser.add_argument("--join", type=int, default=20000, help="values in one join")
    parser.add_argument("--broker", default="memory://", help="transport URL: memory:// (default) or kafka://HOST:PORT")
    parser.add_argument("--tansu", action="store_true", help="start a local Tansu broker and measure on it (kafka://)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args()
    proc = None
    broker = args.broker
    if args.tansu or broker.startswith("kafka://"):
        from _tansu import fast_groups, start_tansu

        fast_groups()  # Tansu admits a consumer in about half a session timeout; joins are in the warm-up
        if args.tansu:
            proc, broker = start_tansu()
    try:
        result = asyncio.run(bench(broker, args.asks, args.in_flight, args.join))
    finally:
        if proc is not None:
            from _tansu import stop_tansu

            stop_tansu(proc)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    lat = result["latency_ms"]
    assert isinstance(lat, dict)
    print(f"on {result['broker']}")
    print(f"ask round trip, one at a time ({result['sequential_asks']} asks): "
          f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    print(f"concurrent asks ({result['concurrent_asks']}, {result['in_flight']} in flight): "
          f"{result['concurrent_asks_per_second']:,} asks/s")
    print(f"join of {result['join_values']:,} values: {result['join_values_per_second']:,} values/s")


if __name__ == "__main__":
    main()
