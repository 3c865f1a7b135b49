"""`dataflow topics create|list|describe`, `dataflow send` and `dataflow tail`, on Kafka and the local log."""
from __future__ import annotations

import asyncio
import io

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.cli.topics import tail
from dataflow.transport.base import ProducerRecord, TopicSpec, open_transport, partition_for
from tests.kafka_broker import unique_name


def cli(*args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args), input=input)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


@pytest.fixture(params=["local", "kafka"])
def where(request: pytest.FixtureRequest, tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    """The --broker option for each transport the tools are tested on."""
    if request.param == "kafka":
        return ["--broker", request.getfixturevalue("kafka_url")]
    return ["--broker", f"local://{tmp_path / 'log'}"]


ORDERS = [{"id": 1, "customer": "ann"}, {"id": 2, "customer": "bob"}, {"id": 3, "customer": "ann"},
          {"id": 4, "customer": "cy"}]


def test_create_list_describe_send_and_tail(where: list[str]) -> None:
    orders, audit = unique_name("orders"), unique_name("audit")
    created = cli("topics", "create", orders, audit, "--partitions", "3", *where)
    assert created.exit_code == 0, created.output
    assert created.stdout == f"created {orders} (3 partitions)\ncreated {audit} (3 partitions)\n"
    assert cli("topics", "create", orders, "--partitions", "3", *where).stdout == f"exists {orders} (3 partitions)\n"
    mismatch = cli("topics", "create", orders, "--partitions", "5", *where)
    assert (mismatch.exit_code, mismatch.stderr) == (
        1, f"error: topic '{orders}' already exists with 3 partitions, not 5; hint: keep the partition count, "
           "or use a new topic name\n")
    listed = cli("topics", "list", *where).stdout.splitlines()
    assert f"{orders}\t3" in listed and f"{audit}\t3" in listed

    text = "".join(orjson.dumps(o).decode() + "\n" for o in ORDERS) + "\n"
    sent = cli("send", orders, "--key", "customer", *where, input=text)
    assert (sent.exit_code, sent.stderr) == (0, f"sent 4 records to {orders}\n")
    placed = {p: [o for o in ORDERS if partition_for(orjson.dumps(o["customer"]), 3) == p] for p in range(3)}

    described = cli("topics", "describe", orders, *where)
    assert described.stdout.splitlines() == [f"{orders}: 3 partitions, end offsets sum 4"] + [
        f"  partition {p}: end offset {len(placed[p])}" for p in range(3)]

    everything = [orjson.loads(line) for line in cli("tail", orders, "--from-beginning", *where).stdout.splitlines()]
    assert sorted((r["partition"], r["offset"], r["key"], orjson.dumps(r["value"])) for r in everything) == sorted(
        (p, i, o["customer"], orjson.dumps(o)) for p, rows in placed.items() for i, o in enumerate(rows))
    last = [orjson.loads(line) for line in cli("tail", orders, "-n", "1", *where).stdout.splitlines()]
    assert sorted((r["partition"], r["value"]["id"]) for r in last) == sorted(
        (p, rows[-1]["id"]) for p, rows in placed.items() if rows)


def test_send_keyed_lines_and_mistakes(where: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = unique_name("keyed")
    missing = cli("send", topic, *where, input='{"a": 1}\n')
    assert missing.exit_code == 1 and f"error: no topic '{topic}'" in missing.stderr
    bad = cli("send", topic, "--create", *where, input='{"a": 1}\n{"a": \n')
    assert (bad.exit_code, bad.stderr.split(" (")[0]) == (1, "<stdin>:2: error: not valid JSON")
    assert topic not in cli("topics", "list", *where).stdout  # nothing was sent, nothing created
    path = tmp_path / "in.jsonl"
    path.write_text('{"key": "k1", "value": {"n": 1}}\n{"key": null, "value": [1, 2]}\n')
    sent = cli("send", topic, str(path), "--keyed", "--create", "--partitions", "2", *where)
    assert sent.exit_code == 0, sent.output
    rows = [orjson.loads(line) for line in cli("tail", topic, "--from-beginning", *where).stdout.splitlines()]
    assert sorted((r["partition"], orjson.dumps(r["key"]), orjson.dumps(r["value"])) for r in rows) == sorted(
        [(partition_for(b'"k1"', 2), b'"k1"', b'{"n":1}'), (0, b"null", b"[1,2]")])
    assert cli("tail", unique_name("nope"), *where).exit_code == 1


async def test_tail_follows_new_records_with_headers(kafka_url: str) -> None:
    topic = unique_name("live")
    transport = open_transport(kafka_url, ".")
    await transport.start()
    try:
        await transport.create_topics([TopicSpec(topic, 1)])
        producer = transport.producer()
        await producer.send(ProducerRecord(topic, None, b'"old"', timestamp=5))
        out, stop, started = io.StringIO(), asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(tail(transport, topic, out, follow=True, lines=0, stop=stop, started=started))
        # Produce once the tail has fixed where it starts: a record produced while it still reads
        # the ends would count as history (and lines=0 shows none of that).
        await asyncio.wait_for(started.wait(), 60)
        await producer.send(ProducerRecord(topic, b'"k"', b'{"new": true}', timestamp=7, headers=(("h", b"v"),)))
        for _ in range(600):
            await asyncio.sleep(0.05)
            if out.getvalue():
                break
        stop.set()
        assert await task == 1
    finally:
        await transport.stop()
    assert [orjson.loads(line) for line in out.getvalue().splitlines()] == [
        {"key": "k", "value": {"new": True}, "topic": topic, "partition": 0, "offset": 1, "timestamp": 7,
         "headers": {"h": "v"}}]


def test_memory_broker_and_bad_urls() -> None:
    assert cli("topics", "list", "--broker", "memory://").stdout == ""
    bad = cli("topics", "list", "--broker", "kafka://nohostport")
    assert (bad.exit_code, bad.stderr) == (
        1, "error: kafka broker 'nohostport' in 'kafka://nohostport' is not HOST:PORT; hint: kafka://localhost:9092\n")
