"""Bootstrap tables: read to their end before any stream of their task gives a record."""
from __future__ import annotations

from dataflow import Flow
from dataflow.loader import load_pipeline
from dataflow.transport.base import ProducerRecord

from .conftest import record, run_flow

DAY = 86_400_000


def at(ts: int, value, key) -> ProducerRecord:
    r = record(value, key)
    return ProducerRecord("", r.key, r.value, None, ts)


# the rates were loaded today; the payments happened yesterday, so every rate is "later"
RATES = [at(2 * DAY + i, {"rate": rate}, currency) for i, (currency, rate) in
         enumerate([("EUR", 1.1), ("GBP", 1.3), ("NOK", 0.1), ("EUR", 1.2)])]
PAYMENTS = [at(DAY + i, {"amount": amount}, currency) for i, (currency, amount) in
            enumerate([("EUR", 10), ("NOK", 50), ("SEK", 7), ("GBP", 2)])]


def pipeline(bootstrap: bool) -> Flow:
    flow = Flow("fx", partitions=2)
    rates = flow.table("rates", key=str, bootstrap=bootstrap)
    flow.source("payments", key=str).join(rates, how="left", name="priced").to("priced-out")
    return flow


async def test_a_bootstrap_table_is_whole_for_the_first_stream_record(kind, tmp_path):
    run = await run_flow(kind, tmp_path, pipeline(bootstrap=True), {"rates": RATES, "payments": PAYMENTS},
                         batch_size=1)
    assert sorted(run.pairs("priced-out")) == [
        ("EUR", {"left": {"amount": 10}, "right": {"rate": 1.2}}),  # the latest rate, though later in time
        ("GBP", {"left": {"amount": 2}, "right": {"rate": 1.3}}),
        ("NOK", {"left": {"amount": 50}, "right": {"rate": 0.1}}),
        ("SEK", {"left": {"amount": 7}, "right": None}),
    ]


async def test_without_bootstrap_the_table_is_seen_as_it_was_at_each_records_time(kind, tmp_path):
    run = await run_flow(kind, tmp_path, pipeline(bootstrap=False), {"rates": RATES, "payments": PAYMENTS},
                         batch_size=1)
    assert sorted(run.pairs("priced-out")) == [
        ("EUR", {"left": {"amount": 10}, "right": None}),
        ("GBP", {"left": {"amount": 2}, "right": None}),
        ("NOK", {"left": {"amount": 50}, "right": None}),
        ("SEK", {"left": {"amount": 7}, "right": None}),
    ]


FLOW = """
pipeline fx { partitions 2 }

record Rate { rate: float, at: int }
record Payment { amount: int, at: int }

topic rates: Rate key str event_time at
topic payments: Payment key str event_time at
topic "priced-out"

table rates = topic rates bootstrap
stream priced = payments | left join rates | map { amount, rate } | to topic "priced-out"
"""


async def test_a_bootstrap_table_declared_in_flow_with_event_time_fields(kind, tmp_path):
    path = tmp_path / "fx.flow"
    path.write_text(FLOW)
    rates = [record({"rate": rate, "at": 2 * DAY + i}, c) for i, (c, rate) in enumerate([("EUR", 1.1), ("EUR", 1.2)])]
    payments = [record({"amount": amount, "at": DAY + i}, c) for i, (c, amount) in enumerate([("EUR", 10), ("GBP", 3)])]
    run = await run_flow(kind, tmp_path, load_pipeline(str(path)), {"payments": payments, "rates": rates},
                         batch_size=1)
    assert sorted(run.pairs("priced-out")) == [("EUR", {"amount": 10, "rate": 1.2}),
                                               ("GBP", {"amount": 3, "rate": None})]
    assert run.committed == {tp: end or None for tp, end in run.ends.items()}
