"""`--log-level`, `--log-format json` and `--quiet`: what a run whose agent crashes prints on stderr."""
from __future__ import annotations

import json
import logging
import re
import sys
import uuid

import pytest
from typer.testing import CliRunner

from dataflow.cli import app, logs

CRASH_LINE = "error: agent quote actor 0 crashed: ValueError: bad quantity 0"
AGENTS = '''
from dataflow.runtime.app import App

app = App("pricing", topic_partitions=1)


@app.agent()
async def quote(stream):
    async for order in stream:
        if order["quantity"] <= 0:
            raise ValueError(f"bad quantity {order['quantity']}")
        yield {"total": order["quantity"] * 2}
'''


@pytest.fixture
def crashing(tmp_path, monkeypatch):
    """A pipeline whose agent crashes on its second record (which is dead-lettered)."""
    monkeypatch.chdir(tmp_path)
    for variable in ("DATAFLOW_LOG_LEVEL", "DATAFLOW_LOG_FORMAT"):
        monkeypatch.delenv(variable, raising=False)
    module = f"pricing_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(AGENTS)
    (tmp_path / "q.flow").write_text(f"""pipeline quotes {{ partitions 1 }}
record Order {{ item: str, quantity: int }}
topic orders: Order
stream priced = orders | call agent "{module}:quote"
priced | to stdout
""")
    (tmp_path / "in.jsonl").write_text('{"item": "a", "quantity": 1}\n{"item": "b", "quantity": 0}\n')
    yield lambda *args: run(*args)
    sys.modules.pop(module, None)


def run(*args: str):
    result = CliRunner().invoke(app, ["run", "q.flow", "-i", "orders=in.jsonl", "--until-idle",
                                      "--broker", "memory://", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"key":null,"value":{"total":2}}\n'
    return result


def test_quiet_is_one_line_per_error_and_no_traceback(crashing):
    assert crashing("-q").stderr == CRASH_LINE + logs.TRACEBACK_HINT + "\n"


def test_the_default_level_adds_warnings_and_the_summary_but_no_traceback(crashing):
    err = crashing().stderr
    assert err.startswith(CRASH_LINE + logs.TRACEBACK_HINT + "\nwarning: agent quote actor 0 restarting\n"
                          "processed 2 messages in ")
    assert "Traceback" not in err


def test_the_debug_level_shows_the_traceback(crashing):
    err = crashing("-q", "--log-level", "DEBUG").stderr
    assert CRASH_LINE + "\nTraceback (most recent call last):\n" in err
    assert "    raise ValueError(f\"bad quantity {order['quantity']}\")\nValueError: bad quantity 0\n" in err


def test_json_lines_have_time_level_logger_message_and_the_exception(crashing):
    lines = [json.loads(line) for line in crashing("--log-format", "json").stderr.splitlines()]
    for line in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line.pop("time"))
    crash, restart, summary = lines
    assert crash == {"level": "error", "logger": "dataflow.runtime.agents",
                     "message": "agent quote actor 0 crashed: ValueError: bad quantity 0",
                     "exception": "ValueError: bad quantity 0"}
    assert restart == {"level": "warning", "logger": "dataflow.runtime.agents",
                       "message": "agent quote actor 0 restarting"}
    assert summary.pop("seconds") >= 0
    assert summary == {"level": "info", "logger": "dataflow.run", "message": summary["message"],
                       "messages_received": 2, "messages_received_by_topic": {"orders": 2},
                       "messages_sent_by_topic": {"quotes-dead-letters": 1}, "dead_letters": 1,
                       "dead_letters_by_stage": {"priced": 1}, "late_events": 0, "late_events_by_step": {},
                       "restored_records": 0, "commits": 1}
    assert summary["message"].startswith("processed 2 messages in ")


def test_level_and_format_come_from_the_environment(crashing, monkeypatch):
    monkeypatch.setenv("DATAFLOW_LOG_LEVEL", "debug")
    monkeypatch.setenv("DATAFLOW_LOG_FORMAT", "JSON")
    lines = [json.loads(line) for line in crashing("-q").stderr.splitlines()]
    crash = next(line for line in lines if line["message"].startswith("agent quote actor 0 crashed"))
    assert crash["traceback"].startswith("Traceback (most recent call last):\n")
    assert crash["traceback"].endswith("ValueError: bad quantity 0")


@pytest.mark.parametrize("args, env, message", [
    (["--log-level", "loud"], {}, "Invalid value for '--log-level': 'loud': choose one of debug, info, warning, error"),
    (["--log-format", "xml"], {}, "Invalid value for '--log-format': 'xml': choose one of text, json"),
    ([], {"DATAFLOW_LOG_LEVEL": "loud"},
     "Invalid value for '--log-level': DATAFLOW_LOG_LEVEL=loud: choose one of debug, info, warning, error"),
])
def test_a_bad_level_or_format_is_refused_naming_its_source(tmp_path, monkeypatch, args, env, message):
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["run", "nothing.flow", *args])
    assert result.exit_code == 2
    assert result.stderr.endswith(f"Error: {message}\n")


def test_extra_fields_go_into_json_lines_and_the_root_logger_is_put_back(capsys):
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    with logs.configured("info", "json"):
        logging.getLogger("dataflow.test").info("stored %d rows", 3, extra={"table": "counts", "partition": 1})
        logging.getLogger("dataflow.test").debug("not at info")
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    del record["time"]
    assert record == {"level": "info", "logger": "dataflow.test", "message": "stored 3 rows", "table": "counts",
                      "partition": 1}
    assert (root.level, root.handlers) == (level, handlers)


def test_every_command_that_touches_a_transport_takes_the_log_options():
    import typer.main

    def commands(group, prefix=""):  # type: ignore[no-untyped-def]
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", {opt for p in command.params for opt in p.opts}

    options = dict(commands(typer.main.get_command(app)))
    with_broker = sorted(name for name, opts in options.items() if "--broker" in opts)
    assert with_broker == sorted(name for name, opts in options.items() if {"--log-level", "--log-format"} <= opts)


def test_send_reports_in_json_when_logs_are_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("1\n2\n")
    result = CliRunner().invoke(app, ["send", "nums", "in.jsonl", "--create", "--log-format", "json",
                                      "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stderr)
    del record["time"]
    assert record == {"level": "info", "logger": "dataflow.send", "message": "sent 2 records to nums",
                      "topic": "nums", "records": 2}
