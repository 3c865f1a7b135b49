"""Every runnable code block in README.md and docs/*.md runs as written.

New pages under docs/ are picked up by the glob. A fence's info string says what a block is:

* ``python`` -- the page's python blocks run in order in one namespace, as a reader pastes them;
* ``flow`` -- each block compiles to a plan (after the page's ``flow preamble`` blocks, unless
  it starts with ``pipeline`` or a comment);
* ``sh`` -- the block runs in bash and exits 0; ``console`` -- each ``$ command`` runs and
  prints the lines under it. Both run in a scratch directory that holds ``examples/`` and, for
  a block whose first line is ``# NAME.py`` or ``# NAME.flow``, that block as the file NAME;
  ``dataflow`` and ``.venv/bin/dataflow`` there are this checkout's CLI;
* ``text``, ``json``, ``jsonl``, ``toml``, ``ini``, ``yaml``, ``diff`` -- shown, not run.

A second word ``fragment`` (```` ```python fragment ````) marks a block that is not meant to run
as written: part of a larger program, a template, or one that needs a Kafka broker. The
``dataflow`` commands of an ``sh``/``console`` fragment still have to name real commands and
options.

A page that is one example project (``docs/testing.md``: its blocks marked ``title="PATH"`` are
the project's files, its ``sh`` blocks the commands run in it) has a test of its own, which
builds the project from the page and runs it; here its blocks are only checked to say what
they are.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
LANGUAGES = {"python", "flow", "sh", "console", "text", "json", "jsonl", "toml", "ini", "yaml", "diff"}
MARKS = {"fragment", "preamble"}
#: pages tested as a whole by a test of their own (see the module docstring)
OWN_TEST = {ROOT / "docs" / "testing.md": "tests/testing/test_testing_docs.py"}
NAMED_FILE = re.compile(r"\A# ([\w.-]+\.(?:py|flow))\n")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    marks: frozenset[str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return not self.marks & {"fragment", "preamble"} and self.page not in OWN_TEST

    @property
    def known_marks(self) -> bool:
        return all(mark in MARKS or (self.page in OWN_TEST and mark.startswith("title=")) for mark in self.marks)


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        language, *marks = match.group(1).split() or [""]
        found.append(Block(page, text.count("\n", 0, match.start()) + 1, language, frozenset(marks), match.group(2)))
    return found


ALL = [block for page in PAGES for block in blocks(page)]


def of(language: str, runnable: bool | None = True) -> list[Block]:
    return [b for b in ALL if b.language == language and (runnable is None or b.runs == runnable)]


def ids(items: list[Block]) -> list[str]:
    return [b.where for b in items]


def test_the_pages_have_blocks_of_every_runnable_kind() -> None:
    assert {b.language for b in ALL if b.runs} >= {"python", "flow", "sh", "console"}


@pytest.mark.parametrize("block", ALL, ids=ids(ALL))
def test_every_block_says_what_it_is(block: Block) -> None:
    assert block.language in LANGUAGES, f"{block.where}: a fence needs one of {sorted(LANGUAGES)}"
    assert block.known_marks, f"{block.where}: unknown marks {sorted(block.marks - MARKS)}"


# --------------------------------------------------------------------------- python

PYTHON_PAGES = sorted({b.page for b in of("python")})


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[str(p.relative_to(ROOT)) for p in PYTHON_PAGES])
@pytest.mark.usefixtures("examples_importable")
def test_the_python_blocks_of_a_page_run_in_order(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # what a block writes (data directories) lands here
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")  # Record classes need a real module
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for block in of("python"):
        if block.page == page:
            with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
                exec(compile(block.body, block.where, "exec"), module.__dict__)  # noqa: S102 - our own docs


# --------------------------------------------------------------------------- flow

FLOWS = of("flow")


@pytest.mark.parametrize("block", FLOWS, ids=ids(FLOWS))
@pytest.mark.usefixtures("examples_importable")  # the agents that examples call are examples/storefront/
def test_every_flow_block_plans(block: Block) -> None:
    from dataflow.lang import parse_flow
    from dataflow.planner import plan

    text = block.body
    if not text.lstrip().startswith(("pipeline", "#")):
        text = "".join(b.body for b in ALL if b.page == block.page and "preamble" in b.marks) + text
    plan(parse_flow(text, f"{block.where}.flow").topology())  # raises on any error


# --------------------------------------------------------------------------- sh and console


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A directory that looks like a checkout after `python3 dev.py demo`: examples/, and the
    `dataflow` command both on PATH and in .venv/bin."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, target in (("dataflow", f'"{sys.executable}" -m dataflow'), ("python", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT),
               COLUMNS="100", NO_COLOR="1")
    env.pop("DATAFLOW_BROKER", None)
    yield tmp_path, env


def write_named_files(page: Path, where: Path) -> None:
    """The page's blocks that start with `# NAME.py` / `# NAME.flow`, as those files."""
    for block in blocks(page):
        named = NAMED_FILE.match(block.body)
        if named and block.language in ("python", "flow"):
            (where / named.group(1)).write_text(block.body, encoding="utf-8")


SHELLS = of("sh")


@pytest.mark.slow
@pytest.mark.parametrize("block", SHELLS, ids=ids(SHELLS))
def test_every_shell_block_runs(block: Block, scratch: tuple[Path, dict[str, str]]) -> None:
    where, env = scratch
    write_named_files(block.page, where)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.body], cwd=where, env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stdout}{done.stderr}"


def console_steps(body: str) -> list[tuple[str, list[str]]]:
    """(command, the lines it prints) for each `$ ` prompt of a console block."""
    steps: list[tuple[str, list[str]]] = []
    lines = body.splitlines()
    while lines:
        line = lines.pop(0)
        assert line.startswith("$ "), f"a console block alternates `$ command` and its output: {line!r}"
        command = line[2:]
        while command.endswith("\\"):
            command = command[:-1] + lines.pop(0).strip()
        output = []
        while lines and not lines[0].startswith("$ "):
            output.append(lines.pop(0))
        steps.append((command, output))
    return steps


def normalized(lines: list[str]) -> list[str]:
    """Wall-clock numbers differ between runs: stamps of records without an event time, throughput,
    and how many commits the commit interval (1 s) allowed."""
    out = []
    for line in lines:
        line = re.sub(r'"timestamp":\d+', '"timestamp":T', line)
        line = re.sub(r"^  commits: \d+$", "  commits: N", line)
        out.append(re.sub(r"^processed (\d+) messages in [\d.]+s \(\d+/s\)$", r"processed \1 messages in Ss (N/s)", line))
    return out


# Blocks that show what dataflow should print and does not yet. Strict: when the fix lands, the
# block passes, the test fails, and the entry must go.
KNOWN_BUGS = {  # (page, the block's first command): why
}


def known_bug(block: Block) -> list[pytest.MarkDecorator]:
    for (page, command), why in KNOWN_BUGS.items():
        if block.where.startswith(f"{page}:") and block.body.startswith(f"$ {command}"):
            return [pytest.mark.xfail(strict=True, reason=why)]
    return []


CONSOLES = [pytest.param(b, id=b.where, marks=known_bug(b)) for b in of("console")]


@pytest.mark.slow
@pytest.mark.parametrize("block", CONSOLES)
def test_every_console_block_prints_what_it_shows(block: Block, scratch: tuple[Path, dict[str, str]]) -> None:
    where, env = scratch
    write_named_files(block.page, where)
    for command, expected in console_steps(block.body):
        done = subprocess.run(["bash", "-c", command], cwd=where, env=env, capture_output=True, text=True, check=False)
        printed = (done.stdout + done.stderr).splitlines()  # the pages show records, then the summary
        assert normalized(printed) == normalized(expected), f"{block.where}: $ {command}"


# --------------------------------------------------------------------------- every documented command


def dataflow_commands(block: Block) -> list[list[str]]:
    """The arguments of each `dataflow` command in a shell or console block."""
    text = block.body
    if block.language == "console":
        text = "\n".join(command for command, _ in console_steps(text))
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        for part in line.split("|"):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value before the command
                words.pop(0)
            if words and words[0] in ("dataflow", ".venv/bin/dataflow"):
                commands.append(words[1:])
    return commands


DOCUMENTED_COMMANDS = [(b, args) for b in ALL if b.language in ("sh", "console") for args in dataflow_commands(b)]


@pytest.mark.parametrize(("block", "args"), DOCUMENTED_COMMANDS,
                         ids=[f"{b.where}:{' '.join(a[:1])}" for b, a in DOCUMENTED_COMMANDS])
def test_every_documented_command_has_those_options(block: Block, args: list[str]) -> None:
    """Parsing stops at --help before anything runs, but after unknown options and commands fail."""
    from dataflow.cli import app

    result = CliRunner().invoke(app, [*args, "--help"], prog_name="dataflow")
    assert result.exit_code == 0, f"{block.where}: dataflow {shlex.join(args)}:\n{result.output}"
