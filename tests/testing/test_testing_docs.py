"""docs/testing.md: every block on the page is a file of its example project, a command run
in it, a snippet that runs, or the project's listing; the project passes its own tests."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.testing.doc_project import REPO, blocks, commands, files, listing, snippets, write_project


def test_every_block_is_a_file_a_command_a_snippet_or_the_listing():
    kinds = [("file" if b.title else b.lang) for b in blocks()]
    assert set(kinds) == {"file", "sh", "python", "text"}
    assert kinds.count("text") == 1  # the listing


def test_the_listing_shows_the_files_of_the_project():
    assert listing() == set(files())


def test_the_snippets_run():
    for snippet in snippets():
        exec(compile(snippet, "docs/testing.md", "exec"), {"__name__": "docs_testing"})


def test_the_project_passes_its_tests_and_its_snapshots_are_what_pytest_writes(tmp_path):
    written = write_project(tmp_path)
    snapshots = {name: text for name, text in written.items() if name.endswith(".ambr")}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    for command in commands():
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "10 passed" in result.stdout
        # An update writes nothing new: the page shows the snapshots exactly as pytest writes them.
        assert {name: (tmp_path / name).read_text() for name in snapshots} == snapshots
    assert [c[5:] for c in commands()] == [["--snapshot-update"], []]
