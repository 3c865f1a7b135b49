"""`dataflow run --keyed`: input lines carry the message timestamp and headers, as outputs print them."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app

VISITS = """\
pipeline visits

record View { user: str, page: str, ts: timestamp(s) }
record Visit { user: str, page: str }
topic views: View key str partitions 1 event_time ts
topic visits: Visit key str partitions 1

views | map { user, page } | to topic visits
"""

PER_MINUTE = """\
pipeline per_minute

record Visit { user: str, page: str }
topic visits: Visit key str partitions 1

table n = visits | window tumbling 1m | aggregate { n: count() }
n | to stdout
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("visits.flow").write_text(VISITS)
    Path("per_minute.flow").write_text(PER_MINUTE)
    return tmp_path


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["run", *args, "--until-idle", "-q"], input=input)


def write_lines(path: str, *rows: dict) -> None:
    Path(path).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))


def test_a_keyed_line_sets_the_message_timestamp_and_headers(workdir):
    write_lines("in.jsonl",
                {"key": "ann", "value": {"user": "ann", "page": "home"}, "timestamp": 1700000000123},
                {"key": "bob", "value": {"user": "bob", "page": "cart"}, "timestamp": "2023-11-14T22:13:20.5Z",
                 "headers": {"source": "import", "batch": "7"}},
                {"key": "cy", "value": {"user": "cy", "page": "faq"}, "timestamp": "2023-11-14T23:13:20+01:00",
                 "topic": "elsewhere", "partition": 3, "offset": 41})
    result = run("per_minute.flow", "-b", "memory://", "--keyed", "-i", "visits=in.jsonl", "-o", "visits=-")
    assert result.exit_code == 0, result.output
    echoed = [orjson.loads(line) for line in result.stdout.splitlines() if '"topic":"visits"' in line]
    assert echoed == [
        {"key": "ann", "value": {"user": "ann", "page": "home"}, "topic": "visits", "partition": 0, "offset": 0,
         "timestamp": 1700000000123},
        {"key": "bob", "value": {"user": "bob", "page": "cart"}, "topic": "visits", "partition": 0, "offset": 1,
         "timestamp": 1700000000500, "headers": {"source": "import", "batch": "7"}},
        {"key": "cy", "value": {"user": "cy", "page": "faq"}, "topic": "visits", "partition": 0, "offset": 2,
         "timestamp": 1700000000000},
    ]


def test_the_output_of_one_run_is_the_input_of_another_with_its_times(workdir):
    write_lines("views.jsonl", *[
        {"key": user, "value": {"user": user, "page": "p", "ts": ts}}
        for user, ts in [("ann", 1700000000), ("ann", 1700000030.5), ("ann", 1700000070), ("bob", 1700000100)]])
    first = run("visits.flow", "--data-dir", "one", "--keyed", "-i", "views=views.jsonl", "-o", "visits=visits.jsonl")
    assert first.exit_code == 0, first.output
    assert [orjson.loads(line)["timestamp"] for line in Path("visits.jsonl").read_text().splitlines()] == [
        1700000000000, 1700000030500, 1700000070000, 1700000100000]
    second = run("per_minute.flow", "--data-dir", "two", "--keyed", "-i", "visits=visits.jsonl")
    assert second.exit_code == 0, second.output
    # windows by the event times the first run wrote, not by when the lines were sent
    assert [orjson.loads(line) for line in second.stdout.splitlines()] == [
        {"key": "ann", "value": {"n": 1, "window_start": 1699999980000, "window_end": 1700000040000}},
        {"key": "ann", "value": {"n": 2, "window_start": 1699999980000, "window_end": 1700000040000}},
        {"key": "ann", "value": {"n": 1, "window_start": 1700000040000, "window_end": 1700000100000}},
        {"key": "bob", "value": {"n": 1, "window_start": 1700000100000, "window_end": 1700000160000}},
    ]


LINE = '{"key": "a", "value": {"user": "a", "page": "p"}, '


@pytest.mark.parametrize(("extra", "error"), [
    ('"timestamp": true}',
     '"timestamp" must be epoch milliseconds (an int) or ISO-8601 text, got true '
     '(input line {"key": "a", "value": {"user": "a", "page": "p"}, "timestamp...)'),
    ('"timestamp": "1700000000"}',
     '"timestamp" \'1700000000\' is not ISO-8601 text; write epoch milliseconds as a JSON number, or text such '
     'as "2024-01-01T00:00:00Z" (input line {"key": "a", "value": {"user": "a", "page": "p"}, "timestamp...)'),
    ('"timestamp": -1}',
     '"timestamp" -1 is out of range for a message timestamp (epoch milliseconds from 1970 on) '
     '(input line {"key": "a", "value": {"user": "a", "page": "p"}, "timestamp...)'),
    ('"headers": {"n": 1}}',
     '"headers" must be an object of text values, such as {"source": "import"} '
     '(input line {"key": "a", "value": {"user": "a", "page": "p"}, "headers":...)'),
])
@pytest.mark.parametrize("source", ["file", "stdin"])
def test_a_timestamp_or_headers_that_cannot_be_sent_stop_the_run_with_one_line(workdir, extra, error, source):
    Path("bad.jsonl").write_text(LINE + extra + "\n")
    if source == "file":
        result = run("per_minute.flow", "-b", "memory://", "--keyed", "-i", "visits=bad.jsonl")
    else:
        result = run("per_minute.flow", "-b", "memory://", "--keyed", "-i", "visits=-", input=LINE + extra + "\n")
    assert result.exit_code == 1
    assert result.stderr == f"error: {error}\n"


def test_what_tail_prints_can_be_sent_again_with_its_times_and_headers(workdir):
    write_lines("in.jsonl",
                {"key": "ann", "value": {"user": "ann"}, "timestamp": 1700000000123, "headers": {"source": "a"}},
                {"key": None, "value": {"user": "bob"}, "timestamp": "2023-11-14T22:13:20Z"})
    cli = CliRunner()
    sent = cli.invoke(app, ["send", "first", "in.jsonl", "--keyed", "--create", "--data-dir", "d"])
    assert (sent.exit_code, sent.stderr) == (0, "sent 2 records to first\n")
    tailed = cli.invoke(app, ["tail", "first", "--from-beginning", "--data-dir", "d"])
    Path("tailed.jsonl").write_text(tailed.stdout)
    again = cli.invoke(app, ["send", "second", "tailed.jsonl", "--keyed", "--create", "--data-dir", "d"])
    assert again.exit_code == 0, again.output
    rows = [orjson.loads(line) for line in cli.invoke(app, ["tail", "second", "--from-beginning", "--data-dir",
                                                            "d"]).stdout.splitlines()]
    assert [(r["key"], r["value"], r["timestamp"], r.get("headers")) for r in rows] == [
        ("ann", {"user": "ann"}, 1700000000123, {"source": "a"}), (None, {"user": "bob"}, 1700000000000, None)]


def test_send_refuses_a_timestamp_it_cannot_send_and_sends_nothing(workdir):
    Path("bad.jsonl").write_text('{"key": "a", "value": 1}\n{"key": "b", "value": 2, "timestamp": "soon"}\n')
    result = CliRunner().invoke(app, ["send", "t", "bad.jsonl", "--keyed", "--create", "--data-dir", "d"])
    assert (result.exit_code, result.stderr) == (1, (
        "bad.jsonl:2: error: \"timestamp\" 'soon' is not ISO-8601 text; write epoch milliseconds as a JSON number, "
        "or text such as \"2024-01-01T00:00:00Z\"; nothing was sent\n"))
