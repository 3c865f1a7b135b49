"""Numbers past `dataflow.ir.bounds`: refused by check at the node (builder) or by the builder at once.

A `.flow` file's numbers are refused where they are written (tests/lang/fuzz_corpus); these
are the same bounds for pipelines built in Python.
"""
from __future__ import annotations


import pytest

from dataflow import Flow, agg, tumbling
from dataflow.ir.bounds import MAX_DURATION_MS, MAX_PARTITIONS, setting_problem
from dataflow.lang import FlowError, parse_flow
from dataflow.planner import check

from tests.source_markers import marker_locator

at = marker_locator(__file__)


def found(flow: Flow) -> list[str]:
    return [str(d) for d in check(flow.topology())]


def test_partitions_past_the_bound_fail_check_at_the_step() -> None:
    flow = Flow("app")
    source = flow.source("t", partitions=99_999_999_999)  # @source
    source.group_by("k", partitions=MAX_PARTITIONS + 1).count(name="n").to("out")  # @group
    source.through("mid", partitions=0).print()  # @through
    source.to("wide", partitions=MAX_PARTITIONS)
    hint = "; Kafka's guidance is a few thousand partitions per broker"
    assert found(flow) == [
        f"{at('source')}: error: 't': partitions must be between 1 and 10000, not 99999999999{hint}",
        f"{at('group')}: error: 't.by_k': partitions must be between 1 and 10000, not 10001{hint}",
        f"{at('through')}: error: 't.through_mid': partitions must be between 1 and 10000, not 0{hint}",
    ]


def test_durations_past_the_bound_fail_check_at_the_step() -> None:
    flow = Flow("app")
    days = MAX_DURATION_MS // 86_400_000
    flow.source("t").window(tumbling(f"{days + 1}d")).aggregate(n=agg.count(), name="n").to("out")  # @window
    flow.every(f"{days}d", value=1, name="tick").to("ticks")
    assert found(flow) == [
        f"{at('window')}: error: 't.tumbling_36501d': a duration is at most 36500d (about 100 years), not 36501d"]


def test_settings_past_their_bounds_are_refused_by_the_builder() -> None:
    with pytest.raises(ValueError) as e:
        Flow("app", partitions=99_999_999_999)  # @flow
    assert str(e.value) == f"{at('flow')}: partitions must be between 1 and 10000, not 99999999999"
    flow = Flow("app")
    with pytest.raises(ValueError) as e:
        flow.configure(kafka_replication_factor=40_000)
    assert str(e.value) == "kafka_replication_factor must be between 1 and 32767, not 40000"
    assert flow.settings.kafka_replication_factor is None  # the refused value is not kept
    flow.configure(partitions=MAX_PARTITIONS, commit_interval=MAX_DURATION_MS / 1000)


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("partitions", 10_001, "partitions must be between 1 and 10000, not 10001"),
    ("batch_size", 0, "batch_size must be between 1 and 1000000, not 0"),
    ("concurrency", 1_001, "concurrency must be between 1 and 1000, not 1001"),
    ("commit_every", 2**31, "commit_every must be between 1 and 2147483647, not 2147483648"),
    ("kafka_linger_ms", 2**31, "kafka_linger_ms must be between 0 and 2147483647, not 2147483648"),
    ("max_future_skew", 36_501 * 86_400.0,
     "max_future_skew is at most 36500d (about 100 years), not 3153686400.0 seconds"),
    ("kafka_replication_factor", 3, None),
    ("kafka_replication_factor", None, None),
])
def test_setting_bounds(name: str, value: object, problem: str | None) -> None:
    assert setting_problem(name, value) == problem


def test_command_line_settings_past_their_bounds_point_at_the_header() -> None:
    with pytest.raises(FlowError) as e:
        parse_flow("# settings\npipeline p\ntopic t\nt | to stdout\n", "s.flow",
                   {"partitions": "20000", "batch_size": "5"})
    assert [str(d) for d in e.value.diagnostics] == [
        "s.flow:2:1: error: partitions must be between 1 and 10000, not 20000 (an override)"]
