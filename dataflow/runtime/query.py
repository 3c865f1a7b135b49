"""Read a pipeline's tables from outside a run: what `dataflow query` prints.

The tables are opened from the data directory exactly as a starting worker opens them
(each partition's store, caught up from its changelog), read, and closed again. A
running `dataflow run` holds the LevelDB locks of its data directory, so query a stopped
pipeline (or a copy of its data directory).

>>> import asyncio, tempfile
>>> from dataflow import Flow
>>> from dataflow.planner import plan
>>> flow = Flow("q", partitions=1)
>>> _ = flow.source("words", value=str).group_by("_value", name="w").count(name="counts")
>>> asyncio.run(read_table(plan(flow.topology()), "counts", tempfile.mkdtemp()))
[]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..ir import nodes as n
from ..ir.functions import suggest
from ..planner.plan import ExecutionPlan
from ..transport.base import TP, open_transport
from .engine import compile_agent
from .state import StateManager, make_tables

__all__ = ["UnknownTable", "read_table", "unknown_table"]


class UnknownTable(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def table_names(plan: ExecutionPlan) -> list[str]:
    """The tables a user can query: every store except a sliding window's event buffer."""
    return sorted(s.name for s in plan.stores if s.kind != "window-events")


def unknown_table(plan: ExecutionPlan, name: str) -> UnknownTable:
    """Why `name` cannot be queried: it names a stream or a window (which keep no rows of their
    own), or nothing (with the closest table name); and which tables there are.

    >>> from dataflow import Flow
    >>> from dataflow.planner import plan
    >>> flow = Flow("q", partitions=1)
    >>> words = flow.source("words", value=str)
    >>> _ = words.group_by("_value", name="w").count(name="counts")
    >>> print(unknown_table(plan(flow.topology()), "count"))
    pipeline q has no table 'count'; did you mean 'counts'? its tables are: counts
    >>> print(unknown_table(plan(flow.topology()), "words"))
    pipeline q has no table 'words': it is a stream (read from the topic words), which keeps no rows; its tables are: \
counts; hint: to query a stream's latest row per key, make a table of it: `| to_table` (.flow), `.to_table()` (Python)
    """
    tables = table_names(plan)
    listed = f"its tables are: {', '.join(tables) or 'none'}"
    node = _steps_by_name(plan).get(name)
    if node is None:
        best = suggest(name, tables)
        return UnknownTable(f"pipeline {plan.name} has no table {name!r}; "
                            + (f"did you mean {best!r}? " if best else "") + listed)
    if isinstance(node, n.Window):
        owners = sorted(s.name for s in plan.stores if s.window is not None and s.window.name == node.name)
        where = f"its rows are in the table {', '.join(map(repr, owners))}" if owners else "it keeps no rows"
        return UnknownTable(f"pipeline {plan.name} has no table {name!r}: it is a window, and {where}; {listed}")
    made_by = f"read from the topic {node.topic}" if isinstance(node, n.Source) else f"the output of its {node.kind} step"
    buffers = sorted(s.name for s in plan.stores if s.node == node.name and s.kind == "join-window")
    if buffers:
        made_by += f"; {' and '.join(buffers)} buffer its inputs"
    return UnknownTable(f"pipeline {plan.name} has no table {name!r}: it is a stream ({made_by}), which keeps no "
                        f"rows; {listed}; hint: to query a stream's latest row per key, make a table of it: "
                        "`| to_table` (.flow), `.to_table()` (Python)")


def _steps_by_name(plan: ExecutionPlan) -> dict[str, n.Node]:
    """Every step of the plan by its name, including those fused into one."""
    out: dict[str, n.Node] = {}
    for node in plan.topology.nodes():
        for step in node.steps if isinstance(node, n.Fused) else (node,):
            out[step.name] = step
    return out


async def read_table(plan: ExecutionPlan, table: str, data_dir: str | Path, broker: str | None = None,
                     key: Any = None, *, with_key: bool = False) -> list[tuple[Any, Any]]:
    """``(key, value)`` rows of ``table`` (windowed tables: ``((key, window_start), row)``).

    With ``with_key``, only the rows whose key (or, windowed, whose key part) equals ``key``.
    """
    if table not in table_names(plan):
        raise unknown_table(plan, table)
    transport = open_transport(broker, str(data_dir), plan.settings)
    await transport.start()
    try:
        tables = make_tables(plan)
        for agent in plan.agents:  # wires each table to the step that presents its rows
            compile_agent(plan, agent, lambda rec, error, node: None, tables)
        state_dir = None if transport.url.startswith("memory://") else str(data_dir)
        state = StateManager(plan, transport, "leveldb" if state_dir else "memory", state_dir, tables)
        store = plan.store(table)
        owner = next(a for a in plan.agents if table in a.stores)
        topic = owner.entries[0][1]

        async def committed(tp: TP) -> int | None:  # how far the pipeline's group applied a table source
            return await transport.group_committed(plan.name, tp)  # type: ignore[attr-defined]

        await state.assign([TP(topic, p) for p in range(store.partitions)], committed)
        try:
            rows = tables[table].rows()
        finally:
            await state.close()
    finally:
        await transport.stop()
    if with_key:
        windowed = store.window is not None
        rows = [(k, v) for k, v in rows if (k[0] if windowed else k) == key]
    return rows
