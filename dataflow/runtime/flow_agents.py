"""Python agents a compiled flow calls: `call agent` stages and `to agent` sinks.

An agent answers asynchronously, and a batch goes through the compiled steps in one
synchronous push; so an agent step only collects the records that reach it, and the worker
*settles* them once the batch has been pushed (`AgentApps.settle`, before the stateful steps
tick and the outputs are produced):

* a `call agent` stage asks with one `agent.kvjoin` per batch (requests go out in produce
  calls of 500, replies come back in input order), keeps each record's key, timestamp and
  origin, and pushes the replies on through its successors. A record the agent yields
  nothing for, or replies null for, is dropped (the request carries `dataflow.reply-always`,
  so the agent says so as soon as it has processed it, rather than the ask timing out); one
  it fails on, or that gets no reply within the app's `reply_expires`, is dead-lettered
  with the error as the reason;
* a `to agent` sink casts the batch with one `agent.cast_many` (no reply awaited).

What a stage pushes on may reach further agent steps: settling repeats until none has records
waiting, and steps with records wait for their agents together.

The agents run in this process: `AgentApps.start` starts each agent's app on the worker's
own transport (memory://, the local log or Kafka), unless the app is running already, and
`stop` stops them and gives them back their own broker. Agent calls are side effects outside
the worker's commits: at least once, even where the flow's own outputs are exactly once.
"""
from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import Any

from ..ir import nodes as n
from ..transport.base import Transport
from .codecs import CodecError
from .engine import CompiledAgent, Dead, Rec, Step

__all__ = ["AgentApps", "AgentCallStep", "AgentCastStep", "AgentStep", "agent_step", "resolve_agent"]

#: what encoding a value for an agent's topic raises: the record is dead-lettered
ENCODE_ERRORS = (CodecError, TypeError, ValueError)


class AgentStep(Step):
    """Collects the records of a batch for an agent; `settle` sends them."""

    def __init__(self, name: str, agent: Any, dead: Dead):
        super().__init__(name)
        self.agent = agent
        self.dead = dead
        self.pending: list[Rec] = []

    def push(self, batch: list[Rec]) -> None:
        self.events += len(batch)
        self.pending.extend(batch)

    @abstractmethod
    async def settle(self) -> list[Rec]:
        """Send the records waiting; returns what goes on to the successors."""


class AgentCallStep(AgentStep):
    """`call agent`: each record's value becomes the agent's reply for it."""

    async def settle(self) -> list[Rec]:
        batch, self.pending = self.pending, []
        try:
            replies = await self._ask(batch)
        except ENCODE_ERRORS:  # a value the agent's topic cannot encode: find it, ask the rest
            replies = []
            for rec in batch:
                try:
                    replies.extend(await self._ask([rec]))
                except ENCODE_ERRORS as e:
                    replies.append(e)
        out: list[Rec] = []
        for rec, reply in zip(batch, replies):
            if isinstance(reply, BaseException):
                self.dead(rec, reply, self.name)
            elif reply is not None:
                out.append((rec[0], reply, rec[2], rec[3]))
        return out

    async def _ask(self, batch: list[Rec]) -> list[Any]:
        return await self.agent.kvjoin([(rec[0], rec[1]) for rec in batch], return_exceptions=True,
                                       allow_empty=True)


class AgentCastStep(AgentStep):
    """`to agent`: every record goes to the agent, nothing comes back."""

    async def settle(self) -> list[Rec]:
        batch, self.pending = self.pending, []
        try:
            await self.agent.cast_many([(rec[0], rec[1]) for rec in batch])
        except ENCODE_ERRORS:  # nothing was sent: cast one by one, dead-lettering what fails
            for rec in batch:
                try:
                    await self.agent.cast(rec[1], key=rec[0])
                except ENCODE_ERRORS as e:
                    self.dead(rec, e, self.name)
        return []


def resolve_agent(node: n.CallAgent | n.Sink) -> Any:
    """The agent a node names: the one the builder was given, or the one its import path
    names (found as at plan time: from the working directory or the pipeline's directory)."""
    if node.agent is not None:
        return node.agent
    from ..ir.objects import PipelineNotFound, load_agent

    try:
        return load_agent(node.target, near=node.loc.file)
    except PipelineNotFound as e:
        raise RuntimeError(f"{node.loc}: cannot load agent \"{e.ref}\": {e.reason}") from None


def agent_step(node: n.CallAgent | n.Sink, dead: Dead) -> AgentStep:
    """The step of a `call agent` stage or a `to agent` sink."""
    cls = AgentCallStep if isinstance(node, n.CallAgent) else AgentCastStep
    return cls(node.name, resolve_agent(node), dead)


class AgentApps:
    """The apps of the agents a worker's plan calls, run on the worker's transport."""

    def __init__(self, transport: Transport):
        self.transport = transport
        self.steps: list[AgentStep] = []
        self._hosted: list[tuple[Any, tuple[Any, bool]]] = []  # (app, its own transport and ownership)

    async def start(self, agents: list[CompiledAgent]) -> None:
        """Start the apps of the agent steps of `agents` (once each) on the worker's transport."""
        self.steps = [s for agent in agents for s in agent.steps.values() if isinstance(s, AgentStep)]
        apps: dict[int, Any] = {}
        for step in self.steps:
            apps.setdefault(id(step.agent.app), step.agent.app)
        for app in apps.values():
            if app.started:
                continue  # the caller runs it: use it as it is
            saved = (app.transport, app._owns_transport)
            app.set_broker(self.transport)
            try:
                await app.start()
            except BaseException:
                app.transport, app._owns_transport = saved
                raise
            self._hosted.append((app, saved))

    async def stop(self) -> None:
        """Stop the apps started here (each drains its work first) and restore their brokers."""
        hosted, self._hosted = self._hosted, []
        for app, saved in reversed(hosted):
            try:
                await app.stop()
            finally:
                app.transport, app._owns_transport = saved

    async def settle(self) -> bool:
        """Ask and cast for the records agent steps collected; True if there were any."""
        settled = False
        while True:
            waiting = [s for s in self.steps if s.pending]
            if not waiting:
                return settled
            settled = True
            results = await asyncio.gather(*(s.settle() for s in waiting))
            for step, out in zip(waiting, results):
                step.emit(out)

    async def idle(self) -> bool:
        """Every app started here has processed everything sent to it."""
        for app, _ in self._hosted:
            if not await app.is_idle():
                return False
        return True
