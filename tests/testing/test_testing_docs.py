"""docs/testing.md: every block on the page is a file of its example project, a command run
in it, a snippet that runs, or the project's listing. The project itself is installed and
tested, with the page's commands, by test_user_project_from_wheel.py."""
from __future__ import annotations

from tests.testing.doc_project import blocks, commands, files, listing, snippets


def test_every_block_is_a_file_a_command_a_snippet_or_the_listing():
    kinds = [("file" if b.title else b.lang) for b in blocks()]
    assert set(kinds) == {"file", "sh", "python", "text"}
    assert kinds.count("text") == 1  # the listing


def test_the_listing_shows_the_files_of_the_project():
    assert listing() == set(files())


def test_the_snippets_run():
    for snippet in snippets():
        exec(compile(snippet, "docs/testing.md", "exec"), {"__name__": "docs_testing"})


def test_the_commands_are_the_snapshot_update_then_the_tests():
    assert [command[5:] for command in commands()] == [["--snapshot-update"], []]
