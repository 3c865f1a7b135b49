"""Finding 3 of issue 12: orders and customers fed in one `dataflow run` join exactly as in two runs.

The orders are keyed by customer id, so one task reads an orders partition and the
customers partition it joins; each customer signs up before its orders (event times from
value fields).
Before time-aligned consumption, one run joined only the orders that happened to be
fetched after their customer; now the one run and the two runs agree exactly, whichever
`--input` comes first.
"""
from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.loader import load_pipeline

PIPE = """
pipeline shop { partitions 2, batch_size 40 }

record Customer { name: str, tier: str, since: int }
record Order { order_id: str, customer_id: str, amount: float, ts: int }

topic customers: Customer key str event_time since
topic orders: Order key str event_time ts
topic enriched
topic "tier-totals"

table customers = topic customers
stream enriched = orders
  | join customers
  | map { order_id, customer_id, name, tier, amount }
  | to topic enriched
table per_tier = enriched | group_by tier | aggregate { total: sum(amount), n: count() }
per_tier.changes | to topic "tier-totals"
"""

BASE = 1_700_000_000_000


def data() -> tuple[list[dict], list[dict]]:
    """200 customers a second apart; 1000 orders, each after its customer signed up."""
    rng = random.Random(12)
    customers = [{"key": f"c{i}", "value": {"name": f"name-{i}", "tier": rng.choice(["gold", "silver", "bronze"]),
                                            "since": BASE + i * 1000}} for i in range(200)]
    orders = []
    for j in range(1000):
        c = rng.randrange(200)
        orders.append({"key": f"c{c}", "value": {"order_id": f"o{j}", "customer_id": f"c{c}",
                                                  "amount": float(rng.randrange(1, 500)),
                                                  "ts": BASE + c * 1000 + rng.randrange(1, 300_000)}})
    orders.sort(key=lambda o: o["value"]["ts"])
    return customers, orders


def write(path: Path, rows: list[dict]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def run(data_dir: Path, outputs: Path, *inputs: str) -> None:
    args = ["run", "shop.flow", "--until-idle", "--quiet", "--keyed", "--data-dir", str(data_dir),
            "--output", f"enriched={outputs / 'enriched.jsonl'}", "--output", f"tier-totals={outputs / 'totals.jsonl'}"]
    for given in inputs:
        args += ["--input", given]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output


def results(outputs: Path) -> tuple[list, dict]:
    joined = sorted((r["key"], r["value"]["order_id"], r["value"]["name"], r["value"]["tier"], r["value"]["amount"])
                    for r in map(orjson.loads, (outputs / "enriched.jsonl").read_bytes().splitlines()))
    totals = {}
    for r in map(orjson.loads, (outputs / "totals.jsonl").read_bytes().splitlines()):
        totals[r["key"]] = r["value"]  # the last update of each tier is its total
    return joined, totals


@pytest.mark.parametrize("customers_first", [True, False], ids=["customers-first", "orders-first"])
def test_one_run_joins_exactly_as_two_runs(tmp_path, monkeypatch, customers_first):
    monkeypatch.chdir(tmp_path)
    Path("shop.flow").write_text(PIPE)
    customers, orders = data()
    c_file, o_file = write(tmp_path / "customers.jsonl", customers), write(tmp_path / "orders.jsonl", orders)

    two = tmp_path / "two"
    two.mkdir()
    run(tmp_path / "two-data", two, f"customers={c_file}")
    run(tmp_path / "two-data", two, f"orders={o_file}")
    one = tmp_path / "one"
    one.mkdir()
    given = [f"customers={c_file}", f"orders={o_file}"]
    run(tmp_path / "one-data", one, *(given if customers_first else given[::-1]))

    expected_joined, expected_totals = results(two)
    names = {c["key"]: (c["value"]["name"], c["value"]["tier"]) for c in customers}
    # every order has its customer: the two runs join them all, and so must the one run
    assert expected_joined == sorted((o["value"]["customer_id"], o["value"]["order_id"],
                                      *names[o["value"]["customer_id"]], o["value"]["amount"]) for o in orders)
    assert results(one) == (expected_joined, expected_totals)
    assert sum(t["n"] for t in expected_totals.values()) == 1000


STATE_MD = Path(__file__).resolve().parents[2] / "docs" / "state.md"


def section(title: str) -> str:
    text = STATE_MD.read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_time_aligned_inputs_example_in_state_md(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = section("Time-aligned inputs").split("```flow\n")[1:]
    header, pipeline = (b.split("```", 1)[0] for b in blocks)
    Path("settings.flow").write_text(header)
    assert load_pipeline("settings.flow").settings.max_task_idle == 0.5  # seconds
    Path("shop.flow").write_text(pipeline)
    write(tmp_path / "customers.jsonl", [{"key": "c1", "value": {"name": "Ada", "since": 1000}}])
    write(tmp_path / "orders.jsonl", [{"key": "c1", "value": {"order_id": "o1", "amount": 5.0, "ts": 2000}},
                                      {"key": "c2", "value": {"order_id": "o2", "amount": 7.0, "ts": 3000}}])
    result = CliRunner().invoke(app, ["run", "shop.flow", "--keyed", "--until-idle", "--quiet",
                                      "--input", "orders=orders.jsonl", "--input", "customers=customers.jsonl",
                                      "--output", "enriched=-"])
    assert result.exit_code == 0, result.output
    assert [orjson.loads(line)["value"] for line in result.stdout.splitlines()] == [
        {"order_id": "o1", "name": "Ada", "amount": 5.0}]


REKEYED = """
pipeline shop { partitions 2, batch_size 40 }

record Customer { name: str, since: int }
record Order { order_id: str, customer_id: str, amount: float, ts: int }

topic customers: Customer key str event_time since
topic orders: Order key str event_time ts
topic enriched

table customers = topic customers
orders | join customers on customer_id | map { order_id, customer_id, name, amount } | to topic enriched
"""


@pytest.mark.parametrize("customers_first", [True, False], ids=["customers-first", "orders-first"])
def test_a_rekeyed_stream_joins_the_table_as_it_was_at_each_record_time(tmp_path, monkeypatch, customers_first):
    """The orders are keyed by order id, so `on customer_id` re-keys them through a
    repartition topic: the join task reads that topic and the customers topic, and waits
    for the repartition topic's watermark before taking a customer from the future."""
    monkeypatch.chdir(tmp_path)
    Path("shop.flow").write_text(REKEYED)
    rng = random.Random(7)
    customers = [{"key": f"c{i}", "value": {"name": f"name-{i}", "since": BASE + i * 1000}} for i in range(200)]
    orders = []
    for j in range(1000):
        c = rng.randrange(200)
        orders.append({"key": f"o{j}", "value": {"order_id": f"o{j}", "customer_id": f"c{c}", "amount": float(j),
                                                  "ts": BASE + c * 1000 + rng.randrange(-100_000, 100_000)}})
    orders.sort(key=lambda o: o["value"]["ts"])
    given = [f"customers={write(tmp_path / 'customers.jsonl', customers)}",
             f"orders={write(tmp_path / 'orders.jsonl', orders)}"]
    args = ["run", "shop.flow", "--until-idle", "--quiet", "--keyed", "--output", "enriched=-"]
    for each in (given if customers_first else given[::-1]):
        args += ["--input", each]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    since = {c["key"]: c["value"]["since"] for c in customers}
    expected = sorted((o["value"]["order_id"], o["value"]["customer_id"], f"name-{o['value']['customer_id'][1:]}",
                       o["value"]["amount"]) for o in orders
                      if since[o["value"]["customer_id"]] <= o["value"]["ts"])
    joined = sorted((v["order_id"], v["customer_id"], v["name"], v["amount"])
                    for v in (orjson.loads(line)["value"] for line in result.stdout.splitlines()))
    assert 300 < len(expected) < 700  # orders before their customer's sign-up are not joined
    assert joined == expected
