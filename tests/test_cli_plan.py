"""`dataflow plan` and `dataflow check`: formats, options, and clean errors (never a traceback)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.loader import load_pipeline
from dataflow.planner import plan
from dataflow.planner.render import to_text

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "dataflow"  # the console script, as users run it
EXAMPLES = ["examples/clicks.py", "examples/fraud.py", "examples/orders.py", "examples/wordcount.py"]
NO_DOT = ("error: svg output needs Graphviz's `dot` program: install the graphviz package "
          "(apt-get install graphviz, brew install graphviz), or use --format dot\n")


@pytest.fixture(autouse=True)
def _from_repo_root(repo_root):  # noqa: ANN001 - tests/conftest.py
    return repo_root


def cli(*args: str):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


BAD_PIPELINE = '''\
from dataflow import Flow, Record, col
class W(Record):
    amount: float
flow = Flow("bad")
flow.source("w", value=W).filter(col("amout") > 1).to("o")
flow.source("v", value=W).filter(col("amount") > 1)
'''


# --------------------------------------------------------------------------- plan: formats


def test_plan_prints_the_text_plan():
    result = cli("plan", "examples/fraud.py")
    assert result.exit_code == 0
    assert result.stdout == to_text(plan(load_pipeline("examples/fraud.py").topology()))
    assert result.stderr == ""


def test_plan_json_of_wordcount_has_two_agents_and_a_repartition_topic():
    result = cli("plan", "examples/wordcount.py", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data["agents"]) >= 2
    internal = {t["name"]: t for t in data["topics"] if t["internal"]}
    assert internal["wordcount-by_word-repartition"]["role"] == "repartition"


def test_plan_dot_is_valid_graphviz(tmp_path):
    result = cli("plan", "examples/wordcount.py", "--format", "dot")
    assert result.exit_code == 0 and result.stdout.startswith('digraph "wordcount" {')
    dot = shutil.which("dot")
    assert dot, "Graphviz's dot is needed; `python3 dev.py test` installs it"
    rendered = subprocess.run([dot, "-Tsvg"], input=result.stdout, capture_output=True, text=True, check=False)
    assert rendered.returncode == 0, rendered.stderr
    assert "syntax error" not in rendered.stderr  # (font warnings on bare machines are fine)
    assert "<svg" in rendered.stdout


def test_plan_svg():
    result = cli("plan", "examples/wordcount.py", "--format", "svg")
    assert result.exit_code == 0
    assert "<svg" in result.stdout and result.stdout.rstrip().endswith("</svg>")
    assert "topology 0: lines" in result.stdout  # the cluster label ('-' may be escaped)


def test_plan_svg_without_dot_says_how_to_install_it(tmp_path):
    """PATH holds only a directory without `dot` (the console script has an absolute shebang)."""
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([str(BIN), "plan", "examples/wordcount.py", "--format", "svg"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", NO_DOT)


def test_plan_bad_format():
    result = cli("plan", "examples/wordcount.py", "--format", "xml")
    assert result.exit_code == 2
    assert "Invalid value for --format: choose one of text, json, dot, svg" in result.stderr


# --------------------------------------------------------------------------- plan: options


def test_plan_output_file(tmp_path):
    out = tmp_path / "plan.json"
    result = cli("plan", "examples/orders.py", "--format", "json", "-o", str(out))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", f"wrote {out}\n")
    assert json.loads(out.read_text())["pipeline"] == "orders"


def test_plan_set_partitions_changes_partition_counts():
    default = json.loads(cli("plan", "examples/fraud.py", "--format", "json").stdout)
    eight = json.loads(cli("plan", "examples/fraud.py", "--format", "json", "--set", "partitions=8").stdout)
    assert {t["name"]: t["partitions"] for t in default["topics"]} == {
        "alerts": 4, "fraud-dead-letters": 1, "fraud-large.by_account_id-repartition": 4,
        "fraud-per_account-changelog": 4, "withdrawals": 4}
    assert {t["name"]: t["partitions"] for t in eight["topics"]} == {
        "alerts": 8, "fraud-dead-letters": 1, "fraud-large.by_account_id-repartition": 8,
        "fraud-per_account-changelog": 8, "withdrawals": 8}
    assert [a["partitions"] for a in eight["agents"]] == [8, 8]
    assert eight["settings"]["partitions"] == 8
    assert cli("plan", "examples/fraud.py", "--set", "partitions=8").stdout.startswith(
        "Pipeline fraud: 2 sub-topologies, default 8 partitions, at-least-once\n")


def test_plan_set_other_settings():
    text = cli("plan", "examples/fraud.py", "--set", "concurrency=3", "--set",
               "processing-guarantee=exactly_once").stdout
    assert text.startswith("Pipeline fraud: 2 sub-topologies, default 4 partitions, exactly-once\n")
    assert "(4 partitions, concurrency 3)" in text


@pytest.mark.parametrize("setting, message", [
    ("nope=1", "error: --set nope=1: unknown setting 'nope'; settings are: auto_create_topics, batch_size, "
               "broker, commit_every, commit_interval, concurrency, data_dir, kafka_acks, kafka_auto_offset_reset, "
               "kafka_client_id, kafka_fetch_max_wait_ms, kafka_heartbeat_interval_ms, kafka_linger_ms, "
               "kafka_max_batch_size, "
               "kafka_replication_factor, kafka_sasl_mechanism, kafka_sasl_password, kafka_sasl_username, "
               "kafka_security_protocol, kafka_session_timeout_ms, kafka_ssl_cafile, kafka_ssl_certfile, "
               "kafka_ssl_keyfile, kafka_ssl_password, max_future_skew, max_task_idle, min_event_time, partitions, "
               "processing_guarantee\n"),
    ("max_task_idle=soon", "error: --set max_task_idle=soon: must be a duration >= 0 such as 500ms, 30s or 1.5 "
                           "(seconds)\n"),
    ("max_task_idle=-1", "error: --set max_task_idle=-1: must be a duration >= 0 such as 500ms, 30s or 1.5 "
                         "(seconds)\n"),
    ("partitions=0", "error: --set partitions=0: must be a whole number >= 1\n"),
    ("partitions=x", "error: --set partitions=x: must be a whole number >= 1\n"),
    ("processing_guarantee=maybe", "error: --set processing_guarantee=maybe: must be one of at_least_once, "
                                   "exactly_once\n"),
])
def test_plan_bad_settings(setting, message):
    result = cli("plan", "examples/fraud.py", "--set", setting)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)


def test_plan_set_needs_key_value():
    result = cli("plan", "examples/fraud.py", "--set", "partitions")
    assert result.exit_code == 2
    assert "Invalid value for --set: expected KEY=VALUE, got 'partitions'" in result.stderr


def test_plan_no_locations():
    with_locations = cli("plan", "examples/fraud.py").stdout
    without = cli("plan", "examples/fraud.py", "--no-locations").stdout
    assert "  @ examples/fraud.py:22" in with_locations
    assert " @ " not in without
    assert [line.split("  @ ")[0] for line in with_locations.splitlines()] == without.splitlines()
    data = json.loads(cli("plan", "examples/fraud.py", "--format", "json", "--no-locations").stdout)
    assert all("location" not in node for agent in data["agents"] for node in agent["nodes"])


# --------------------------------------------------------------------------- check


def test_check_ok():
    result = cli("check", "examples/fraud.py")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "examples/fraud.py: ok\n", "")


@pytest.mark.parametrize("command", ["check", "plan"])
def test_check_and_plan_report_every_diagnostic_with_its_location(command, tmp_path, monkeypatch):
    write(tmp_path, "bad.py", BAD_PIPELINE)
    monkeypatch.chdir(tmp_path)
    result = cli(command, "bad.py")
    assert (result.exit_code, result.stdout) == (1, "")
    err = result.stderr
    assert "bad.py:5: error: unknown field 'amout' in W; did you mean 'amount'?" in err
    assert "bad.py:6: error: stream 'v.filter' is never used: it has no sink and feeds no step" in err
    assert err.index("bad.py:5:") < err.index("bad.py:6:")
    assert err.endswith("\n2 errors\n")


# --------------------------------------------------------------------------- finding the pipeline


@pytest.mark.parametrize("text, message", [
    ("x = 1\n", '{path}: defines no dataflow.Flow; create one with Flow("name")\n'),
    ('from dataflow import Flow\na = Flow("a")\nb = Flow("b")\n',
     "{path}: defines several flows (a, b); name one with {path}:NAME or call it `flow`\n"),
    ('raise RuntimeError("boom")\n', "{path}: error: boom\n"),
    ('from dataflow import Flow\nflow = Flow("a b")\n',
     "{path}: error: pipeline name 'a b' may use letters, digits, '-', '_' and '.' only\n"),
])
def test_python_files_that_do_not_give_one_flow(text, message, tmp_path):
    path = write(tmp_path, "pipe.py", text)
    result = cli("plan", str(path))
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message.format(path=path))


def test_a_builder_error_in_the_file_points_at_its_line(tmp_path, monkeypatch):
    write(tmp_path, "clash.py", 'from dataflow import Flow\nflow = Flow("a")\ns = flow.source("w")\n'
                                's.group_by("k").count()\ns.group_by("k").count()\n')
    monkeypatch.chdir(tmp_path)
    result = cli("check", "clash.py")
    assert (result.exit_code, result.stderr) == (1, (
        "clash.py: error: clash.py:5: this step would be named 'w.by_k' like an earlier one; its topic or store "
        "name derives from it, so give it a name: .group_by(..., name=\"...\")\n"))


def test_missing_file():
    result = cli("plan", "nosuch.py")
    assert (result.exit_code, result.stderr) == (1, "nosuch.py: no such file\n")


def test_not_a_pipeline_reference():
    result = cli("plan", "nosuch")
    assert (result.exit_code, result.stderr) == (1, "nosuch: expected a .flow file, a .py file, or module:attribute\n")


def test_module_attribute_from_the_working_directory(tmp_path):
    """`dataflow plan mypipe:flow` imports mypipe from where the user stands, like `python -m` would."""
    (tmp_path / "mypipe.py").write_text(
        'from dataflow import Flow\nflow = Flow("mine")\nflow.source("a").to("b")\nother = 1\n')
    def run(ref: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), "plan", ref, "--no-locations"], cwd=tmp_path, capture_output=True,
                              text=True, check=False)
    ok = run("mypipe:flow")
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.startswith("Pipeline mine: 1 sub-topology, default 4 partitions, at-least-once\n")
    wrong = run("mypipe:other")
    assert (wrong.returncode, wrong.stderr) == (1, "mypipe:other: 'other' is not a dataflow.Flow in module 'mypipe'\n")
    missing = run("nomodule:flow")
    assert (missing.returncode, missing.stderr) == (
        1, "nomodule:flow: cannot import module 'nomodule': No module named 'nomodule'\n")


def test_module_attribute_of_an_example():
    result = cli("plan", "examples.wordcount:flow", "--no-locations")
    assert result.exit_code == 0
    assert result.stdout == to_text(plan(load_pipeline("examples/wordcount.py").topology()), locations=False)


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: Path(e).stem)
def test_text_plan_is_identical_across_runs_and_hash_seeds(example):
    expected = to_text(plan(load_pipeline(example).topology()))
    outputs = set()
    for seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([str(BIN), "plan", example], cwd=ROOT, env=env, capture_output=True, check=True)
        outputs.add(done.stdout)
    assert outputs == {expected.encode()}
