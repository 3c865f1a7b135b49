"""Declaring a pipeline's topics at start: check what exists, create what is internal.

Written for Kafka, where topics outlive a run and are shared with other applications,
but works on any :class:`~dataflow.transport.base.Transport`:

* **source and output topics** belong to the user. A missing one is an error naming it,
  unless ``auto_create`` is on (then it is created with its planned partition count).
  An existing one keeps its partition count, whatever the plan assumed.
* **internal topics** (repartition, changelog, dead letters) belong to the pipeline and
  are created with their planned partition counts; changelogs are compacted. An internal
  topic that exists with another count is an error (its data is partitioned for the old
  count).
* **co-partitioned topics** -- the topics an agent with state reads, and its stores'
  changelogs -- must have equal partition counts, or keys of one partition would meet
  state kept for another. A mismatch is reported before anything is created or consumed.

The transport layer does not import the planner: :func:`declarations_for` reads a plan by
its shape (``topics``, ``agents``, ``stores``), so the runtime can call
``await declare_topics(transport, declarations_for(plan), auto_create=...)`` instead of
``create_topics``.

>>> import asyncio
>>> from dataflow.transport.memory import MemoryTransport
>>> wanted = Declarations((TopicDeclaration("orders", 2, "source", False),
...                        TopicDeclaration("app-totals-changelog", 2, "changelog", True, compacted=True)),
...                       co_partitioned=(("orders", "app-totals-changelog"),))
>>> async def demo():
...     async with MemoryTransport() as t:
...         try:
...             await declare_topics(t, wanted, auto_create=False)
...         except UnknownTopicError as e:
...             print(e)
...         return await declare_topics(t, wanted, auto_create=True)
>>> asyncio.run(demo())
source topic 'orders' does not exist on memory://; hint: create it (dataflow topics create orders --partitions 2), or set auto_create_topics=true
{'app-totals-changelog': 2, 'orders': 2}
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from dataflow.transport.base import TopicMismatchError, TopicSpec, Transport, UnknownTopicError

__all__ = ["Declarations", "TopicDeclaration", "declarations_for", "declare_topics"]

logger = logging.getLogger(__name__)

_USER_ROLES = {"source": "source topic", "table-source": "source topic", "sink": "output topic",
               "echo": "output topic", "through": "through topic"}


@dataclass(frozen=True)
class TopicDeclaration:
    """One topic a pipeline uses. ``internal`` topics are the pipeline's own.

    >>> TopicDeclaration("app-dead-letters", 1, "dead-letter", True).spec()
    TopicSpec(name='app-dead-letters', partitions=1, compacted=False)
    """

    name: str
    partitions: int
    role: str
    internal: bool
    compacted: bool = False

    def spec(self, partitions: int | None = None) -> TopicSpec:
        return TopicSpec(self.name, self.partitions if partitions is None else partitions, self.compacted)


@dataclass(frozen=True)
class Declarations:
    """Every topic of a pipeline, and the groups of them that must be co-partitioned."""

    topics: tuple[TopicDeclaration, ...]
    co_partitioned: tuple[tuple[str, ...], ...] = ()


def declarations_for(plan: Any) -> Declarations:
    """The declarations of an ``ExecutionPlan`` (read by its attributes, not imported).

    A group of co-partitioned topics per agent that keeps state: the topics it reads and
    its stores' changelogs.
    """
    topics = tuple(TopicDeclaration(t.name, t.partitions, t.role, t.internal, t.compacted) for t in plan.topics)
    stores = {s.name: s for s in plan.stores}
    groups = []
    for agent in plan.agents:
        if not agent.stores:
            continue
        names = set(agent.source_topics) | {stores[name].changelog for name in agent.stores if name in stores}
        if len(names) > 1:
            groups.append(tuple(sorted(names)))
    return Declarations(topics, tuple(groups))


async def declare_topics(transport: Transport, declarations: Declarations, *, auto_create: bool = True
                         ) -> dict[str, int]:
    """Check, then create; returns every topic's partition count as it now is.

    Raises :class:`UnknownTopicError` for missing user topics (without ``auto_create``)
    and :class:`TopicMismatchError` for co-partitioning or internal-topic mismatches;
    either way nothing has been created.
    """
    wanted = {d.name: d for d in declarations.topics}
    existing = await transport.describe_topics(wanted)
    missing = [d for d in declarations.topics if not d.internal and d.name not in existing]
    if missing and not auto_create:
        first = missing[0]
        names = ", ".join(f"{_USER_ROLES.get(d.role, 'topic')} {d.name!r}" for d in missing)
        verb = "does" if len(missing) == 1 else "do"
        create = " ".join(d.name for d in missing if d.partitions == first.partitions)
        raise UnknownTopicError(
            f"{names} {verb} not exist on {transport.url}; hint: create "
            f"{'it' if len(missing) == 1 else 'them'} (dataflow topics create {create} --partitions "
            f"{first.partitions}), or set auto_create_topics=true")
    for d in declarations.topics:
        have = existing.get(d.name)
        if d.internal and have is not None and have != d.partitions:
            raise TopicMismatchError(
                f"internal topic {d.name!r} exists with {have} partitions, but the plan needs {d.partitions}; "
                "hint: the pipeline's partitioning changed: delete the topic (its data is partitioned for the "
                "old count) or keep the old partition count")
    counts = {name: existing.get(name, d.partitions) for name, d in wanted.items()}
    for group in declarations.co_partitioned:
        sizes = {name: counts[name] for name in group if name in counts}
        if len(set(sizes.values())) > 1:
            listed = ", ".join(f"{name!r} ({n} partitions)" for name, n in sorted(sizes.items()))
            user = sorted(name for name in sizes if not wanted[name].internal and name in existing)
            hint = (f"declare {', '.join(user)} with the partition count {'it has' if len(user) == 1 else 'they have'}"
                    f" (partitions {existing[user[0]]}), so the internal topics are planned to match"
                    if user else "give them one partition count")
            raise TopicMismatchError(f"topics {listed} must have the same number of partitions: one agent "
                                     f"reads them with its state, partition by partition; hint: {hint}")
    for d in declarations.topics:
        have = existing.get(d.name)
        if not d.internal and have is not None and have != d.partitions:
            logger.info("topic %r has %d partitions (the plan assumed %d); using %d", d.name, have, d.partitions, have)
    create = [d.spec() for d in declarations.topics if d.name not in existing]
    if create:
        await transport.create_topics(create)
    return dict(sorted(counts.items()))
