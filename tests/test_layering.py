"""Data flows one way: text -> parse tree -> builder -> IR -> planner -> plan -> runtime.

A lower layer never imports a higher one (docs/architecture.md). Each top-level part of the
package may import only the parts listed for it here; a new part must be placed in the table
before it can import anything.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dataflow"

# part -> the parts it may import (besides itself). Lowest layers first.
MAY_IMPORT: dict[str, set[str]] = {
    "ir": set(),
    "state": {"ir"},
    "transport": {"ir", "state"},
    "builder": {"ir"},
    "planner": {"ir"},
    "lang": {"ir", "builder", "planner"},
    "loader": {"ir", "builder", "lang"},
    "runtime": {"ir", "planner", "state", "transport"},
    "server": {"ir", "planner", "state", "transport", "runtime"},
    "testing": {"ir", "builder", "lang", "loader", "planner", "state", "transport", "runtime"},
    "pytest_plugin": {"runtime", "testing"},
    "cli": {"ir", "builder", "lang", "loader", "planner", "state", "transport", "runtime", "server", "__version__"},
    "__main__": {"cli"},
    "__init__": {"ir", "builder", "loader", "planner", "runtime", "server", "__version__"},  # the public facade
    "__version__": set(),
}


def part_of(path: Path, package: Path = PACKAGE) -> str:
    return path.relative_to(package).parts[0].removesuffix(".py")


def imported_parts(path: Path, package_dir: Path = PACKAGE) -> set[str]:
    """The top-level parts of `dataflow` that the module at ``path`` imports."""
    module = ("dataflow",) + path.relative_to(package_dir).with_suffix("").parts
    package = module[:-1]  # the package a relative import starts from (an __init__'s own)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                targets = [base + tuple(node.module.split("."))] if node.module else [base + (a.name,) for a in node.names]
            else:
                targets = [tuple((node.module or "").split("."))]
        elif isinstance(node, ast.Import):
            targets = [tuple(a.name.split(".")) for a in node.names]
        else:
            continue
        for target in targets:
            if target[0] == "dataflow":
                found.add(target[1] if len(target) > 1 else "__init__")
    return found


def test_every_part_imports_only_lower_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = part_of(path)
        allowed = MAY_IMPORT.get(part)
        if allowed is None:
            wrong.append(f"{path.relative_to(PACKAGE.parent)}: part '{part}' is not placed in MAY_IMPORT")
            continue
        for target in sorted(imported_parts(path) - allowed - {part}):
            wrong.append(f"{path.relative_to(PACKAGE.parent)} imports dataflow.{target}, above '{part}'")
    assert wrong == []


def test_the_rule_sees_relative_absolute_and_package_imports(tmp_path):
    fake = tmp_path / "dataflow"
    (fake / "planner" / "passes").mkdir(parents=True)
    (fake / "planner" / "passes" / "bad.py").write_text(
        "from ...loader import load_agent\nfrom .. import naming\nimport dataflow.runtime.worker\nfrom dataflow import ir\n")
    (fake / "planner" / "__init__.py").write_text("from .. import lang\nfrom ..transport import local\n")
    assert imported_parts(fake / "planner" / "passes" / "bad.py", fake) == {"loader", "planner", "runtime", "__init__"}
    assert imported_parts(fake / "planner" / "__init__.py", fake) == {"lang", "transport"}
    assert part_of(fake / "planner" / "passes" / "bad.py", fake) == "planner"
