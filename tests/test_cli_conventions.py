"""CLI conventions: --version, python -m dataflow, case-insensitive choices, fmt --check
diffs, exit 130 on Ctrl-C, and clean errors for unreadable input and bad data directories."""
from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow import __version__
from dataflow.cli import app

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_version_flag_prints_the_package_version():
    result = invoke("--version")
    assert (result.exit_code, result.output) == (0, f"dataflow {__version__}\n")


def test_python_dash_m_dataflow_is_the_command():
    out = subprocess.run([sys.executable, "-m", "dataflow", "--version"], capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, f"dataflow {__version__}\n", "")


def test_format_choice_is_case_insensitive():
    lower = invoke("plan", str(ROOT / "examples" / "fraud.flow"), "--format", "json")
    upper = invoke("plan", str(ROOT / "examples" / "fraud.flow"), "--format", "JSON")
    assert upper.exit_code == 0
    assert upper.output == lower.output


def test_fmt_check_prints_a_unified_diff(tmp_path):
    path = tmp_path / "x.flow"
    path.write_text("pipeline  x\ntopic a\na | to stdout\n")
    result = invoke("fmt", "--check", str(path))
    assert result.exit_code == 1
    assert result.stdout == (f"--- {path} (as written)\n+++ {path} (formatted)\n@@ -1,3 +1,3 @@\n"
                             "-pipeline  x\n+pipeline x\n topic a\n a | to stdout\n")
    assert result.stderr == f"{path}: not formatted\n"


def test_fmt_check_of_a_formatted_file_is_silent(tmp_path):
    path = tmp_path / "x.flow"
    path.write_text("pipeline x\ntopic a\na | to stdout\n")
    result = invoke("fmt", "--check", str(path))
    assert (result.exit_code, result.output) == (0, "")


def test_a_flow_file_that_is_not_utf8_gets_a_located_error_not_a_traceback(tmp_path):
    path = tmp_path / "bad.flow"
    path.write_bytes(b"pipeline x\xff\n")
    result = invoke("check", str(path))
    assert result.exit_code == 1
    assert result.stderr == (f"{path}:1:11: error: this file is not UTF-8 text; save it as UTF-8\n"
                             "pipeline x\ufffd\n          ^\n1 error\n")
    fmt = invoke("fmt", str(path))
    assert (fmt.exit_code, fmt.stderr) == (1, f"{path}: error: not UTF-8 text (byte 10); .flow files are UTF-8\n")


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    result = invoke("run", str(ROOT / "examples" / "fraud.flow"), "--data-dir", str(afile), "--until-idle", "-q")
    assert (result.exit_code, result.stderr) == (
        1, f"error: --data-dir {afile} is a file; give a directory (it is created if missing)\n")


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path):
    result = invoke("run", str(ROOT / "examples" / "fraud.flow"), "--data-dir", "/proc/nope", "--until-idle", "-q")
    assert (result.exit_code, result.stderr) == (1, "error: /proc/nope: No such file or directory\n")


def test_ctrl_c_stops_a_run_cleanly_with_exit_status_130(tmp_path):
    # Three large withdrawals in a minute raise an alert: once it is printed, the run is
    # consuming (no sleep: the alert is the condition), and then it is interrupted.
    now = int(time.time() * 1000)
    line = '{"account_id": "a", "amount": 5000.0, "country": "NO", "ts": %d}\n'
    proc = subprocess.Popen([sys.executable, "-m", "dataflow", "run", str(ROOT / "examples" / "fraud.flow"),
                             "--data-dir", str(tmp_path / "d"), "-q", "-i", "withdrawals=-", "-o", "alerts=-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("".join(line % (now + i) for i in range(3)).encode())
        proc.stdin.close()  # stdin input is read to its end before it is sent; the run goes on after
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "no alert within 60 s"
        assert b'"topic":"alerts"' in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        proc.kill()
    assert (proc.returncode, err) == (130, b"")


def test_check_takes_several_files_and_reports_each(tmp_path):
    bad = tmp_path / "bad.flow"
    bad.write_text("pipeline b\nstream s = nowhere | to stdout\n")
    fraud, orders = str(ROOT / "examples" / "fraud.flow"), str(ROOT / "examples" / "orders.py")
    result = invoke("check", fraud, str(bad), orders)
    assert result.exit_code == 1
    assert result.stdout == f"{fraud}: ok\n{orders}: ok\n"
    assert result.stderr.startswith(f"{bad}:2:12: error: ")
    assert invoke("check", fraud, orders).exit_code == 0


@pytest.mark.parametrize("name", ["passwd", "data.jsonl"])
def test_check_refuses_to_run_files_that_are_not_pipelines(tmp_path, name):
    path = tmp_path / name
    marker = tmp_path / "ran"
    path.write_text(f"open({str(marker)!r}, 'w').close()\n")  # would leave a mark if run as Python
    result = invoke("check", str(path))
    assert (result.exit_code, result.stderr) == (
        1, f"{path}: not a pipeline file; expected a .flow file, a .py file, or module:attribute\n")
    assert not marker.exists()


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    stack = [("", group)]
    while stack:
        prefix, command = stack.pop()
        for name, sub in getattr(command, "commands", {}).items():
            stack.append((f"{prefix}{name} ", sub))
        if not getattr(command, "commands", None):
            yield prefix.strip(), command


def test_each_short_flag_means_one_thing_in_every_command():
    meaning: dict[str, set[str]] = {}
    for _, command in _commands():
        for param in command.params:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts + param.secondary_opts if len(o) == 2):
                meaning.setdefault(short, set()).update(longs)
    assert {short: longs for short, longs in meaning.items() if len(longs) > 1} == {}


def test_every_command_with_a_broker_option_has_dash_b_and_reads_the_environment():
    with_broker = {name: p for name, c in _commands() for p in c.params if "--broker" in p.opts}
    assert sorted(with_broker) == ["ask", "query", "run", "send", "tail", "topics create", "topics describe",
                                   "topics list"]
    assert {name for name, p in with_broker.items() if "-b" not in p.opts} == set()


def test_run_takes_its_broker_from_dataflow_broker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATAFLOW_BROKER", "memory://")
    (tmp_path / "in.jsonl").write_text('{"account_id": "a", "amount": 5000.0, "country": "NO", "ts": 0}\n')
    result = invoke("run", str(ROOT / "examples" / "fraud.flow"), "-i", "withdrawals=in.jsonl", "--until-idle", "-q")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / ".dataflow" / "fraud" / "log").exists()  # memory://: no local log was made
