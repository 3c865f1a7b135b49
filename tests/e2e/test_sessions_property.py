"""Session windows against a brute-force reference (tests/e2e/session_reference.py).

Random event lists -- several keys, out of order, late, events that bridge sessions -- go
through a real worker on the embedded local log in two runs on the same data directory
(a restart in the middle). The session table, every row `emit changes` sent (retractions
included, in order, per partition) and every row `emit final` sent (in order, per
partition) must be exactly the reference's, as must the count of late events.
"""
from __future__ import annotations

import asyncio
import io
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataflow import Flow, agg, session
from dataflow.planner import plan as build_plan
from dataflow.planner.plan import ExecutionPlan
from dataflow.runtime.sessions import SessionStep
from dataflow.runtime.worker import Worker, WorkerOptions
from dataflow.transport.base import TP, ProducerRecord
from dataflow.transport.local import LocalTransport

from .session_reference import Reference

AGGREGATES = dict(n=agg.count(), total=agg.sum("x"), lo=agg.min("x"), hi=agg.max("x"), mean=agg.avg("x"),
                  xs=agg.collect("x"), distinct=agg.set("x"), last=agg.latest("x"),
                  first=agg.reduce(lambda acc, x: acc, "x"))


def make_plan(gap: int, grace: int, expires: int | None, partitions: int) -> ExecutionPlan:
    flow = Flow("sess", partitions=partitions)
    # one source partition: every key's events reach its session partition in list order
    windowed = (flow.source("ev", partitions=1).group_by("k", name="by_k", partitions=partitions)
                .window(session(f"{gap}ms", grace=f"{grace}ms", expires=None if expires is None else f"{expires}ms", on="ts"), name="sessions"))
    windowed.aggregate(**AGGREGATES, name="live").changes().to("changes")
    windowed.aggregate(**AGGREGATES, name="closed", emit="final").changes().to("final")
    return build_plan(flow.topology())


async def run(plan: ExecutionPlan, data: Path, events: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    transport = LocalTransport(data)
    await transport.start()
    try:
        worker = Worker(plan, transport, WorkerOptions(batch_size=batch_size, commit_every=7, stdout=io.StringIO(),
                                                       data_dir=str(data)))
        await worker.start()
        await worker.producer.send_batch([ProducerRecord("ev", None, orjson.dumps(e)) for e in events])
        await worker.run(until_idle=True)
        tables = {name: worker.tables[name].rows() for name in ("live", "closed")}
        late = worker.monitor.as_dict()["late_events_by_step"]
        await worker.stop()
        log, topics = transport.log, {}
        for topic in ("changes", "final"):
            topics[topic] = {p: [(orjson.loads(m.key), orjson.loads(m.value))
                                 for m in await log.read(TP(topic, p), 0, log.end_offset(TP(topic, p)))]
                             for p in range(log.spec(topic).partitions)}
        return {"tables": tables, "topics": topics, "late": late}
    finally:
        await transport.stop()


event = st.fixed_dictionaries({"k": st.sampled_from(["a", "b", "c"]), "ts": st.integers(0, 150),
                               "x": st.one_of(st.none(), st.integers(-5, 5))})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(event, max_size=40), split=st.integers(0, 40), gap=st.sampled_from([3, 10, 25]),
       grace=st.sampled_from([0, 5, 40]), expires=st.sampled_from([None, 0, 30]), partitions=st.sampled_from([1, 2]),
       batch_size=st.sampled_from([1, 4, 100]))
# a bridge between a session and an older one that arrived later: the merge folds in arrival order
@example(events=[{"k": "a", "ts": 20, "x": 1}, {"k": "a", "ts": 0, "x": 2}, {"k": "a", "ts": 10, "x": 3}],
         split=2, gap=10, grace=40, expires=None, partitions=1, batch_size=1)
# after the restart only extensions of a's session: b's session must still close
@example(events=[{"k": "a", "ts": 0, "x": 1}, {"k": "b", "ts": 0, "x": 2}, {"k": "a", "ts": 20, "x": 3},
                 {"k": "a", "ts": 40, "x": 4}], split=2, gap=25, grace=0, expires=None, partitions=1, batch_size=1)
def test_sessions_match_the_reference_across_a_restart(events, split, gap, grace, expires, partitions, batch_size):
    expires = None if expires is None else gap + grace + expires
    plan = make_plan(gap, grace, expires, partitions)
    reference = Reference(gap, grace, partitions, retention=24 * 3600 * 1000 if expires is None else expires)
    finished: list[int] = []
    late: dict[str, int] = {}
    original = SessionStep.finish

    def finish(self: SessionStep) -> None:  # if a run ends its input with finish(), so does the reference
        finished.append(1)
        original(self)

    SessionStep.finish = finish  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            for part in (events[:split], events[split:]):
                calls = len(finished)
                outcome = asyncio.run(run(plan, data, part, batch_size))
                for name, count in outcome["late"].items():
                    late[name] = late.get(name, 0) + count
                for e in part:
                    reference.add(e["k"], e["ts"], e["x"])
                if len(finished) > calls:
                    reference.finish()
    finally:
        SessionStep.finish = original  # type: ignore[method-assign]
    table = reference.table()
    assert sorted(outcome["tables"]["live"], key=repr) == table
    assert sorted(outcome["tables"]["closed"], key=repr) == table
    changes = {p: rows for p, rows in outcome["topics"]["changes"].items() if rows}
    assert changes == reference.changes
    final = {p: rows for p, rows in outcome["topics"]["final"].items() if rows}
    assert final == reference.emitted_final()
    assert late == {name: reference.late for name in ("live", "closed") if reference.late}


def test_the_reference_merges_a_bridging_event_and_retracts_the_merged_sessions():
    ref = Reference(gap=10, grace=100)
    for t, x in [(0, 1), (20, 2), (10, 3)]:
        ref.add("a", t, x)
    assert [(k, r["window_start"], r["window_end"], r.get("xs")) for k, r in ref.changes[0]] == [
        ("a", 0, 0, [1]), ("a", 20, 20, [2]), ("a", 20, 20, None), ("a", 0, 20, [1, 2, 3])]
    assert [r["n"] for _, r in ref.table()] == [3]
