"""Settings from the `.flow` header, the environment (`DATAFLOW_<SETTING>`) and `--set`: one strict
parser for all three, errors that name where the value came from, and header < environment < --set."""
from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from dataflow import Flow
from dataflow.cli import app
from dataflow.ir.settings import SETTING_NAMES, SettingError, UnknownSetting, parse_setting

HEADER = """pipeline p {
  commit_interval 250ms
  partitions 2
}
topic t
t | to stdout
"""


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    for variable in list(os.environ):
        if variable.startswith("DATAFLOW_"):
            monkeypatch.delenv(variable)
    path = tmp_path / "p.flow"
    path.write_text(HEADER)
    return str(path)


def settings(pipeline: str, *args: str) -> dict:
    result = invoke("plan", pipeline, "-f", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["settings"]


def test_set_takes_a_duration_where_a_duration_is_meant(pipe):
    got = settings(pipe, "--set", "commit_interval=500ms", "--set", "max_future_skew=1h", "--set",
                   "max_task_idle=0.2", "--set", "kafka_session_timeout_ms=30s", "--set", "kafka_linger_ms=20")
    assert (got["commit_interval"], got["max_future_skew"], got["max_task_idle"]) == (0.5, 3600.0, 0.2)
    assert (got["kafka_session_timeout_ms"], got["kafka_linger_ms"]) == (30_000, 20)


@pytest.mark.parametrize("pair, message", [
    ("auto_create_topics=flase", "must be true or false"),
    ("commit_interval=soon", "must be a duration >= 0 such as 500ms, 30s or 1.5 (seconds)"),
    ("partitions=2.5", "must be a whole number >= 1"),
    ("batch_size=0", "must be a whole number >= 1"),
    ("kafka_linger_ms=-1", "must be a duration such as 30s or 500ms, or a whole number of milliseconds"),
    ("min_event_time=yesterday", "must be ISO-8601 text such as 1970-01-01T00:00:00Z"),
])
def test_a_bad_set_value_names_the_flag_and_the_value_not_a_line_of_the_file(pipe, pair, message):
    result = invoke("plan", pipe, "--set", pair)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"error: --set {pair}: {message}\n")


def test_bools_take_the_usual_spellings_and_nothing_else(pipe):
    for text, value in [("false", False), ("No", False), ("off", False), ("0", False), ("TRUE", True), ("yes", True)]:
        assert settings(pipe, "--set", f"auto_create_topics={text}")["auto_create_topics"] is value


def test_an_unknown_set_name_gets_a_did_you_mean(pipe):
    result = invoke("plan", pipe, "--set", "comit_interval=1s")
    assert (result.exit_code, result.stderr) == (
        1, "error: --set comit_interval=1s: unknown setting 'comit_interval'; did you mean 'commit_interval'?\n")


def test_every_setting_comes_from_the_environment(pipe, monkeypatch):
    monkeypatch.setenv("DATAFLOW_COMMIT_INTERVAL", "500ms")
    monkeypatch.setenv("DATAFLOW_AUTO_CREATE_TOPICS", "off")
    monkeypatch.setenv("DATAFLOW_DATA_DIR", "/var/lib/p")
    monkeypatch.setenv("DATAFLOW_PROCESSING_GUARANTEE", "EXACTLY_ONCE")
    got = settings(pipe)
    assert (got["commit_interval"], got["auto_create_topics"], got["data_dir"], got["processing_guarantee"]) == (
        0.5, False, "/var/lib/p", "exactly_once")


def test_a_bad_environment_value_names_the_variable(pipe, monkeypatch):
    monkeypatch.setenv("DATAFLOW_AUTO_CREATE_TOPICS", "flase")
    result = invoke("check", pipe)
    assert (result.exit_code, result.stdout, result.stderr) == (
        1, "", "error: DATAFLOW_AUTO_CREATE_TOPICS=flase: must be true or false\n")


def test_a_misspelt_variable_is_refused_and_unrelated_ones_are_ignored(pipe, monkeypatch):
    monkeypatch.setenv("DATAFLOW_TEST_MARKER", "x")  # not ours: ignored
    monkeypatch.setenv("DATAFLOW_LOG_LEVEL", "debug")  # an option of the command line, not a setting
    assert invoke("check", pipe).exit_code == 0
    monkeypatch.setenv("DATAFLOW_PARTITION", "8")
    result = invoke("check", pipe)
    assert (result.exit_code, result.stderr) == (
        1, "error: DATAFLOW_PARTITION is not a setting; did you mean DATAFLOW_PARTITIONS?\n")


def test_kafka_variables_stay_with_the_kafka_driver(pipe, monkeypatch):
    # DATAFLOW_KAFKA_* keep their own precedence (settings, then the URL, then the environment),
    # so they are not read into the pipeline's settings.
    monkeypatch.setenv("DATAFLOW_KAFKA_LINGER_MS", "50")
    assert settings(pipe)["kafka_linger_ms"] is None


def test_precedence_is_header_then_environment_then_set(pipe, monkeypatch):
    assert (settings(pipe)["commit_interval"], settings(pipe)["partitions"]) == (0.25, 2)
    monkeypatch.setenv("DATAFLOW_COMMIT_INTERVAL", "2s")
    monkeypatch.setenv("DATAFLOW_PARTITIONS", "3")
    assert (settings(pipe)["commit_interval"], settings(pipe)["partitions"]) == (2.0, 3)
    got = settings(pipe, "--set", "commit_interval=3s")
    assert (got["commit_interval"], got["partitions"]) == (3.0, 3)


def test_the_environment_applies_to_python_pipelines_too(monkeypatch, repo_root):
    monkeypatch.setenv("DATAFLOW_BATCH_SIZE", "10")
    assert settings("examples/fraud.py")["batch_size"] == 10


def test_the_header_uses_the_same_parser(tmp_path):
    path = tmp_path / "h.flow"
    path.write_text('pipeline h { kafka_linger_ms 1s, auto_create_topics flase, commit_interval "1s" }\n'
                    "topic t\nt | to stdout\n")
    result = invoke("check", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:1:34: error: setting 'auto_create_topics' must be true or false, not flase\n"
        'pipeline h { kafka_linger_ms 1s, auto_create_topics flase, commit_interval "1s" }\n'
        "                                 ^~~~~~~~~~~~~~~~~~~~~~~~\n"
        f"{path}:1:60: error: setting 'commit_interval' must be a duration >= 0 such as 500ms, 30s or 1.5 "
        "(seconds), not a string\n"
        'pipeline h { kafka_linger_ms 1s, auto_create_topics flase, commit_interval "1s" }\n'
        "                                                           ^~~~~~~~~~~~~~~~~~~~\n"
        "2 errors\n")
    path.write_text("pipeline h { kafka_linger_ms 1s }\ntopic t\nt | to stdout\n")
    assert settings(str(path))["kafka_linger_ms"] == 1000


def test_the_builder_uses_the_same_parser():
    flow = Flow("b", commit_interval="500ms", max_task_idle=timedelta(milliseconds=20), auto_create_topics="no")
    assert (flow.settings.commit_interval, flow.settings.max_task_idle, flow.settings.auto_create_topics) == (
        0.5, 0.02, False)
    with pytest.raises(UnknownSetting, match=r"unknown setting 'partitons'; did you mean 'partitions'\?"):
        Flow("b", partitons=2)
    with pytest.raises(SettingError, match="setting 'auto_create_topics' must be true or false, not 1"):
        Flow("b", auto_create_topics=1)


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_every_setting_has_a_parser_and_takes_its_default(name):
    from dataflow.ir.settings import Settings

    default = getattr(Settings(), name)
    assert parse_setting(name, default) == default


def test_the_documented_mistakes_print_what_the_docs_say(pipe, monkeypatch):
    import re
    import shlex
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text()
    section = doc.split("A mistake names where the value came from", 1)[1]
    lines = re.search(r"```console\n(.*?)```", section, re.S).group(1).splitlines()  # type: ignore[union-attr]
    assert len(lines) == 6
    monkeypatch.chdir(Path(pipe).parent)  # the docs' pipe.flow
    Path("pipe.flow").write_text(HEADER)
    for command, expected in zip(lines[::2], lines[1::2]):
        words = shlex.split(command[2:])
        env = dict(w.split("=", 1) for w in words if w.startswith("DATAFLOW_"))
        args = [w for w in words if not w.startswith("DATAFLOW_")][1:]
        with monkeypatch.context() as m:
            for variable, value in env.items():
                m.setenv(variable, value)
            result = invoke(*args)
        assert (result.exit_code, result.stderr) == (1, expected + "\n")
