"""Offsets and commits through the worker: committed == end after a run; restarts resume exactly."""
from __future__ import annotations

from dataflow import Flow, Record, col
from dataflow.transport.base import TP
from dataflow.transport.local import LocalTransport

from .conftest import record, run_flow, run_on


class Payment(Record):
    account: str
    amount: float


def pipeline() -> Flow:
    flow = Flow("commits", partitions=3)
    (flow.source("payments", value=Payment, partitions=2)
         .filter(col("amount") > 0)
         .group_by("account", name="by_account", partitions=3)
         .map({"account": col("account"), "amount": col("amount")})
         .to("out"))
    return flow


def payments(start: int, stop: int) -> list:
    # Keys spread the input over both source partitions; amount 0 is filtered out.
    return [record({"account": f"acc-{i % 8}", "amount": float(i % 4)}, key=f"k{i}") for i in range(start, stop)]


async def test_committed_offsets_equal_end_offsets_after_a_run(kind, tmp_path):
    run = await run_flow(kind, tmp_path, pipeline(), {"payments": payments(0, 500)}, batch_size=64)
    assert set(run.committed) == {TP("payments", 0), TP("payments", 1), TP("commits-by_account-repartition", 0),
                                  TP("commits-by_account-repartition", 1), TP("commits-by_account-repartition", 2)}
    assert all(end > 0 for end in run.ends.values())
    assert run.committed == run.ends
    assert sum(run.ends[TP("payments", p)] for p in (0, 1)) == 500
    assert len(run.topics["out"]) == 375
    d = run.monitor.as_dict()
    assert d["committed_offsets"] == {f"{tp.topic}[{tp.partition}]": o for tp, o in sorted(run.ends.items())}
    assert d["lag"] == {f"{tp.topic}[{tp.partition}]": 0 for tp in sorted(run.ends)}


async def test_restarts_on_the_local_log_resume_exactly_where_they_committed(tmp_path):
    data = tmp_path / "data"

    async def session(inputs: list | None):
        transport = LocalTransport(data)
        await transport.start()
        try:
            return await run_on(transport, pipeline(), {"payments": inputs} if inputs else None, batch_size=64)
        finally:
            await transport.stop()

    first = await session(payments(0, 400))
    assert first.monitor.messages_received == 400 + 300
    assert len(first.topics["out"]) == 300

    second = await session(None)  # a new worker, same data dir: nothing new to do
    assert second.monitor.messages_received == 0
    assert second.monitor.as_dict()["messages_sent"] == 0
    assert second.topics["out"] == first.topics["out"]
    assert second.committed == first.committed == first.ends

    third = await session(payments(400, 440))  # produced after a restart: processed exactly once more
    assert third.monitor.as_dict()["messages_received_by_topic"] == {"commits-by_account-repartition": 30,
                                                                     "payments": 40}
    out = [(m.key, m.value) for m in third.topics["out"]]
    assert len(out) == 330
    new = sorted(out, key=repr)
    old = sorted([(m.key, m.value) for m in first.topics["out"]], key=repr)
    expected_new = sorted(
        (f'"acc-{i % 8}"'.encode(), f'{{"account":"acc-{i % 8}","amount":{float(i % 4)}}}'.encode())
        for i in range(400, 440) if i % 4)
    remaining = list(new)
    for item in old + expected_new:
        remaining.remove(item)  # each exactly once
    assert remaining == []
    assert third.committed == third.ends
