"""Pipelines end to end on the Kafka test broker, with exact outputs.

Each example pipeline's stateless part runs on Kafka and on memory:// with the same input
(explicit timestamps, so every byte can match); what every topic holds must agree
partition by partition, offsets included where a topic has a single upstream partition.
`clicks` starts with a join, so its stateless part is its sources as read. The examples in
full, with their windows, aggregates, joins, tables and timers, are in
test_kafka_examples.py, as are several `dataflow run --until-idle` workers sharing an input.
"""
from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflow import Flow, col, fn, value
from dataflow.planner import plan as build_plan
from dataflow.runtime.runner import encode_line
from dataflow.transport.base import (
    TP,
    ProducerRecord,
    TopicMismatchError,
    TopicSpec,
    UnknownTopicError,
    open_transport,
    partition_for,
)
from dataflow.transport.kafka_topics import declarations_for, declare_topics
from tests.kafka_broker import unique_name

from .conftest import Run, record, run_on, run_url

pytestmark = pytest.mark.kafka

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = 1_795_000_000_000


def example(name: str) -> dict[str, Any]:
    """The example's module namespace: its record types are the ones the tests use."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))


def lines(name: str, keyed: bool = False) -> list[ProducerRecord]:
    """An example data file as `dataflow run --input` produces it, with fixed timestamps."""
    out = []
    for i, line in enumerate((EXAMPLES / "data" / name).read_bytes().splitlines()):
        if line.strip():
            key, raw = encode_line(line, "json", keyed)
            out.append(ProducerRecord("", key, raw, timestamp=T0 + i * 1000))
    return out


def fraud(sfx: str) -> Flow:
    ns = example("fraud")
    flow = Flow(f"fraud{sfx}")
    # no key type: it reads the keyless data file as well as the keyed one
    withdrawals = flow.source(f"withdrawals{sfx}", value=ns["Withdrawal"], timestamp="ts")
    large = withdrawals.filter(col("amount") > 1000, name="large")
    large.group_by("account_id").to(f"large-by-account{sfx}")  # the window + aggregate read this
    return flow


def wordcount(sfx: str) -> Flow:
    flow = Flow(f"wordcount{sfx}")
    lines_ = flow.source(f"lines{sfx}", key=str, value=str)
    words = lines_.flat_map(fn.split(fn.lower(value())), name="words")
    words.group_by(value(), name="by_word").to(f"words-by-word{sfx}")  # the count reads this
    return flow


def orders(sfx: str) -> Flow:
    ns = example("orders")
    flow = Flow(f"orders{sfx}")
    orders_ = flow.source(f"orders{sfx}", key=str, value=ns["Order"])
    # the join with the customers table reads orders re-keyed by customer
    orders_.group_by("customer_id", name="by_customer").to(f"orders-by-customer{sfx}")
    return flow


def clicks(sfx: str) -> Flow:
    ns = example("clicks")
    flow = Flow(f"clicks{sfx}")
    flow.source(f"impressions{sfx}", key=str, value=ns["Impression"], timestamp="ts").to(f"impressions-read{sfx}")
    flow.source(f"clicks{sfx}", key=str, value=ns["Click"], timestamp="ts").to(f"clicks-read{sfx}")
    return flow


def order_inputs() -> list[ProducerRecord]:
    rows = [("o1", "c1", 10.0), ("o2", "c2", 20.0), ("o3", "c1", 30.0), ("o4", "c3", 40.0), ("o5", "c2", 50.0)]
    out = [record({"order_id": o, "customer_id": c, "amount": a}, key=o, timestamp=T0 + i)
           for i, (o, c, a) in enumerate(rows)]
    out.append(record(b'{"order_id": "o6"', key="o6", timestamp=T0 + 9))  # malformed: a dead letter
    return out


def click_inputs(sfx: str) -> dict[str, list[ProducerRecord]]:
    impressions = [record({"impression_id": f"i{i}", "ad_id": f"ad{i % 2}", "ts": f"2026-11-21T09:00:0{i}Z"},
                          key=f"i{i}", timestamp=T0 + i) for i in range(5)]
    click_rows = [record({"impression_id": "i1", "ts": "2026-11-21T09:01:00Z"}, key="i1", timestamp=T0 + 50),
                  record({"impression_id": "i3", "ts": "later"}, key="i3", timestamp=T0 + 51)]
    return {f"impressions{sfx}": impressions, f"clicks{sfx}": click_rows}


CASES = {
    "fraud": (fraud, lambda sfx: {f"withdrawals{sfx}": lines("withdrawals.jsonl")}),
    "fraud-keyed": (fraud, lambda sfx: {f"withdrawals{sfx}": lines("keyed-withdrawals.jsonl", keyed=True)}),
    "wordcount": (wordcount, lambda sfx: {f"lines{sfx}": lines("lines.jsonl")}),
    "orders": (orders, lambda sfx: {f"orders{sfx}": order_inputs()}),
    "clicks": (clicks, click_inputs),
}


def canonical(run: Run, topic: str, exact_order: bool) -> dict[int, list[tuple[Any, ...]]]:
    """Per partition: records in offset order; for topics fed by more than one partition
    upstream, where interleaving depends on fetch timing, as a sorted multiset."""
    out = {}
    for p, rows in run.contents(topic).items():
        rows = [row if exact_order else row[1:] for row in rows]
        out[p] = rows if exact_order else sorted(rows, key=repr)
    return out


def all_committed(run: Run) -> bool:
    """Everything read was committed (a partition that never had a record has no commit)."""
    return {tp: c for tp, c in run.committed.items() if c is not None} == {tp: e for tp, e in run.ends.items() if e}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_example_stateless_parts_match_memory_exactly(kafka_url: str, case: str) -> None:
    make, inputs = CASES[case]
    sfx = "-" + unique_name("x")
    on_kafka = await run_url(kafka_url, make(sfx), inputs(sfx))
    on_memory = await run_url("memory://", make(sfx), inputs(sfx))
    assert on_kafka.topics.keys() == on_memory.topics.keys()
    for t in on_kafka.plan.topics:
        # a topic written from a single upstream partition keeps its exact order and offsets
        upstream = [a for a in on_kafka.plan.agents if t.name in a.output_topics]
        single = all(on_kafka.plan.topic(s).partitions == 1 for a in upstream for s in a.source_topics) or \
            t.role == "source"
        assert canonical(on_kafka, t.name, single) == canonical(on_memory, t.name, single), t.name
    assert on_kafka.monitor.as_dict()["messages_sent_by_topic"] == on_memory.monitor.as_dict()["messages_sent_by_topic"]
    assert on_kafka.monitor.as_dict()["dead_letters_by_stage"] == on_memory.monitor.as_dict()["dead_letters_by_stage"]
    assert all_committed(on_kafka)


async def test_fraud_stateless_part_exact_output_on_kafka(kafka_url: str) -> None:
    sfx = "-" + unique_name("f")
    run = await run_url(kafka_url, fraud(sfx), {f"withdrawals{sfx}": lines("withdrawals.jsonl")})
    out = f"large-by-account{sfx}"
    large = [("acc-1", 1500.0, "NO", 1795251600000), ("acc-1", 2500.0, "SE", 1795251612000),
             ("acc-3", 1200.0, "XX", 1795251620000), ("acc-1", 3000.0, "NO", 1795251631000),
             ("acc-5", 1001.0, "NO", 1795251659000)]
    expected: dict[int, list[tuple[Any, ...]]] = {}
    for acc, amount, country, ts in large:
        expected.setdefault(partition_for(orjson.dumps(acc), 4), []).append(
            (orjson.dumps(acc), {"account_id": acc, "amount": amount, "country": country, "ts": ts}, ts))
    got = {p: [(m.key, orjson.loads(m.value), m.timestamp) for m in run.topics[out] if m.partition == p]
           for p in {m.partition for m in run.topics[out]}}
    assert got == expected
    dead = run.topics[f"fraud{sfx}-dead-letters"]
    assert [(dict(m.headers)["dataflow.stage"], dict(m.headers)["dataflow.source"]) for m in dead] == [
        (b"validate", f"withdrawals{sfx}[0]@5".encode()), (b"validate", f"withdrawals{sfx}[0]@6".encode()),
        (b"decode", f"withdrawals{sfx}[0]@8".encode())]
    raw = (EXAMPLES / "data" / "withdrawals.jsonl").read_bytes().splitlines()
    assert [m.value for m in dead] == [raw[5], raw[6], raw[8]]  # the original bytes


async def test_malformed_records_go_to_the_dead_letter_topic_with_headers(kafka_url: str) -> None:
    ns = example("fraud")
    sfx = "-" + unique_name("d")
    flow = Flow(f"dlq{sfx}", partitions=1)
    s = flow.source(f"payments{sfx}", value=ns["Withdrawal"]).map(
        {"account": col("account_id"), "ratio": 100 / col("amount")}, name="ratio")
    s.to(f"out{sfx}")
    raw = [b'{"account_id": "a", "amount": 4, "country": "NO", "ts": 1}',
           b'{"account_id": "b", "amount": ',
           b'{"account_id": "c", "country": "NO", "ts": 1}',
           b'{"account_id": "d", "amount": 0, "country": "NO", "ts": 1}',
           b'{"account_id": "f", "amount": 50, "country": "NO", "ts": 1}']
    inputs = [record(r, timestamp=T0 + i, headers=(("trace", f"t{i}".encode()),)) for i, r in enumerate(raw)]
    inputs[1] = record(raw[1], key="key-b", timestamp=T0 + 1, headers=(("trace", b"t1"),))
    run = await run_url(kafka_url, flow, {f"payments{sfx}": inputs})
    assert run.values(f"out{sfx}") == [{"account": "a", "ratio": 25.0}, {"account": "f", "ratio": 2.0}]
    dead = run.topics[f"dlq{sfx}-dead-letters"]
    assert [(m.key, m.value, m.timestamp) for m in dead] == [
        (b'"key-b"', raw[1], T0 + 1), (None, raw[2], T0 + 2), (None, raw[3], T0 + 3)]
    headers = [m.headers for m in dead]
    assert [h[0] for h in headers] == [("trace", b"t1"), ("trace", b"t2"), ("trace", b"t3")]  # the input's own
    assert [(dict(h)["dataflow.stage"], dict(h)["dataflow.source"]) for h in headers] == [
        (b"decode", f"payments{sfx}[0]@1".encode()), (b"validate", f"payments{sfx}[0]@2".encode()),
        (b"ratio", f"payments{sfx}[0]@3".encode())]
    assert dict(headers[1])["dataflow.error"] == b"missing field 'amount'"
    assert dict(headers[2])["dataflow.error"] == b"ZeroDivisionError: division by zero"
    assert run.committed == run.ends == {TP(f"payments{sfx}", 0): 5}


async def test_committed_offsets_resume_after_a_clean_restart(kafka_url: str) -> None:
    sfx = "-" + unique_name("r")

    def pipeline() -> Flow:
        ns = example("orders")
        flow = Flow(f"resume{sfx}", partitions=3)
        (flow.source(f"orders{sfx}", value=ns["Order"], partitions=2)
             .filter(col("amount") > 0)
             .group_by("customer_id", name="by_customer", partitions=3)
             .map({"customer": col("customer_id"), "amount": col("amount")})
             .to(f"out{sfx}"))
        return flow

    def batch(start: int, stop: int) -> list[ProducerRecord]:
        # keys spread the input over both source partitions; amount 0 is filtered out
        return [record({"order_id": f"o{i}", "customer_id": f"c{i % 8}", "amount": float(i % 4)},
                       key=f"o{i}", timestamp=T0 + i) for i in range(start, stop)]

    first = await run_url(kafka_url, pipeline(), {f"orders{sfx}": batch(0, 200)}, batch_size=64)
    assert first.monitor.messages_received == 200 + 150
    assert len(first.topics[f"out{sfx}"]) == 150
    assert all_committed(first) and sum(first.ends.values()) == 200 + 150

    second = await run_url(kafka_url, pipeline())  # same group, nothing new: nothing is read again
    assert second.monitor.messages_received == 0
    assert second.topics[f"out{sfx}"] == first.topics[f"out{sfx}"]
    assert second.committed == first.committed

    third = await run_url(kafka_url, pipeline(), {f"orders{sfx}": batch(200, 240)}, batch_size=64)
    assert third.monitor.as_dict()["messages_received_by_topic"] == {f"orders{sfx}": 40,
                                                                     f"resume{sfx}-by_customer-repartition": 30}
    new = sorted((m.key, m.value) for m in third.topics[f"out{sfx}"] if m not in first.topics[f"out{sfx}"])
    expected = sorted((orjson.dumps(f"c{i % 8}"), orjson.dumps({"customer": f"c{i % 8}", "amount": float(i % 4)}))
                      for i in range(200, 240) if i % 4)
    assert new == expected  # each new record exactly once, none of the old ones again
    assert len(third.topics[f"out{sfx}"]) == 180
    assert all_committed(third)


async def test_topic_declaration_checks_sources_and_co_partitioning_before_consuming(kafka_url: str) -> None:
    sfx = "-" + unique_name("c")
    flow = Flow(f"enrich{sfx}")
    ns = example("orders")
    customers = flow.table(f"customers{sfx}", key=str, value=ns["Customer"])
    orders_ = flow.source(f"orders{sfx}", key=str, value=ns["Order"])
    orders_.join(customers, on="customer_id", how="left", name="enriched").to(f"enriched{sfx}")
    p = build_plan(flow.topology())
    declared = declarations_for(p)
    assert any(f"customers{sfx}" in group for group in declared.co_partitioned)
    transport = open_transport(kafka_url, ".", p.settings)
    await transport.start()
    try:
        with pytest.raises(UnknownTopicError) as missing:
            await declare_topics(transport, declared, auto_create=False)
        assert str(missing.value) == (
            f"source topic 'customers{sfx}', output topic 'enriched{sfx}', source topic 'orders{sfx}' do not exist "
            f"on {kafka_url}; hint: create them (dataflow topics create customers{sfx} enriched{sfx} orders{sfx} "
            "--partitions 4), or set auto_create_topics=true")
        # the customers topic exists with 6 partitions; the plan assumed 4 for its join
        await transport.create_topics([TopicSpec(f"customers{sfx}", 6), TopicSpec(f"orders{sfx}", 4),
                                       TopicSpec(f"enriched{sfx}", 1)])
        with pytest.raises(TopicMismatchError, match=(
                rf"topics 'customers{sfx}' \(6 partitions\), 'enrich{sfx}-enriched.*-repartition' \(4 partitions\) "
                "must have the same number of partitions.*hint: declare customers")):
            await declare_topics(transport, declared, auto_create=False)
        # reported before anything was created, and before any consumer joined
        assert sorted(t for t in await transport.list_topics() if sfx in t) == sorted(
            [f"customers{sfx}", f"enriched{sfx}", f"orders{sfx}"])
    finally:
        await transport.stop()


async def test_declaration_creates_internal_topics_and_keeps_the_users_partition_counts(kafka_url: str) -> None:
    sfx = "-" + unique_name("k")
    p = build_plan(fraud(sfx).topology())
    internal = {t.name: t.partitions for t in p.topics if t.internal}
    assert sorted(internal.values()) == [1, 4]  # the dead letters and the repartition topic
    transport = open_transport(kafka_url, ".", p.settings)
    await transport.start()
    try:
        user = {f"withdrawals{sfx}": 8, f"large-by-account{sfx}": 2}  # not what the plan assumed (4)
        await transport.create_topics([TopicSpec(name, n) for name, n in user.items()])
        counts = await declare_topics(transport, declarations_for(p), auto_create=False)
        assert counts == dict(sorted({**user, **internal}.items()))
        assert await transport.describe_topics(counts) == counts
        assert await declare_topics(transport, declarations_for(p), auto_create=False) == counts  # idempotent
    finally:
        await transport.stop()


PIPELINE_FILE = '''
from datetime import datetime
from dataflow import Flow, Record, col

class Withdrawal(Record):
    account_id: str
    amount: float
    country: str
    ts: datetime

flow = Flow("withdrawals{sfx}", partitions=2)
withdrawals = flow.source("withdrawals{sfx}", value=Withdrawal, timestamp="ts")  # keyless lines: no key type
large = withdrawals.filter(col("amount") > 1000, name="large")
routes = large.branch(foreign=col("country") != "NO", default="domestic", name="route")
routes.foreign.map({{"account": col("account_id"), "amount": col("amount"), "country": col("country")}},
                   name="foreign_alerts").to("foreign-alerts{sfx}")
routes.domestic.group_by("account_id", name="by_account").to("domestic-large{sfx}")
'''


def test_dataflow_run_on_kafka_from_the_command_line(kafka_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dataflow.cli import app

    sfx = "-" + unique_name("cli")
    path = tmp_path / "large_withdrawals.py"
    path.write_text(PIPELINE_FILE.format(sfx=sfx))
    result = CliRunner().invoke(app, [
        "run", str(path), "--broker", kafka_url, "--input", f"withdrawals{sfx}={EXAMPLES / 'data' / 'withdrawals.jsonl'}",
        "--output", f"foreign-alerts{sfx}=-", "--output", f"domestic-large{sfx}=-", "--until-idle"])
    assert result.exit_code == 0, result.output
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    by_topic = {t: [(r["key"], r["value"], r["partition"], r["offset"], r["timestamp"]) for r in rows if r["topic"] == t]
                for t in (f"foreign-alerts{sfx}", f"domestic-large{sfx}")}
    assert by_topic[f"foreign-alerts{sfx}"] == [
        (None, {"account": "acc-1", "amount": 2500.0, "country": "SE"}, 0, 0, 1795251612000),
        (None, {"account": "acc-3", "amount": 1200.0, "country": "XX"}, 0, 1, 1795251620000)]
    assert sorted(by_topic[f"domestic-large{sfx}"], key=lambda r: (r[2], r[3])) == [
        ("acc-1", {"account_id": "acc-1", "amount": 1500.0, "country": "NO", "ts": 1795251600000}, 0, 0, 1795251600000),
        ("acc-1", {"account_id": "acc-1", "amount": 3000.0, "country": "NO", "ts": 1795251631000}, 0, 1, 1795251631000),
        ("acc-5", {"account_id": "acc-5", "amount": 1001.0, "country": "NO", "ts": 1795251659000}, 1, 0, 1795251659000)]
    assert "dead letters: 3 (decode: 1, validate: 2)" in result.stderr
