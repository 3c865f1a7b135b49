"""Any interleaving in which two inputs are delivered gives the reference join (issue 12).

Two joins in one pipeline: orders with the latest user (a stream-table left join) and
clicks with impressions within 5 s (a stream-stream inner join), event time from a `ts`
field. Each input's records are in time order within their partition; they are produced
into their topics in any interleaving across topics, all before the run, and fetched in
batches of random sizes. The outputs must equal a brute-force reference that applies
every record in (time, table first) order.
"""
from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dataflow import Flow
from dataflow.transport.base import ProducerRecord
from dataflow.transport.memory import MemoryTransport

from .conftest import Run, run_on

WITHIN_MS = 5_000
KEYS = ["a", "b"]


def pipeline(partitions: int) -> Flow:
    flow = Flow("aligned", partitions=partitions)
    users = flow.table("users", key=str, timestamp="ts")
    flow.source("orders", key=str, timestamp="ts").join(users, how="left", name="enriched").to("enriched-out")
    impressions = flow.source("impressions", key=str, timestamp="ts")
    flow.source("clicks", key=str, timestamp="ts").join(impressions, within="5s", name="clicked").to("clicked-out")
    return flow


def timeline(deleting: bool, min_size: int = 0) -> st.SearchStrategy[list[tuple[str, int, Any]]]:
    """(key, ts, value) in time order; equal times are common (ties across and within inputs)."""
    value = st.one_of(st.integers(0, 99), st.none()) if deleting else st.integers(0, 99)
    step = st.tuples(st.sampled_from(KEYS), st.sampled_from([0, 0, 1, 2, 3_000, 7_000]), value)
    # the first step starts the clock anywhere in the first few seconds, so inputs overlap in time
    start = st.tuples(st.sampled_from(KEYS), st.integers(0, 8_000), value)

    def times(steps: list[tuple[str, int, Any]]) -> list[tuple[str, int, Any]]:
        clock = itertools.accumulate(d for _, d, _ in steps)
        return [(k, t, v) for (k, _, v), t in zip(steps, clock)]

    rows = st.tuples(start, st.lists(step, max_size=25)).map(lambda first_rest: [first_rest[0], *first_rest[1]])
    return (rows if min_size else st.one_of(st.just([]), rows)).map(times)


def body(name: str, ts: int, v: Any) -> Any:
    return None if v is None else {"ts": ts, name: v}


def reference(data: dict[str, list[tuple[str, int, Any]]]) -> tuple[list[Any], list[Any]]:
    enriched = []
    for k, ts, v in data["orders"]:
        seen = [u for u in data["users"] if u[0] == k and u[1] <= ts]  # a user update at the same time counts
        right = body("user", seen[-1][1], seen[-1][2]) if seen else None
        enriched.append((k, {"left": body("order", ts, v), "right": right}))
    clicked = [(k, {"left": body("click", ts, v), "right": body("imp", its, iv)})
               for k, ts, v in data["clicks"] for ik, its, iv in data["impressions"]
               if ik == k and abs(ts - its) <= WITHIN_MS]
    return sorted(enriched, key=orjson.dumps), sorted(clicked, key=orjson.dumps)


FIELD = {"users": "user", "orders": "order", "impressions": "imp", "clicks": "click"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(users=timeline(deleting=True, min_size=1), orders=timeline(False, min_size=1), impressions=timeline(False), clicks=timeline(False),
       partitions=st.sampled_from([1, 2]), batch_size=st.integers(1, 12),
       fetches=st.lists(st.integers(1, 30), min_size=1, max_size=8), data=st.data())
def test_any_interleaving_and_fetch_sizes_give_the_reference_joins(users, orders, impressions, clicks,
                                                                    partitions, batch_size, fetches, data):
    inputs = {"users": users, "orders": orders, "impressions": impressions, "clicks": clicks}
    order = data.draw(st.permutations([t for t, rows in inputs.items() for _ in rows]), label="interleaving")
    run = asyncio.run(joined(inputs, order, partitions, batch_size, fetches))
    enriched, clicked = reference(inputs)
    assert sorted(run.pairs("enriched-out"), key=orjson.dumps) == enriched
    assert sorted(run.pairs("clicked-out"), key=orjson.dumps) == clicked
    assert run.committed == {tp: end or None for tp, end in run.ends.items()}  # every input done and committed


async def joined(inputs: dict[str, list[tuple[str, int, Any]]], order: list[str], partitions: int, batch_size: int,
                 fetches: list[int]) -> Run:

    async def produce_then_vary_fetches(worker: Any) -> None:
        cursor = {topic: iter(rows) for topic, rows in inputs.items()}
        for topic in order:  # one record at a time, topics interleaved as drawn
            k, ts, v = next(cursor[topic])
            value = None if v is None else orjson.dumps(body(FIELD[topic], ts, v))
            await worker.producer.send(ProducerRecord(topic, orjson.dumps(k), value, None, ts))
        getmany, sizes = worker.consumer.getmany, itertools.cycle(fetches)

        async def varied(max_records: int = 1000, timeout: float = 1.0) -> Any:
            return await getmany(max_records=min(max_records, next(sizes)), timeout=timeout)

        worker.consumer.getmany = varied

    transport = MemoryTransport()
    await transport.start()
    try:
        run = await run_on(transport, pipeline(partitions), batch_size=batch_size, after_start=produce_then_vary_fetches)
    finally:
        await transport.stop()
    return run
