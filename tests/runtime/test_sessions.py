"""The session step on its own: end of input (`finish`), expiry, and a restart from its stores."""
from __future__ import annotations

from typing import Any

from dataflow import Flow, agg, session
from dataflow.planner import plan as build_plan
from dataflow.runtime.engine import Rec, Step
from dataflow.runtime.sessions import SessionStep
from dataflow.runtime.state import make_tables
from dataflow.runtime.stateful import compile_stateful
from dataflow.state.table import TablePartition
from dataflow.transport.base import Message


class Collect(Step):
    def __init__(self) -> None:
        super().__init__("collect")
        self.rows: list[tuple[Any, Any, int]] = []

    def push(self, batch: list[Rec]) -> None:
        self.rows.extend((k, v, ts) for k, v, ts, _ in batch)


def make(emit: str, expires: str | None = None, tables: dict[str, Any] | None = None
         ) -> tuple[SessionStep, Collect, dict[str, Any]]:
    flow = Flow("s", partitions=1)
    (flow.source("ev").group_by("k", name="by_k")
     .window(session("10ms", grace="5ms", expires=expires, on="ts"))
     .aggregate(n=agg.count(), xs=agg.collect("x"), name="agg", emit=emit))
    plan = build_plan(flow.topology())
    if tables is None:
        tables = make_tables(plan)
        from dataflow.state.stores import MemoryStore
        for name, table in tables.items():
            table.partitions[0] = TablePartition(MemoryStore(name, 0), table.keys)
    step = compile_stateful(plan.topology.node("agg"), plan, lambda rec, e, node: (_ for _ in ()).throw(e), tables)
    assert isinstance(step, SessionStep)
    out = Collect()
    step.successors.append(out)
    return step, out, tables


def push(step: SessionStep, *events: tuple[str, int, Any]) -> None:
    step.push([(k, {"k": k, "ts": t, "x": x}, t, Message("ev", 0, i, None, None, t))
               for i, (k, t, x) in enumerate(events)])
    step.tick()


def commit(tables: dict[str, Any]) -> None:
    for table in tables.values():
        part = table.partitions[0]
        part.flush(part.changes(), part.changelog_offset + 1)


def test_finish_closes_every_open_session_in_order_and_only_once():
    step, out, _ = make("final")
    push(step, ("a", 0, 1), ("b", 3, 2), ("a", 5, 3), ("b", 20, 4), ("a", 30, 5))
    # stream time 30 closes b's [3, 3] (3 + 10 + 5 < 30) and a's [0, 5]: by end
    assert out.rows == [("b", {"n": 1, "xs": [2], "window_start": 3, "window_end": 3}, 3),
                        ("a", {"n": 2, "xs": [1, 3], "window_start": 0, "window_end": 5}, 5)]
    out.rows.clear()
    step.finish()
    assert out.rows == [("b", {"n": 1, "xs": [4], "window_start": 20, "window_end": 20}, 20),
                        ("a", {"n": 1, "xs": [5], "window_start": 30, "window_end": 30}, 30)]
    out.rows.clear()
    step.finish()
    push(step, ("a", 31, 5))  # touches a's [30, 30], closed at the end of input: late
    assert (out.rows, step.late) == ([], 1)


def test_finish_emits_nothing_with_emit_changes_but_closes_the_sessions():
    step, out, _ = make("changes")
    push(step, ("a", 0, 1))
    out.rows.clear()
    step.finish()
    assert out.rows == []
    push(step, ("a", 1, 2))
    assert (out.rows, step.late) == ([], 1)


def test_a_closed_session_is_deleted_after_its_retention_with_a_tombstone():
    step, out, tables = make("changes", expires="40ms")
    push(step, ("a", 0, 1), ("b", 30, 2))
    commit(tables)
    push(step, ("b", 40, 3))  # 0 + 40 is not below 40: a's session stays
    step.before_commit()
    assert [k for k, _ in tables["agg"].rows()] == [("a", 0), ("b", 30)]
    push(step, ("b", 41, 4))
    step.before_commit()
    assert [k for k, _ in tables["agg"].rows()] == [("b", 30)]
    changes = dict(tables["agg"].partitions[0].changes())
    assert changes[tables["agg"].keys.encode(("a", 0))] is None  # a tombstone for the changelog
    # the events store forgot a's closed session too (0 + 2 * 10 + 5 < 41): nothing of "a" is left
    assert [k for k, _ in tables["agg.events"].rows()] == ["b"]


def test_a_new_step_over_the_same_stores_closes_what_the_old_one_left_open():
    step, out, tables = make("final")
    push(step, ("a", 0, 1), ("a", 5, 2), ("b", 12, 3))
    commit(tables)
    assert out.rows == []
    again, out2, _ = make("final", tables=tables)  # a restart: the heap is rebuilt from NAME.events
    push(again, ("b", 21, 4))  # stream time 21: a's [0, 5] closes (5 + 15 < 21)
    assert out2.rows == [("a", {"n": 2, "xs": [1, 2], "window_start": 0, "window_end": 5}, 5)]
    out2.rows.clear()
    again.finish()
    assert out2.rows == [("b", {"n": 2, "xs": [3, 4], "window_start": 12, "window_end": 21}, 21)]


def test_an_event_that_fails_to_fold_is_dead_lettered_and_not_kept_for_a_later_merge():
    flow = Flow("s", partitions=1)
    (flow.source("ev").group_by("k", name="by_k").window(session("10ms", grace="50ms", on="ts"))
     .aggregate(total=agg.sum("x"), name="agg"))
    plan = build_plan(flow.topology())
    tables = make_tables(plan)
    from dataflow.state.stores import MemoryStore
    for name, table in tables.items():
        table.partitions[0] = TablePartition(MemoryStore(name, 0), table.keys)
    dead: list[Any] = []
    step = compile_stateful(plan.topology.node("agg"), plan, lambda rec, e, node: dead.append((rec[1], type(e))),
                            tables)
    out = Collect()
    step.successors.append(out)
    push(step, ("a", 0, 1), ("a", 5, "two"), ("a", 20, 2), ("a", 10, 3))  # 10 bridges [0, 0] and [20, 20]
    assert dead == [({"k": "a", "ts": 5, "x": "two"}, TypeError)]
    assert tables["agg"].rows() == [(("a", 0), {"total": 6, "window_start": 0, "window_end": 20})]
