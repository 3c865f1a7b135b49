"""Ask a compiled pipeline: send one value to a source topic, await the flow's answer.

The request is an ordinary record with reply headers (`runtime.replies`); the worker that
runs the flow answers with the flow's sink output for it, null when the value was
filtered out, or an error naming the stage that failed. On an in-process log (the
embedded local log, `memory://`) a log serves one process, so the flow runs here for the
duration of the ask; on Kafka the running workers answer.

>>> import asyncio
>>> from dataflow import Flow, col
>>> from dataflow.planner import plan
>>> from dataflow.transport.memory import MemoryTransport
>>> flow = Flow("tax", partitions=1)
>>> flow.source("prices").map({"with_tax": col("amount") * 1.25}).to("taxed")
>>> asyncio.run(ask_flow(plan(flow.topology()), "prices", {"amount": 8}, transport=MemoryTransport()))
{'with_tax': 10.0}
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from ..planner.plan import ExecutionPlan
from ..transport.base import ProducerRecord, Transport
from .replies import ReplyPromise, request_headers

__all__ = ["UnknownEntry", "ask_flow"]


class UnknownEntry(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def entry_topics(plan: ExecutionPlan) -> list[str]:
    """The topics a pipeline can be asked through: its sources."""
    return sorted(t.name for t in plan.topics if t.role == "source")


async def ask_flow(plan: ExecutionPlan, topic: str, value: Any, key: Any = None, *, transport: Transport,
                   timeout: float = 30.0, data_dir: str | None = None) -> Any:
    """The flow's answer for ``value`` sent to source ``topic`` (raises ``ReplyError`` on
    an error reply or ``AskTimeout``)."""
    from .app import App
    from .worker import Worker, WorkerOptions

    if topic not in entry_topics(plan):
        raise UnknownEntry(f"pipeline {plan.name} has no source topic {topic!r}; "
                           f"ask through one of: {', '.join(entry_topics(plan)) or 'none'}")
    hosted = hasattr(transport, "broker")  # an in-process log: nobody else can be running the flow
    await transport.start()
    client = App(f"{plan.name}-ask", broker=transport, client_only=True)
    worker = None
    try:
        await client.start()
        replies = await client.replies()
        promise = ReplyPromise(client.reply_to, "")
        replies.add(promise.correlation_id, promise, timeout=timeout, label=f"pipeline {plan.name!r}")
        if hosted:
            worker = Worker(plan, transport, WorkerOptions(batch_size=plan.settings.batch_size,
                                                           commit_every=plan.settings.commit_every,
                                                           commit_interval=plan.settings.commit_interval,
                                                           data_dir=data_dir))
            await worker.start()
        record = ProducerRecord(topic, orjson.dumps(key) if key is not None else None, orjson.dumps(value),
                                None, None, request_headers(client.reply_to, promise.correlation_id))
        await (worker.producer if worker is not None else client._producer).send_batch([record])  # type: ignore[union-attr]
        if worker is None:
            return await promise
        running = asyncio.ensure_future(worker.run())
        try:
            done, _ = await asyncio.wait({promise, running}, return_when=asyncio.FIRST_COMPLETED)
            if running in done:
                running.result()  # the worker failed: say why
            return await promise
        finally:
            worker.request_stop()
            with contextlib.suppress(Exception):
                await running
    finally:
        if worker is not None:
            await worker.stop()
        await client.stop()
        await transport.stop()
