#!/usr/bin/env python3
"""Set up and run dataflow from a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo     # install into .venv, run the flagship example end to end, print its output
    python3 dev.py test     # install into .venv (with test extras), run the whole suite

Both commands are idempotent: the virtual environment is created once and
re-synced only when pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
FLAGSHIP = Path("examples") / "fraud.flow"  # relative: commands run in ROOT, plans show short paths
DEMO_INPUT = Path("examples") / "data" / "withdrawals.jsonl"


def run(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check, env=env).returncode


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dataflow needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    # setuptools' editable-install notices are for package authors, not for someone trying dataflow.
    quiet = dict(os.environ, PYTHONWARNINGS="ignore")
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip", env=quiet)
    target = f".[{extras}]" if extras else "."
    run(PY, "-m", "pip", "install", "--quiet", "-e", target, env=quiet)
    stamp.write_text(want)


def ensure_graphviz() -> None:
    """The svg renderer needs Graphviz's `dot`, which pip cannot install."""
    if shutil.which("dot"):
        return
    sudo: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    if os.geteuid() != 0 and not sudo:
        sys.exit("graphviz's `dot` is missing and cannot be installed without root: "
                 "install the `graphviz` system package (apt-get install graphviz / brew install graphviz)")
    if shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "graphviz"], check=True, env=env)
    elif shutil.which("dnf"):
        subprocess.run([*sudo, "dnf", "install", "-y", "graphviz"], check=True)
    elif shutil.which("brew"):
        subprocess.run(["brew", "install", "graphviz"], check=True)
    else:
        sys.exit("graphviz's `dot` is missing; install the `graphviz` package with your system's package manager")


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "demo":
        ensure_venv("")
        # A fresh data directory each time: the demo shows one run over the sample input,
        # not state accumulated by earlier demos.
        data = Path(".dataflow") / "demo"
        shutil.rmtree(ROOT / data, ignore_errors=True)
        code = run(BIN / "dataflow", "run", FLAGSHIP, "--data-dir", data,
                   "--input", f"withdrawals={DEMO_INPUT}", "--output", "alerts=-", "--until-idle", *argv[1:],
                   check=False)
        if code:
            return code
        print("\nThe per-account table after the run (dataflow query):", flush=True)
        return run(BIN / "dataflow", "query", FLAGSHIP, "per_account", "--data-dir", data, check=False)
    if command == "test":
        ensure_venv("test")
        ensure_graphviz()
        return run(PY, "-m", "pytest", *argv[1:], check=False)
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
