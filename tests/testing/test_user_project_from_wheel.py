"""Done when: a project outside the repository, with dataflow installed from a wheel into an
environment of its own, tests its pipelines with the `pipeline_driver` fixture and the plan
snapshots docs/testing.md shows (taken elsewhere: they hold because they are portable).

The project is the one on the page, and the commands are the page's (so this also runs the
page's project blocks; tests/testing/test_testing_docs.py checks the rest of the page).

The environment is a fresh venv holding the wheel alone; dataflow's dependencies and the
test tools come from this test's environment through a path file, so nothing is downloaded
but the build backend the wheel build needs (once: pip caches it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.testing.doc_project import REPO, commands, write_project

pytestmark = pytest.mark.slow

#: What the copy of the tree leaves out: not source, and heavy.
IGNORED = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.egg-info", "build", "dist",
                                 ".pytest_cache", ".hypothesis", ".dataflow", ".mypy_cache")


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            check=False, timeout=240)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_project_of_ones_own_tests_its_pipelines_with_dataflow_installed_from_a_wheel(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Build from a copy, so the build's by-products never land in the working tree.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=IGNORED)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
         tmp_path / "wheels", source], tmp_path, env)
    [wheel] = (tmp_path / "wheels").glob("*.whl")  # whatever the distribution is called

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        tmp_path, env)
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path,
                    env).strip())
    # After the wheel, so that pip saw an empty environment. These directories come after the
    # venv's own: the installed dataflow is found first, and a development checkout never is.
    (site / "test_environment.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))) + "\n")

    project = tmp_path / "shop"
    snapshots = {name: text for name, text in write_project(project).items() if name.endswith(".ambr")}
    where = run([python, "-c", "import dataflow, dataflow.pytest_plugin; print(dataflow.__file__)"], project, env)
    assert Path(where.strip()).is_relative_to(site)
    # The page's commands, in order: `pytest --snapshot-update`, then `pytest`.
    for command in commands(str(python)):
        # Hypothesis comes with this test's environment, not with the user's: its plugin alone
        # would take seconds to import.
        output = run([*command, "-p", "no:hypothesispytest"], project, env)
        assert "10 passed" in output
        # Taken in another directory, the page's snapshots are what this one writes: they are portable.
        assert {name: (project / name).read_text() for name in snapshots} == snapshots
    assert output.endswith("2 snapshots passed.\n" + output.splitlines()[-1] + "\n")
