"""`--help` reads like a Unix tool's (`PIPELINE`, `TOPIC=FILE`, `N`), and shell completion works."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow.cli import app

ROOT = Path(__file__).resolve().parents[1]
USAGE = {
    "plan": "dataflow plan [OPTIONS] PIPELINE",
    "check": "dataflow check [OPTIONS] PIPELINE...",
    "fmt": "dataflow fmt [OPTIONS] FILE",
    "run": "dataflow run [OPTIONS] PIPELINE",
    "query": "dataflow query [OPTIONS] PIPELINE TABLE [KEY]",
    "ask": "dataflow ask [OPTIONS] PIPELINE AGENT",
    "send": "dataflow send [OPTIONS] TOPIC [FILE]",
    "tail": "dataflow tail [OPTIONS] TOPIC",
    "topics create": "dataflow topics create [OPTIONS] TOPIC...",
    "topics list": "dataflow topics list [OPTIONS]",
    "topics describe": "dataflow topics describe [OPTIONS] TOPIC...",
}
# typer's defaults that the help must not show: `{pipeline}`, `<str>`, `<list[str]>`, `<int range>`, `<path>`
TYPE_MARKERS = re.compile(r"\{[a-z_]+\}|<(str|int|float|path|list\[\w+\]|\w+ range|bool)>")


def help_of(command: str) -> str:
    result = CliRunner().invoke(app, [*command.split(), "--help"], prog_name="dataflow")
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", sorted(USAGE))
def test_usage_lines_name_arguments_in_capitals(command):
    text = help_of(command)
    assert text.splitlines()[0] == f"Usage: {USAGE[command]}"
    assert TYPE_MARKERS.search(text) is None, TYPE_MARKERS.search(text)


def test_options_show_what_they_take():
    rows = {line.strip().split("  ")[0] for command in USAGE for line in help_of(command).splitlines()
            if line.startswith("  -")}
    assert {"-i, --input TOPIC=FILE", "-o, --output TOPIC=FILE", "--set KEY=VALUE", "-b, --broker URL",
            "--data-dir DIR", "-n, --lines N", "--partitions N", "--value JSON", "--timeout SECONDS",
            "-k, --key FIELD", "-p, --pipeline PIPELINE", "--log-level LEVEL", "--log-format FORMAT",
            "-f, --format FORMAT", "-o, --output FILE", "-q, --quiet", "-F, --follow"} <= rows


def test_python_dash_m_dataflow_calls_itself_dataflow():
    out = subprocess.run([sys.executable, "-m", "dataflow", "plan", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.splitlines()[0] == "Usage: dataflow plan [OPTIONS] PIPELINE"


def test_typer_has_an_upper_bound():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (typer,) = [d for d in dependencies if d.startswith("typer")]
    assert re.fullmatch(r"typer>=[\d.]+,<[\d.]+", typer.replace(" ", ""))


def _complete(words: str, shell: str = "bash") -> list[str]:
    """What the shell would offer after `words`, through typer's completion protocol."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_DATAFLOW_COMPLETE": f"complete_{shell}",
           "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))}
    out = subprocess.run([sys.executable, "-m", "dataflow"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_show_completion_prints_a_bash_script():
    result = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="dataflow")
    assert result.exit_code == 0
    assert "_DATAFLOW_COMPLETE=complete_bash $1" in result.stdout
    assert result.stdout.rstrip().endswith("complete -o default -F _dataflow_completion dataflow")
    assert "--install-completion" in help_of("")


def test_completion_offers_commands_options_and_choices():
    assert _complete("dataflow pl") == ["plan"]
    assert _complete("dataflow topics ") == ["create", "list", "describe"]
    assert _complete("dataflow run --log-l") == ["--log-level"]
    assert _complete("dataflow run p.flow --log-level ") == ["debug", "info", "warning", "error"]
    assert _complete("dataflow tail t --log-format j") == ["json"]
