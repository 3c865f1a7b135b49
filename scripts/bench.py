#!/usr/bin/env python
"""Throughput and peak memory of compiled plans on memory:// and the local log.

Scenarios (1M small JSON records by default; `--records N` to scale down):

  chain        filter -> map -> map, fused into one step; JSON decode and encode included
  repartition  filter -> group_by (writes and re-reads a repartition topic) -> map -> sink
  windowed     group_by (4 partitions) -> 10 s tumbling count on `ts`, emit final: the
               repartition topic carries watermarks (headers, heartbeats) to close windows
  keyed-count  a running count per key (10k keys, 4 partitions) in a table; on the local log
               that is LevelDB stores, one changelog record per changed key per commit, and
               the outputs + changelog + offsets transaction of every commit
  session      session windows (gap 20s, grace 1s, emit final) counting events per session:
               10k keys drawn at random, 1 ms of event time per record (so a key's events are
               about 10 s apart and a session holds about 7 of them), 10% up to 0.5 s out of
               order; the session table, its event buffer and the closed sessions sent to `out`

Each scenario runs in a fresh subprocess, so peak memory (`ru_maxrss`) is its own. The
input is produced before timing; the clock runs from the start of consuming until the
worker is idle (every input consumed, every output produced and committed).

    .venv/bin/python scripts/bench.py                  # everything, 1M records
    .venv/bin/python scripts/bench.py --records 100000 --scenario chain --transport memory
    .venv/bin/python scripts/bench.py --json           # machine-readable results
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SCENARIOS = ("chain", "repartition", "windowed", "keyed-count", "session")
SESSION_GAP, SESSION_GRACE = 20_000, 1_000
KEYS = 10_000
TRANSPORTS = ("memory", "local")


def build(scenario: str):  # type: ignore[no-untyped-def]
    from dataflow import Flow, Record, agg, col, fn, session, tumbling

    class Event(Record):
        id: int
        user: str
        amount: float
        ts: int

    if scenario == "session":
        flow = Flow(f"bench-{scenario}", partitions=4)
        (flow.source("events", key=str, value=Event)
             .window(session(f"{SESSION_GAP}ms", grace=f"{SESSION_GRACE}ms", on="ts"))
             .aggregate(n=agg.count(), name="sessions", emit="final").to("out"))
        return flow
    if scenario == "keyed-count":
        flow = Flow(f"bench-{scenario}", partitions=4)
        flow.source("events", key=str, value=Event).count(name="counts")
        return flow
    flow = Flow(f"bench-{scenario}", partitions=1)
    events = flow.source("events", value=Event)
    if scenario == "windowed":
        (events.group_by("user", name="by_user", partitions=4)
               .window(tumbling("10s", on="ts"))
               .count(name="per_window", emit="final")
               .changes()
               .to("out"))
        return flow
    if scenario == "chain":
        (events.filter(col("amount") >= 0)
               .map({"id": col("id"), "user": fn.upper(col("user")), "cents": col("amount") * 100})
               .map({"id": col("id"), "user": col("user"), "cents": col("cents"), "big": col("cents") > 50_000})
               .to("out"))
    else:
        (events.filter(col("amount") >= 0)
               .group_by("user", name="by_user", partitions=4)
               .map({"id": col("id"), "user": col("user"), "cents": col("amount") * 100})
               .to("out"))
    return flow


def key(i: int) -> bytes:
    return b'"user-%d"' % (i % KEYS)


def payload(i: int) -> bytes:
    # ts: 1 ms apart, so 1M records span 1,000 s (a hundred 10 s windows per user)
    return b'{"id":%d,"user":"user-%d","amount":%d.5,"ts":%d}' % (i, i % 1000, i % 1000, 1_700_000_000_000 + i)


def session_events(records: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the session scenario: random keys, 1 ms apart, 10% up to 0.5 s late."""
    import random
    rng = random.Random(7)
    out = []
    for i in range(records):
        jitter = rng.randrange(500) if rng.random() < 0.1 else 0
        out.append((b'"user-%d"' % rng.randrange(KEYS),
                    b'{"id":%d,"user":"user","amount":1.5,"ts":%d}' % (i, 1_000_000 + i - jitter)))
    return out


async def measure(scenario: str, transport_kind: str, records: int, data_dir: str) -> dict:
    from dataflow.planner import plan as build_plan
    from dataflow.runtime.process import tune_for_throughput
    from dataflow.runtime.worker import Worker, WorkerOptions
    from dataflow.transport.base import ProducerRecord, open_transport

    plan = build_plan(build(scenario).topology())
    url = "memory://" if transport_kind == "memory" else f"local://{data_dir}"
    transport = open_transport(url, data_dir)
    await transport.start()
    try:
        settings = plan.settings
        worker = Worker(plan, transport, WorkerOptions(
            batch_size=settings.batch_size, commit_every=settings.commit_every,
            commit_interval=settings.commit_interval, data_dir=None if transport_kind == "memory" else data_dir))
        await worker.start()
        producer = transport.producer()
        chunk = 20_000
        keyed = scenario == "keyed-count"
        sessions = scenario == "session"
        timed = session_events(records) if sessions else []
        for start in range(0, records, chunk):
            if sessions:
                batch = [ProducerRecord("events", k, v) for k, v in timed[start:start + chunk]]
            else:
                batch = [ProducerRecord("events", key(i) if keyed else None, payload(i))
                         for i in range(start, min(records, start + chunk))]
            await producer.send_batch(batch)
        await producer.flush()
        tune_for_throughput()  # as `dataflow run` does
        rss_before = _rss_now()
        started = time.perf_counter()
        await worker.run(until_idle=True)
        if keyed:
            rows = worker.tables["counts"].rows()
        if sessions:
            rows = worker.tables["sessions"].rows()
        await worker.stop()
        seconds = time.perf_counter() - started
        sent = worker.monitor.as_dict()["messages_sent_by_topic"]
        extra = {}
        if keyed:
            assert len(rows) == min(KEYS, records) and sum(v["count"] for _, v in rows) == records, len(rows)
        elif sessions:  # nothing late, nothing expired: every event is in one session
            assert sum(v["n"] for _, v in rows) == records and worker.monitor.as_dict()["late_events"] == 0
            # a bounded run: the end of input closes every session, so each is sent once
            assert sent.get("out", 0) == len(rows), (sent, len(rows))
            extra = {"sessions": len(rows), "closed_sessions_sent": sent.get("out", 0)}
        elif scenario == "windowed":  # a bounded run: every (user, window) once
            windows = {(i % 1000, (1_700_000_000_000 + i) // 10_000) for i in range(records)}
            assert sent.get("out") == len(windows), (sent, len(windows))
        else:
            assert sent.get("out") == records, sent
    finally:
        await transport.stop()
    return {
        "scenario": scenario, "transport": transport_kind, "records": records, "seconds": round(seconds, 3),
        "events_per_second": round(records / seconds),
        "changelog_records": worker.monitor.changelog_records,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **extra,
    }


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--transport", choices=TRANSPORTS, action="append")
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # run in this process
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="dataflow-bench-") as tmp:
            result = asyncio.run(measure(args.scenario[0], args.transport[0], args.records, tmp))
        print(json.dumps(result))
        return
    results = []
    for scenario in args.scenario or SCENARIOS:
        for kind in args.transport or TRANSPORTS:
            out = subprocess.run([sys.executable, __file__, "--one", "--scenario", scenario, "--transport", kind,
                                  "--records", str(args.records)], check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(f"{scenario:<12} {kind:<7} {result['records']:>9,} records  {result['seconds']:>7.2f} s  "
                      f"{result['events_per_second']:>9,} events/s  peak RSS {result['peak_rss_mb']:>7.1f} MB "
                      f"(before consuming {result['rss_before_mb']:.1f} MB)"
                      + (f"  changelog records {result['changelog_records']:,}" if result["changelog_records"] else "")
                      + (f"  sessions {result['sessions']:,} ({result['closed_sessions_sent']:,} closed and sent)"
                         if "sessions" in result else ""),
                      flush=True)


if __name__ == "__main__":
    main()
