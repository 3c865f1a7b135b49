"""The end of a bounded run: event time passes everything, upstream first.

When a run is told its inputs are finite (``dataflow run --until-idle``, or
``Worker.run(until_idle=True)``), consuming them all is not the end: windows of
``emit final`` aggregates and rows of left and outer stream-stream joins are still waiting
for event time to pass. Once the worker is idle, each sub-topology whose inputs have all
ended *finishes*: its stateful steps, in dependency order, emit what they hold
(:meth:`StatefulStep.finish`), and the partitions it read are reported *ended* to the
partitions of the repartition or through topics it writes (a watermark header or a
heartbeat, `runtime.watermarks`), after what the finishing emitted. A sub-topology that
reads such a topic finishes once every upstream partition has ended, so what an upstream
step emits at the end reaches the steps downstream of it, through any number of topics.
The run returns when every sub-topology has finished and nothing is left in flight.

Several workers sharing the group each finish what they own; a worker waits (idle) for
its peers' end reports before finishing the sub-topologies that read their partitions.

Nothing of this is persisted as time: the stream times and watermarks saved with the
state stay the real ones, so a later run over the same state goes on where the events
left off (see "Bounded and unbounded runs" in docs/state.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .stateful import StatefulStep

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["Finisher"]


@dataclass
class _Agent:
    steps: list[StatefulStep]  # dependency order
    inputs: frozenset[str]  # every topic it reads
    internal: frozenset[str]  # the repartition and through topics among them


class Finisher:
    """Finishes a worker's sub-topologies, upstream first, once its inputs are consumed."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        order = {name: i for i, name in enumerate(worker.plan.topology.order())}
        self.pending: list[_Agent] = []
        for plan, compiled in zip(worker.plan.agents, worker.agents):
            steps = sorted((s for s in compiled.steps.values() if isinstance(s, StatefulStep)),
                           key=lambda s: order.get(s.name, 0))
            inputs = frozenset(t for _, t in plan.entries)
            self.pending.append(_Agent(steps, inputs, inputs & worker.watermarks.reading))

    async def at_end(self) -> bool:
        """Called when the worker is idle: finish what can finish; True once all has."""
        worker = self.worker
        async with worker._lock:
            assigned = worker.consumer.assignment()
            ready = [a for a in self.pending
                     if all(worker.watermarks.finished(tp) for tp in assigned if tp.topic in a.internal)]
            if not ready:
                return not self.pending
            for agent in ready:
                for step in agent.steps:
                    step.finish()
                worker._tick()  # count what the last ticks dropped as late
                worker.watermarks.end(tp for tp in assigned if tp.topic in agent.inputs)
                self.pending.remove(agent)
            await worker._flush()  # the consume loop writes and commits it as any batch's outputs
        return False
