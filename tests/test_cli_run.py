"""`dataflow run`: inputs, outputs, flags, errors and the summary, through the CLI."""
from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.transport.base import partition_for

PIPE = '''
from dataflow import Flow, Record, col, fn

class Payment(Record):
    account: str
    amount: float

flow = Flow("cli", partitions=2)
big = flow.source("payments", value=Payment).filter(col("amount") > 100)
big.map({"account": fn.upper(col("account")), "amount": col("amount")}).to("large")
'''

STATEFUL = '''
from dataflow import Flow

flow = Flow("counting")
flow.source("lines", value=str).group_by("_value", name="by_line").count(name="counts").to("counts-out")
'''

LINES = [
    {"account": "a", "amount": 500},
    {"account": "b", "amount": 5},
    {"account": "c", "amount": 101.5},
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("pipe.py").write_text(PIPE)
    Path("stateful.py").write_text(STATEFUL)
    Path("in.jsonl").write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in LINES))
    return tmp_path


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["run", *args], input=input)


def lines_of(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        obj = orjson.loads(line)
        assert isinstance(obj.pop("timestamp"), int)
        out.append(obj)
    return out


LARGE = [
    {"key": None, "value": {"account": "A", "amount": 500}, "topic": "large", "partition": 0, "offset": 0},
    {"key": None, "value": {"account": "C", "amount": 101.5}, "topic": "large", "partition": 0, "offset": 1},
]


def test_input_file_output_file_until_idle(workdir):
    result = invoke("pipe.py", "--input", "payments=in.jsonl", "--output", "large=out.jsonl", "--until-idle")
    assert result.exit_code == 0, result.output
    assert lines_of(Path("out.jsonl").read_text()) == LARGE
    assert result.stdout == ""
    assert Path(".dataflow/cli/log").is_dir()  # the default data dir: ./.dataflow/PIPELINE


def test_output_to_stdout_and_the_summary_on_stderr(workdir):
    result = invoke("pipe.py", "-i", "payments=in.jsonl", "-o", "large=-", "--until-idle",
                    "--data-dir", str(workdir / "d"))
    assert result.exit_code == 0
    assert lines_of(result.stdout) == LARGE
    first, *rest = result.stderr.splitlines()
    assert first.startswith("processed 3 messages in ")
    assert rest == ["  read  payments: 3", "  wrote large: 2", "  commits: 1"]


def test_quiet_prints_no_summary(workdir):
    result = invoke("pipe.py", "-i", "payments=in.jsonl", "-o", "large=-", "--until-idle", "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert len(lines_of(result.stdout)) == 2


def test_stdin_input(workdir):
    text = Path("in.jsonl").read_text()
    result = invoke("pipe.py", "--input", "payments=-", "--output", "large=-", "--until-idle", "-q", input=text)
    assert result.exit_code == 0, result.output
    assert lines_of(result.stdout) == LARGE


def test_keyed_input_lines(workdir):
    Path("keyed.jsonl").write_text("\n".join(orjson.dumps(x).decode() for x in [
        {"key": "k1", "value": {"account": "a", "amount": 200}},
        {"key": "k2", "value": {"account": "b", "amount": 300}},
        {"key": None, "value": {"account": "c", "amount": 400}},
    ]) + "\n")
    result = invoke("pipe.py", "--keyed", "-i", "payments=keyed.jsonl", "-o", "large=-", "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    got = sorted(lines_of(result.stdout), key=lambda r: r["value"]["account"])
    assert [(r["key"], r["value"]["account"], r["partition"]) for r in got] == [
        ("k1", "A", partition_for(b'"k1"', 2)), ("k2", "B", partition_for(b'"k2"', 2)), (None, "C", 0)]


def test_malformed_lines_are_dead_lettered_and_counted(workdir):
    Path("bad.jsonl").write_text('{"account": "a", "amount": 500}\nnot json\n{"account": "b"}\n')
    result = invoke("pipe.py", "-i", "payments=bad.jsonl", "-o", "large=-", "-o", "cli-dead-letters=dead.jsonl",
                    "--until-idle")
    assert result.exit_code == 0
    assert [r["value"] for r in lines_of(result.stdout)] == [{"account": "A", "amount": 500}]
    assert [r["value"] for r in lines_of(Path("dead.jsonl").read_text())] == ["not json", {"account": "b"}]
    assert "  dead letters: 2 (decode: 1, validate: 1)" in result.stderr.splitlines()


def test_a_second_run_resumes_and_reads_only_new_input(workdir):
    assert invoke("pipe.py", "-i", "payments=in.jsonl", "--until-idle", "-q").exit_code == 0
    Path("more.jsonl").write_text('{"account": "z", "amount": 1000}\n')
    result = invoke("pipe.py", "-i", "payments=more.jsonl", "-o", "large=-", "--until-idle")
    assert result.exit_code == 0
    assert "  read  payments: 1" in result.stderr.splitlines()
    # --output tails the whole sink topic (its own consumer group starts at the beginning)
    assert [r["value"]["account"] for r in lines_of(result.stdout)] == ["A", "C", "Z"]


def test_memory_broker(workdir):
    result = invoke("pipe.py", "--broker", "memory://", "-i", "payments=in.jsonl", "-o", "large=-", "--until-idle",
                    "-q")
    assert result.exit_code == 0
    assert lines_of(result.stdout) == LARGE
    assert not Path(".dataflow/cli/log").exists()


def test_unknown_topic_in_input_is_a_clear_error(workdir):
    result = invoke("pipe.py", "--input", "nope=in.jsonl", "--until-idle")
    assert result.exit_code == 1
    assert result.stderr == "error: pipeline cli has no topic 'nope'; its topics are: large, payments\n"


def test_unknown_topic_in_output_is_a_clear_error(workdir):
    result = invoke("pipe.py", "--output", "nope=-", "--until-idle")
    assert result.exit_code == 1
    assert result.stderr == ("error: pipeline cli has no topic 'nope'; its topics are: large, payments, and its "
                             "dead-letter topic cli-dead-letters\n")


def test_exactly_once_on_kafka_is_refused_rather_than_silently_weakened(workdir):
    result = invoke("pipe.py", "--broker", "kafka://127.0.0.1:1", "--set", "processing_guarantee=exactly_once",
                    "--until-idle")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: pipeline cli asks for processing_guarantee exactly_once, which kafka:// does not provide "
        "(runs on Kafka are at-least-once); hint: --set processing_guarantee=at_least_once to accept "
        "duplicates after a crash, or run on the embedded local log, which is exactly-once\n")


def test_missing_input_file(workdir):
    result = invoke("pipe.py", "--input", "payments=missing.jsonl", "--until-idle")
    assert result.exit_code == 1
    assert result.stderr == "error: input file missing.jsonl does not exist\n"


def test_malformed_input_option(workdir):
    result = invoke("pipe.py", "--input", "payments", "--until-idle")
    assert result.exit_code == 2
    assert "expected TOPIC=FILE, got 'payments'" in result.stderr


def test_stateful_pipeline_keeps_its_counts_across_runs(workdir):
    Path("words.jsonl").write_text('"x"\n"y"\n"x"\n')
    first = invoke("stateful.py", "-i", "lines=words.jsonl", "-o", "counts-out=-", "--until-idle", "-q")
    assert first.exit_code == 0, first.output
    assert sorted((r["key"], r["value"]["count"]) for r in lines_of(first.stdout)) == [("x", 1), ("x", 2), ("y", 1)]
    Path("more.jsonl").write_text('"x"\n')
    second = invoke("stateful.py", "-i", "lines=more.jsonl", "-o", "counts-out=-", "--until-idle", "-q")
    assert second.exit_code == 0, second.output
    # the tailer resumes after what the first run printed; the table resumes at x=2
    assert [(r["key"], r["value"]["count"]) for r in lines_of(second.stdout)] == [("x", 3)]


def test_missing_pipeline_file(workdir):
    result = invoke("nowhere.py", "--until-idle")
    assert result.exit_code == 1
    assert result.stderr == "nowhere.py: no such file\n"


# -- pipelines that call Python agents (examples/quotes.* with examples/storefront/pricing.py) --------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

QUOTES = [
    {"key": "o-1", "value": {"order_id": "o-1", "item": "apple", "total": 15.0}, "topic": "quotes", "partition": 0,
     "offset": 0},
    {"key": "o-4", "value": {"order_id": "o-4", "item": "plum", "total": 5.0}, "topic": "quotes", "partition": 0,
     "offset": 1},
    {"key": "o-5", "value": {"order_id": "o-5", "item": "pear", "total": 15.0}, "topic": "quotes", "partition": 1,
     "offset": 0},
]


def split_agent_output(stdout: str) -> tuple[list[str], list[dict]]:
    """What the audit agent printed, and the output lines (the two interleave freely)."""
    audit = sorted(line for line in stdout.splitlines() if line.startswith("audit: "))
    return audit, lines_of("\n".join(line for line in stdout.splitlines() if not line.startswith("audit: ")))


@pytest.mark.parametrize("pipeline, broker", [("quotes.flow", []), ("quotes.py", ["--broker", "memory://"])])
def test_a_pipeline_that_calls_agents_runs_them_on_its_broker(workdir, pipeline, broker):
    result = invoke(str(EXAMPLES / pipeline), *broker, "--keyed",
                    "--input", f"orders={EXAMPLES / 'data' / 'keyed-orders.jsonl'}",
                    "--output", "quotes=-", "--output", "quotes-dead-letters=dead.jsonl", "--until-idle")
    assert result.exit_code == 0, result.output
    audit, quotes = split_agent_output(result.stdout)
    assert quotes == QUOTES
    assert audit == ["audit: order o-1 costs 15.0", "audit: order o-5 costs 15.0"]
    [dead] = lines_of(Path("dead.jsonl").read_text())
    assert dead["value"] == {"order_id": "o-3", "item": "pear", "quantity": 0}
    assert result.stderr.splitlines()[-5:] == [
        "  read  orders: 5", "  wrote quotes: 3", "  wrote quotes-dead-letters: 1",
        "  dead letters: 1 (priced: 1)", "  commits: 1"]
    assert (Path(".dataflow/quotes/log").is_dir()) is (pipeline == "quotes.flow")  # the local log, by default


def test_a_pipeline_that_names_an_agent_it_cannot_load_stops_before_running(workdir):
    Path("bad.flow").write_text('pipeline bad\ntopic orders\norders | call agent "pricing_nowhere:quote" | '
                                'to stdout\n')
    result = invoke("bad.flow", "--until-idle")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:3] == [
        "bad.flow:3:10: error: cannot load agent \"pricing_nowhere:quote\": cannot import module 'pricing_nowhere': "
        "No module named 'pricing_nowhere'; an agent is named by its import path, \"package.module:agent\", found "
        "from the working directory or the pipeline file's directory",
        'orders | call agent "pricing_nowhere:quote" | to stdout',
        "         ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~",
    ]


def test_dead_letters_written_with_output_keep_their_reason(workdir):
    Path("bad.jsonl").write_text('not json\n{"account": "b"}\n')
    result = invoke("pipe.py", "-i", "payments=bad.jsonl", "-o", "cli-dead-letters=-", "--until-idle", "-q")
    assert result.exit_code == 0
    headers = [r["headers"] for r in lines_of(result.stdout)]
    assert [(h["dataflow.stage"], h["dataflow.source"]) for h in headers] == [
        ("decode", "payments[0]@0"), ("validate", "payments[0]@1")]
    assert headers[1]["dataflow.error"] == "missing field 'amount'"


def test_a_json_null_value_on_a_typed_table_topic_deletes_its_key(workdir):
    Path("tb.flow").write_text('pipeline tb\nrecord Customer { name: str }\ntopic customers: Customer key str\n'
                               'topic out\ntable cs = topic customers\ncs.changes | to topic out\n')
    Path("in.jsonl").write_text('{"key": "c1", "value": {"name": "Ada"}}\n{"key": "c2", "value": {"name": "Bo"}}\n'
                                '{"key": "c1", "value": null}\n')
    result = invoke("tb.flow", "--keyed", "-i", "customers=in.jsonl", "-o", "out=-", "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    assert [(r["key"], r["value"]) for r in lines_of(result.stdout)] == [
        ("c1", {"name": "Ada"}), ("c2", {"name": "Bo"}), ("c1", None)]
    query = CliRunner().invoke(app, ["query", "tb.flow", "cs"])
    assert query.stdout == '{"key":"c2","value":{"name":"Bo"}}\n'
