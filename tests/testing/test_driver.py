"""The pipeline driver: records in with keys, timestamps and headers; outputs, tables and
dead letters out; event time and the wall clock moved by the test; its mistakes explained."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dataflow import Flow, Record, agg, tumbling
from dataflow.runtime.query import UnknownTable
from dataflow.testing import DeadLetter, DriverError, InputRecord, OutputRecord, PipelineDriver

ORDERS_FLOW = """\
pipeline orders {
  partitions 1
}

record Order {
  id: int
  customer: str
  amount: float
  ts: timestamp
}

topic orders: Order key str event_time ts
topic "large-orders"
topic "minute-totals"
topic heartbeats

stream large = orders | filter amount >= 100
large | to topic "large-orders"

table per_minute = orders
  | window tumbling 1m grace 10s
  | aggregate { orders: count(), total: sum(amount) } emit final
per_minute.changes | to topic "minute-totals"

stream beat = every 10s emit { at: _timestamp } | to topic heartbeats
"""

START = 1_700_000_000.0  # the driver's wall clock in these tests, epoch seconds
START_MS = 1_700_000_000_000


def order(id: int, customer: str, amount: float, ts: int) -> dict:
    return {"id": id, "customer": customer, "amount": amount, "ts": ts}


@pytest.fixture
def orders_flow(tmp_path: Path) -> Path:
    path = tmp_path / "orders.flow"
    path.write_text(ORDERS_FLOW)
    return path


@pytest.fixture
def driver(orders_flow: Path, pipeline_driver) -> PipelineDriver:
    return pipeline_driver(orders_flow, wall_clock=START)


def test_a_record_goes_through_with_its_key_and_event_time(driver):
    driver.pipe("orders", order(1, "alice", 150.0, 1_000), key="alice", timestamp=5)
    assert driver.read("large-orders") == [
        OutputRecord("alice", order(1, "alice", 150.0, 1_000), 1_000, {}, 0)]
    assert driver.read("large-orders") == []  # a read takes what came since the last one


def test_a_list_is_piped_as_one_batch_and_read_in_order(driver):
    driver.pipe_many("orders", [InputRecord(order(i, "bob", 100.0 + i, i), key="bob") for i in range(3)])
    assert driver.read_pairs("large-orders") == [("bob", order(i, "bob", 100.0 + i, i)) for i in range(3)]
    assert driver.monitor.as_dict()["messages_received_by_topic"] == {"orders": 3}


def test_emit_final_windows_close_when_event_time_passes_their_grace(driver):
    driver.pipe("orders", order(1, "alice", 10.0, 1_000), key="alice")
    driver.pipe("orders", order(2, "alice", 5.0, 59_000), key="alice")
    driver.pipe("orders", order(3, "alice", 1.0, 65_000), key="alice")  # inside the grace: nothing closes
    assert driver.read("minute-totals") == []
    assert driver.table("per_minute") == [
        (("alice", 0), {"orders": 2, "total": 15.0, "window_start": 0, "window_end": 60_000}),
        (("alice", 60_000), {"orders": 1, "total": 1.0, "window_start": 60_000, "window_end": 120_000}),
    ]
    driver.pipe("orders", order(4, "alice", 2.0, 70_000), key="alice")  # 60s + 10s grace: [0, 60s) closes
    assert driver.read("minute-totals") == [
        OutputRecord("alice", {"orders": 2, "total": 15.0, "window_start": 0, "window_end": 60_000}, 59_999)]
    driver.pipe("orders", order(5, "alice", 7.0, 30_000), key="alice")  # late: the window has closed
    assert driver.monitor.as_dict()["late_events"] == 1
    driver.end_input()  # event time passes everything: the open window closes too
    assert driver.read("minute-totals") == [
        OutputRecord("alice", {"orders": 2, "total": 3.0, "window_start": 60_000, "window_end": 120_000}, 119_999)]


def test_timers_tick_when_the_wall_clock_is_advanced(driver):
    assert driver.read("heartbeats") == []
    driver.advance_wall_clock("25s")
    assert driver.read("heartbeats") == [OutputRecord(None, {"at": START_MS + 10_000}, START_MS + 10_000),
                                         OutputRecord(None, {"at": START_MS + 20_000}, START_MS + 20_000)]
    driver.advance_wall_clock(4.999)
    assert driver.read("heartbeats") == []
    driver.advance_wall_clock(0.001)  # the tick of 30s is on the grid of the first one
    assert driver.read_values("heartbeats") == [{"at": START_MS + 30_000}]
    driver.advance_wall_clock(timedelta(seconds=10))
    assert driver.read_values("heartbeats") == [{"at": START_MS + 40_000}]
    assert driver.clock() == START + 40


def test_a_record_without_a_timestamp_is_stamped_with_the_wall_clock(pipeline_driver):
    flow = Flow("stamps", partitions=1)
    flow.source("in", value=int).to("out")
    driver = pipeline_driver(flow, wall_clock=START)
    driver.advance_wall_clock("1m")
    driver.pipe("in", 1)
    driver.pipe("in", 2, timestamp=42)
    assert [(r.value, r.timestamp) for r in driver.read("out")] == [(1, START_MS + 60_000), (2, 42)]


def test_dead_letters_carry_stage_reason_source_and_the_record_as_received(driver):
    driver.pipe_many("orders", [
        InputRecord(b"{oops", key="x", timestamp=7, headers={"trace": "t-1"}),
        InputRecord({"id": 2, "customer": "bob", "amount": "lots", "ts": 1}, key="bob", timestamp=8),
        InputRecord(order(3, "carol", 1.0, 1), key=None, timestamp=9, headers=[("a", b"1"), ("b", "2")]),
    ])
    assert driver.dead_letters() == [
        DeadLetter("x", "{oops", "decode", "json: unexpected character, expected a string key: line 1 column 2 "
                   "(char 1)", "orders[0]@0", 7, {"trace": "t-1"}),
        DeadLetter("bob", {"id": 2, "customer": "bob", "amount": "lots", "ts": 1}, "validate",
                   "field 'amount': expected a number, got text", "orders[0]@1", 8, {}),
        DeadLetter(None, order(3, "carol", 1.0, 1), "validate",
                   "null key on topic orders, which declares key str", "orders[0]@2", 9, {"a": "1", "b": "2"}),
    ]
    assert driver.dead_letters() == []


def test_a_failing_step_dead_letters_its_record_with_the_step_and_error(pipeline_driver):
    flow = Flow("ratios", partitions=1)
    flow.source("in", value=int).map(lambda v: 100 // v, name="hundred_over").to("out")
    driver = pipeline_driver(flow)
    driver.pipe_many("in", [4, 0, 5])
    assert driver.read_values("out") == [25, 20]
    [dead] = driver.dead_letters()
    assert (dead.value, dead.stage, dead.reason) == (0, "hundred_over", "ZeroDivisionError: integer division or "
                                                                       "modulo by zero")


def test_a_builder_flow_with_a_repartition_and_a_windowed_table(pipeline_driver):
    flow = Flow("clicks", partitions=2)
    clicks = flow.source("clicks", value=str)
    per_page = clicks.group_by("_value", name="by_page").window(tumbling("10s")).aggregate(
        {"n": agg.count()}, name="per_page", emit="final")
    per_page.to("page-counts")
    driver = pipeline_driver(flow)
    driver.pipe_many("clicks", [InputRecord("home", timestamp=1_000), InputRecord("cart", timestamp=2_000),
                                InputRecord("home", timestamp=3_000)])
    assert sorted(driver.table("per_page")) == [
        (("cart", 0), {"n": 1, "window_start": 0, "window_end": 10_000}),
        (("home", 0), {"n": 2, "window_start": 0, "window_end": 10_000})]
    assert driver.read("page-counts") == []
    driver.end_input()
    assert sorted(driver.read_pairs("page-counts")) == [
        ("cart", {"n": 1, "window_start": 0, "window_end": 10_000}),
        ("home", {"n": 2, "window_start": 0, "window_end": 10_000})]


def test_a_python_file_and_settings_overrides(tmp_path, pipeline_driver):
    (tmp_path / "doubling.py").write_text(
        "from dataflow import Flow, col\n\n"
        "flow = Flow('doubling')\n"
        "flow.source('n', value=int).map(col('_value') * 2).to('doubled')\n")
    driver = pipeline_driver(tmp_path / "doubling.py", settings={"partitions": 3})
    assert {t.name: t.partitions for t in driver.plan.topics if not t.internal} == {"n": 3, "doubled": 3}
    driver.pipe("n", 21, key="k")
    assert driver.read_values("doubled") == [42]


def test_a_flow_given_as_an_object_is_not_changed_by_settings(pipeline_driver):
    flow = Flow("kept", partitions=1)
    flow.source("a").to("b")
    assert pipeline_driver(flow, settings={"partitions": 5}).plan.settings.partitions == 5
    assert flow.settings.partitions == 1


def test_stdout_sinks_are_captured(pipeline_driver):
    flow = Flow("echo", partitions=1)
    flow.source("in").print()
    driver = pipeline_driver(flow)
    driver.pipe("in", {"a": 1}, key="k")
    assert driver.read_stdout() == [("k", {"a": 1})]
    assert driver.read_stdout() == []


@pytest.mark.parametrize("call, message", [
    (lambda d: d.pipe("nope", 1), "pipeline orders has no topic 'nope'; its topics are: heartbeats, large-orders, "
                                  "minute-totals, orders, orders-dead-letters, orders-per_minute-changelog"),
    (lambda d: d.pipe("large-orders", 1), "topic 'large-orders' is not an input of pipeline orders (it is a sink "
                                          "topic); its input topics are: orders"),
    (lambda d: d.read("nope"), "pipeline orders has no topic 'nope'; its topics are: heartbeats, large-orders, "
                               "minute-totals, orders, orders-dead-letters, orders-per_minute-changelog"),
])
def test_an_unknown_or_wrong_topic_is_named_with_the_choices(driver, call, message):
    with pytest.raises(DriverError) as error:
        call(driver)
    assert str(error.value) == message


def test_an_unknown_table_is_named_with_the_choices(driver):
    with pytest.raises(UnknownTable) as error:
        driver.table("nope")
    assert str(error.value) == "pipeline orders has no table 'nope'; its tables are: per_minute"


def test_nothing_can_be_piped_after_the_end_of_the_input(driver):
    driver.end_input()
    with pytest.raises(DriverError) as error:
        driver.pipe("orders", order(1, "a", 1.0, 1), key="a")
    assert str(error.value) == "the input has ended (end_input() was called); hint: open a new driver to pipe more"


def test_a_closed_driver_says_so(orders_flow):
    driver = PipelineDriver(orders_flow)
    driver.close()
    driver.close()  # twice is fine
    with pytest.raises(DriverError) as error:
        driver.read("large-orders")
    assert str(error.value) == "the driver of pipeline orders is closed"


async def test_the_driver_refuses_to_run_inside_an_event_loop(orders_flow):
    with pytest.raises(DriverError) as error:
        PipelineDriver(orders_flow)
    assert str(error.value) == ("the pipeline driver is synchronous and runs its own event loop; hint: use it from a "
                                "plain `def test_...`, not an `async def` one")


def test_a_pipeline_that_calls_python_agents_runs_them_in_the_driver(pipeline_driver, repo_root, examples_importable,
                                                                     capsys):
    driver = pipeline_driver("examples/quotes.flow")
    driver.pipe("orders", {"order_id": "o1", "item": "apple", "quantity": 30}, key="o1", timestamp=1_000)
    assert driver.read("quotes") == [OutputRecord("o1", {"order_id": "o1", "item": "apple", "total": 15.0}, 1_000)]
    assert capsys.readouterr().out == "audit: order o1 costs 15.0\n"  # `to agent "storefront.pricing:audit"`


def test_the_end_of_the_input_emits_rows_of_a_left_join_still_waiting_for_a_partner(pipeline_driver):
    class Click(Record):
        ad: str

    class Buy(Record):
        item: str

    flow = Flow("ads", partitions=1)
    clicks = flow.source("clicks", key=str, value=Click)
    buys = flow.source("buys", key=str, value=Buy)
    clicks.join(buys, how="left", within="5s", name="converted").to("conversions")
    driver = pipeline_driver(flow)
    driver.pipe("clicks", {"ad": "a1"}, key="u1", timestamp=1_000)
    driver.pipe("clicks", {"ad": "a2"}, key="u2", timestamp=2_000)
    driver.pipe("buys", {"item": "hat"}, key="u2", timestamp=3_000)
    assert driver.read("conversions") == [OutputRecord("u2", {"ad": "a2", "item": "hat"}, 3_000)]
    driver.end_input()
    assert driver.read("conversions") == [OutputRecord("u1", {"ad": "a1", "item": None}, 1_000)]
