"""Event time on Kafka: float-second timestamps, the future-skew guard and key checks, as on
the embedded transports (the decode path is the same; the message timestamps are Kafka's)."""
from __future__ import annotations

import re

import orjson

from dataflow.lang import parse_flow
from dataflow.transport.base import ProducerRecord
from tests.kafka_broker import unique_name

from .conftest import run_url

PIPE = """
pipeline "units{sfx}"
record Payment {{ user: str, amount: int, ts: timestamp(s) }}
topic "payments{sfx}": Payment key str partitions 1 event_time ts
topic "sums{sfx}"
stream payments = topic "payments{sfx}"
table per_minute = payments
  | window tumbling 60s on ts
  | aggregate {{ total: sum(amount) }}
per_minute | to topic "sums{sfx}"
"""


async def test_float_seconds_windows_and_guards_on_kafka(kafka_url: str) -> None:
    sfx = "-" + unique_name("u")
    rows = [("a", 1, 1_700_000_039_999), ("a", 2, 1_700_000_040_000), ("b", 3, 1_700_000_041_500),
            ("a", 4, 1_700_000_099_999), ("b", 5, 1_700_000_100_001)]
    inputs = [ProducerRecord("", orjson.dumps(u), b'{"user": "%s", "amount": %d, "ts": %d.%03d}' % (
        u.encode(), a, t // 1000, t % 1000)) for u, a, t in rows]
    bad = [ProducerRecord("", b'"a"', b'{"user": "a", "amount": 100, "ts": "9999-12-31T23:59:59Z"}'),
           ProducerRecord("", None, b'{"user": "a", "amount": 100, "ts": 1700000040}')]
    inputs = inputs[:2] + bad + inputs[2:]
    run = await run_url(kafka_url, parse_flow(PIPE.format(sfx=sfx), "units.flow"), {f"payments{sfx}": inputs})
    latest = {}
    for m in run.topics[f"sums{sfx}"]:
        value = orjson.loads(m.value)
        latest[(orjson.loads(m.key), value["window_start"])] = value["total"]
    assert latest == {("a", 1_699_999_980_000): 1, ("a", 1_700_000_040_000): 6, ("b", 1_700_000_040_000): 3,
                      ("b", 1_700_000_100_000): 5}
    dead = [(dict(m.headers)["dataflow.error"].decode(), m.value) for m in run.topics[f"units{sfx}-dead-letters"]]
    assert [value for _reason, value in dead] == [bad[0].value, bad[1].value]
    assert re.fullmatch(r"event time 9999-12-31T23:59:59Z is more than max_future_skew \(1d\) after the wall "
                        r"clock \(\S+Z\)", dead[0][0])
    assert dead[1][0] == f"null key on topic payments{sfx}, which declares key str"
