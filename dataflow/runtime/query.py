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

from ..planner.plan import ExecutionPlan
from ..transport.base import TP, open_transport
from .engine import compile_agent
from .state import StateManager, make_tables

__all__ = ["UnknownTable", "read_table"]


class UnknownTable(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def table_names(plan: ExecutionPlan) -> list[str]:
    """The tables a user can query: every store except a sliding window's event buffer."""
    return sorted(s.name for s in plan.stores if s.kind != "window-events")


async def read_table(plan: ExecutionPlan, table: str, data_dir: str | Path, broker: str | None = None,
                     key: Any = None, *, with_key: bool = False) -> list[tuple[Any, Any]]:
    """``(key, value)`` rows of ``table`` (windowed tables: ``((key, window_start), row)``).

    With ``with_key``, only the rows whose key (or, windowed, whose key part) equals ``key``.
    """
    if table not in table_names(plan):
        raise UnknownTable(f"pipeline {plan.name} has no table {table!r}; "
                           f"its tables are: {', '.join(table_names(plan)) or 'none'}")
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
