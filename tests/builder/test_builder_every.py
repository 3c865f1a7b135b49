"""`flow.every(...)`: a stream made by the clock."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dataflow import Flow, col, fn, lit, timestamp, udf
from dataflow.ir import expr as ir
from dataflow.ir import nodes as n
from dataflow.ir.schema import infer_schemas
from dataflow.ir.types import NULL, STR, TIMESTAMP, Field, RecordType

HERE = Path(__file__).resolve().relative_to(Path(__file__).resolve().parents[2]).as_posix()


def at(marker: str) -> str:
    """`file:line` of the line in this file that ends with `# @marker`."""
    lines = Path(__file__).read_text().splitlines()
    (line,) = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# @{marker}")]
    return f"{HERE}:{line}"


def test_every_makes_a_timer_node_with_its_interval_value_and_call_site() -> None:
    flow = Flow("app")
    hb = flow.every("10s", value={"service": "fraud", "at": fn.now()}, name="heartbeat")  # @every
    node = flow.topology().node("heartbeat")
    assert node == n.Timer("heartbeat", interval_ms=10_000, value=ir.MakeRecord((
        ("service", ir.Literal("fraud")), ("at", ir.Call("now", ())))))
    assert (node.kind, node.arity, node.stateless) == ("timer", 0, False)
    assert str(node.loc) == at("every")
    assert hb.name == "heartbeat"


@pytest.mark.parametrize("interval, ms", [("500ms", 500), ("1h", 3_600_000), (2, 2000), (0.25, 250),
                                          (timedelta(minutes=1), 60_000)])
def test_every_takes_durations_like_windows_do(interval, ms) -> None:  # type: ignore[no-untyped-def]
    flow = Flow("app")
    flow.every(interval, value=1, name="t").print()
    assert flow.topology().node("t").interval_ms == ms


def test_an_unnamed_timer_is_named_after_its_interval_and_names_its_successors() -> None:
    flow = Flow("app")
    flow.every("10s", value="beat").map({"v": col("_value")}).to("beats")
    assert sorted(node.name for node in flow.topology().nodes()) == [
        "every_10s", "every_10s.map", "every_10s.to_beats"]


def test_two_unnamed_timers_of_one_interval_need_a_name() -> None:
    flow = Flow("app")
    flow.every("10s", value=1).print()
    with pytest.raises(ValueError, match="a step named 'every_10s' already exists; give this one another name="):
        flow.every("10s", value=2)
    flow.every("10s", value=2, name="other").print()  # a name settles it
    flow.every("5s", value=2).print()  # and so does another interval


def test_the_value_may_be_a_constant_an_expression_or_a_dict() -> None:
    flow = Flow("app")
    flow.every("1s", value="beat", name="a").print()
    flow.every("1s", value=lit(None), name="b").print()
    flow.every("1s", value=timestamp() + 1000, name="c").print()
    flow.every("1s", value=udf("mypkg.health:probe"), name="d").print()
    topo = flow.topology()
    assert topo.node("a").value == ir.Literal("beat")  # a string is a constant here, not a field name
    assert topo.node("b").value == ir.Literal(None)
    assert ir.render(topo.node("c").value) == "_timestamp + 1000"
    assert ir.render(topo.node("d").value) == 'udf("mypkg.health:probe")'


def test_a_python_callable_is_refused_with_the_way_out() -> None:
    flow = Flow("app")
    with pytest.raises(TypeError, match=r"not a Python callable; call Python code with udf\("):
        flow.every("1s", value=lambda: {"at": 1})


@pytest.mark.parametrize("interval, message", [("10", "not a duration"), ("ten seconds", "not a duration"),
                                               (-1, "cannot be negative")])
def test_a_bad_interval_is_refused(interval, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        Flow("app").every(interval, value=1)


def test_a_timer_stream_has_a_null_key_its_value_type_and_no_partition_of_its_own() -> None:
    flow = Flow("app", partitions=3)
    flow.every("1s", value={"service": "fraud", "at": timestamp()}, name="hb").filter(col("service") != "x").print()
    schemas, errors = infer_schemas(flow.topology())
    assert errors == []
    schema = schemas["hb"]
    assert schema.key == NULL
    assert schema.value == RecordType("", (Field("service", STR), Field("at", TIMESTAMP)))
    assert (schema.shape, schema.partitions, schema.keyed) == ("stream", 3, False)
    assert schemas["hb.filter"].value == schema.value  # stages after it see the timer's fields
