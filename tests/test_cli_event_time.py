"""`dataflow run --until-idle` on float epoch seconds, as a new user runs it (issue 12, finding 1)."""
from __future__ import annotations

import random
from pathlib import Path

import orjson
from typer.testing import CliRunner

from dataflow.cli import app

PIPE = """\
pipeline sums

record Payment { user: str, amount: int, ts: timestamp(s) }
topic payments: Payment key str partitions 1 event_time ts
topic sums

table per_minute = payments
  | window tumbling 60s on ts
  | aggregate { total: sum(amount) }
per_minute | to topic sums
"""


def test_60s_tumbling_sums_over_float_seconds_with_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = random.Random(3)
    ms, rows = 1_700_000_000_000, []
    for _ in range(400):
        ms += rng.randrange(0, 30_000)
        rows.append((rng.choice("ab"), rng.randrange(1, 10), ms))
    Path("pipe.flow").write_text(PIPE)
    Path("in.jsonl").write_bytes(b"".join(
        b'{"key": "%s", "value": {"user": "%s", "amount": %d, "ts": %d.%03d}}\n' % (u.encode(), u.encode(), a,
                                                                                  t // 1000, t % 1000)
        for u, a, t in rows))
    result = CliRunner().invoke(app, ["run", "pipe.flow", "--keyed", "-i", "payments=in.jsonl", "-o", "sums=-",
                                      "--until-idle", "-q"])
    assert result.exit_code == 0, result.output
    latest = {}
    for line in result.stdout.splitlines():
        out = orjson.loads(line)
        latest[(out["key"], out["value"]["window_start"])] = out["value"]  # emit changes: the last is final
    expected: dict[tuple[str, int], dict[str, int]] = {}
    for user, amount, t in rows:
        start = t - t % 60_000
        row = expected.setdefault((user, start), {"total": 0, "window_start": start, "window_end": start + 60_000})
        row["total"] += amount
    assert latest == {(u, s): v for (u, s), v in expected.items()}
