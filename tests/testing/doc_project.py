"""The example project of docs/testing.md, read from the page: its files, its commands and
its snippets, so that the suite runs exactly what the page shows."""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "testing.md"
_FENCE = re.compile(r'^```(\w*)(?: title="([^"]+)")?\n(.*?)^```$', re.S | re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    title: str | None  # the file it is, for a file of the project
    text: str


def blocks() -> list[Block]:
    return [Block(lang, title or None, text) for lang, title, text in _FENCE.findall(DOC.read_text())]


def files() -> dict[str, str]:
    """Path in the project -> content, for every block titled with a file name."""
    return {b.title: b.text for b in blocks() if b.title}


def write_project(root: Path) -> dict[str, str]:
    """Write the project's files under ``root``; returns them."""
    written = files()
    for name, text in written.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return written


def commands(python: str = sys.executable) -> list[list[str]]:
    """The shell blocks' commands, `pytest` run as ``python -m pytest`` (no cache files)."""
    out = []
    for block in blocks():
        if block.lang != "sh":
            continue
        for line in block.text.splitlines():
            words = line.split("#")[0].split()
            assert words[:1] == ["pytest"], f"docs/testing.md: a command the suite cannot run: {line!r}"
            out.append([python, "-m", "pytest", "-p", "no:cacheprovider", *words[1:]])
    return out


def snippets() -> list[str]:
    """Python blocks that are not files of the project: run as they are."""
    return [b.text for b in blocks() if b.lang == "python" and not b.title]


def listing() -> set[str]:
    """The files named by the page's tree of the project (its ``text`` block without a title)."""
    [tree] = [b.text for b in blocks() if b.lang == "text" and not b.title]
    paths, stack = set(), []
    for line in tree.splitlines()[1:]:
        name = line.lstrip("│├└─  ")
        depth = (len(line) - len(name)) // 4 - 1  # "├── " marks the first level
        del stack[depth:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        else:
            paths.add("/".join([*stack, name]))
    return paths
