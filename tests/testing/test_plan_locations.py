"""Plan locations are relative to the project root (the nearest directory with pyproject.toml
or .git above the file, else the working directory), so plan snapshots are portable."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.ir.location import SourceLocation
from dataflow.planner.render import location_text
from dataflow.testing import compile_pipeline
from dataflow.planner.render import to_text

FLOW = "pipeline tiny\ntopic a\ntopic b\na | filter _value > 1 | to topic b\n"
PY = "from dataflow import Flow, col\n\nflow = Flow('tiny')\nflow.source('a').filter(col('_value') > 1).to('b')\n"


def locations(text: str) -> list[str]:
    return [line.split("  @ ")[1] for line in text.splitlines() if "  @ " in line]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "pipelines").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'shop'\n")
    (root / "pipelines" / "tiny.flow").write_text(FLOW)
    (root / "pipelines" / "tiny.py").write_text(PY)
    (tmp_path / "elsewhere").mkdir()
    return root


@pytest.mark.parametrize("name", ["tiny.flow", "tiny.py"])
def test_a_plan_reads_the_same_from_any_directory_and_any_spelling_of_its_path(project, monkeypatch, name):
    texts = set()
    for cwd, ref in [(project, f"pipelines/{name}"), (project / "pipelines", name),
                     (project.parent / "elsewhere", str(project / "pipelines" / name)),
                     (project / "pipelines", f"../pipelines/{name}")]:
        monkeypatch.chdir(cwd)
        texts.add(to_text(compile_pipeline(ref)))
    [text] = texts
    expected = {"tiny.flow": ["pipelines/tiny.flow:2:1", "pipelines/tiny.flow:4:5", "pipelines/tiny.flow:4:25"],
                "tiny.py": ["pipelines/tiny.py:4"] * 3}
    assert locations(text) == expected[name]


def test_a_git_checkout_is_a_project_root_too(tmp_path, monkeypatch):
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert location_text(SourceLocation(str(tmp_path / "repo/deep/er/x.flow"), 2, 3)) == "deep/er/x.flow:2:3"


def test_without_a_project_locations_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "work" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    assert location_text(SourceLocation(str(tmp_path / "work/sub/x.flow"), 2, 3)) == "sub/x.flow:2:3"
    outside = str(tmp_path / "x.py")
    assert location_text(SourceLocation(outside, 7, 0)) == f"{outside}:7"  # outside both: as given
    assert location_text(SourceLocation("<stdin>", 1, 1)) == "<stdin>:1:1"


def test_dataflow_plan_prints_project_relative_locations(project, monkeypatch):
    monkeypatch.chdir(project.parent / "elsewhere")
    result = CliRunner().invoke(app, ["plan", str(project / "pipelines" / "tiny.flow")])
    assert result.exit_code == 0, result.output
    assert locations(result.stdout) == ["pipelines/tiny.flow:2:1", "pipelines/tiny.flow:4:5",
                                        "pipelines/tiny.flow:4:25"]
