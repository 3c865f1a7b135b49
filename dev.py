#!/usr/bin/env python3
"""Set up and run dataflow from a fresh clone with nothing but Python 3.11+.

    python3 dev.py demo     # install into .venv, run the flagship example end to end, print its output
    python3 dev.py test     # install into .venv (with test extras), run the whole suite, then the wheel smoke
    python3 dev.py smoke    # only the wheel smoke: build a wheel, install it into a fresh venv
                            # for each other Python 3.11+ found, run the demo there

Both commands are idempotent: the virtual environment is created once and
re-synced only when pyproject.toml changes.

`dev.py test` with pytest arguments (`python3 dev.py test tests/lang -x`) runs only
pytest. DATAFLOW_SMOKE_PYTHONS="3.12 3.13" (CI sets it) makes the smoke fail when
one of those Pythons cannot be found, instead of skipping it.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
FLAGSHIP = Path("examples") / "fraud.flow"  # relative: commands run in ROOT, plans show short paths
DEMO_INPUT = Path("examples") / "data" / "withdrawals.jsonl"
SUPPORTED = ("3.11", "3.12", "3.13")  # keep in step with pyproject's classifiers


def run(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None, cwd: Path = ROOT) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=cwd, check=check, env=env).returncode


# --------------------------------------------------------------------------- system packages


def system_install(what: str, apt: list[str], dnf: list[str], brew: list[str]) -> None:
    """Install system packages that pip cannot, or exit with one line saying what to install."""
    hint = f"install {' '.join(apt)} (apt-get) / {' '.join(dnf)} (dnf) / {' '.join(brew)} (brew)"
    root = os.name != "nt" and os.geteuid() == 0
    sudo: list[str] = [] if root else (["sudo", "-n"] if shutil.which("sudo") else [])
    if shutil.which("brew") and not shutil.which("apt-get"):
        subprocess.run(["brew", "install", *brew], check=True)
        return
    if not root and not sudo:
        sys.exit(f"{what} is missing and cannot be installed without root: {hint}")
    if shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *apt], check=True, env=env)
    elif shutil.which("dnf"):
        subprocess.run([*sudo, "dnf", "install", "-y", *dnf], check=True)
    else:
        sys.exit(f"{what} is missing; {hint}")


def ensure_graphviz() -> None:
    """The svg renderer needs Graphviz's `dot`, which pip cannot install."""
    if not shutil.which("dot"):
        system_install("graphviz's `dot`", apt=["graphviz"], dnf=["graphviz"], brew=["graphviz"])


def leveldb_headers() -> bool:
    prefixes = ["/usr", "/usr/local", "/opt/homebrew", *os.environ.get("CPLUS_INCLUDE_PATH", "").split(os.pathsep)]
    return any(Path(p, "include", "leveldb", "db.h").exists() or Path(p, "leveldb", "db.h").exists()
               for p in prefixes if p)


def ensure_plyvel_buildable(python: str | Path) -> None:
    """plyvel (the LevelDB binding) ships Linux wheels only up to Python 3.12; elsewhere pip
    compiles it, which needs LevelDB's headers and a C++ compiler."""
    version = subprocess.run([str(python), "-c", "import sys, platform; print(sys.version_info >= (3, 13) "
                              "or platform.system() != 'Linux')"], capture_output=True, text=True, check=True)
    if version.stdout.strip() == "True" and not (leveldb_headers() and shutil.which("c++")):
        system_install("LevelDB's headers (leveldb/db.h), which building plyvel needs,",
                       apt=["libleveldb-dev", "g++"], dnf=["leveldb-devel", "gcc-c++"], brew=["leveldb"])


def build_env() -> dict[str, str]:
    """Homebrew's LevelDB is outside the compiler's default search paths."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")  # setuptools' notices are for package authors
    if Path("/opt/homebrew/include/leveldb").exists():
        env["CPLUS_INCLUDE_PATH"] = "/opt/homebrew/include"
        env["LIBRARY_PATH"] = "/opt/homebrew/lib"
    return env


# --------------------------------------------------------------------------- the project's venv


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"dataflow needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        run(sys.executable, "-m", "venv", VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    ensure_plyvel_buildable(PY)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip", env=build_env())
    target = f".[{extras}]" if extras else "."
    run(PY, "-m", "pip", "install", "--quiet", "-e", target, env=build_env())
    stamp.write_text(want)


def demo(bin_dir: Path, cwd: Path, data: Path, extra: list[str] | None = None,
         capture: bool = False) -> tuple[int, str]:
    """Run the flagship pipeline over the sample input, then query its table; (exit code, stdout)."""
    flagship, sample = (ROOT / FLAGSHIP, ROOT / DEMO_INPUT) if cwd != ROOT else (FLAGSHIP, DEMO_INPUT)
    shutil.rmtree(cwd / data, ignore_errors=True)
    steps = [
        [bin_dir / "dataflow", "run", flagship, "--data-dir", data, "--input", f"withdrawals={sample}",
         "--output", "alerts=-", "--until-idle", *(extra or [])],
        [bin_dir / "dataflow", "query", flagship, "per_account", "--data-dir", data],
    ]
    out = []
    for number, cmd in enumerate(steps):
        if number == 1 and not capture:
            print("\nThe per-account table after the run (dataflow query):", flush=True)
        print("+", " ".join(str(c) for c in cmd), flush=True)
        done = subprocess.run([str(c) for c in cmd], cwd=cwd, text=True, check=False,
                              stdout=subprocess.PIPE if capture else None)
        out.append(done.stdout or "")
        if done.returncode:
            return done.returncode, "".join(out)
    return 0, "".join(out)


# --------------------------------------------------------------------------- the wheel smoke


def find_pythons() -> dict[str, Path]:
    """Supported Pythons on this machine other than the running one: {"3.12": path, ...}."""
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    found: dict[str, Path] = {}
    for version in SUPPORTED:
        if version == here:
            continue
        pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
        candidates = [*sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python3"), reverse=True),
                      shutil.which(f"python{version}") or ""]
        for candidate in filter(None, candidates):
            probe = subprocess.run([candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, check=False)
            if probe.returncode == 0 and probe.stdout.strip() == version:  # a pyenv shim may not resolve
                found[version] = Path(candidate)
                break
    return found


def smoke(extras: str = "") -> int:
    """A wheel built from the clone installs into a fresh venv and runs the demo, on every other
    supported Python found, and prints what the demo prints on this one (in .venv, as set up
    with `extras`)."""
    pythons = find_pythons()
    required = os.environ.get("DATAFLOW_SMOKE_PYTHONS", "").split()
    missing = [v for v in required if v not in pythons]
    if missing:
        print(f"smoke: error: Python {', '.join(missing)} not found (DATAFLOW_SMOKE_PYTHONS={' '.join(required)}); "
              "looked in $PYENV_ROOT/versions and on PATH", file=sys.stderr)
        return 1
    if not pythons:
        print("smoke: no other Python 3.11+ found; nothing to do")
        return 0
    ensure_venv(extras)
    with tempfile.TemporaryDirectory(prefix="dataflow-smoke-") as tmp:
        work = Path(tmp)
        # From a clean copy of the clone: setuptools reuses build/ and *.egg-info, which would
        # hide a file missing from the package (uncommitted edits are kept).
        source = work / "source"
        shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", ".dataflow", "__pycache__", ".pytest_cache", ".hypothesis"))
        run(PY, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "dist", source, env=build_env())
        wheel = next((work / "dist").glob("*.whl"))
        code, expected = demo(BIN, work, Path("data-reference"), ["--quiet"], capture=True)
        if code:
            print(f"smoke: error: the demo failed on this Python ({sys.version.split()[0]})", file=sys.stderr)
            return code
        failed = []
        for version, python in pythons.items():
            print(f"\nsmoke: Python {version} ({python}): {wheel.name} into a fresh venv", flush=True)
            venv = work / f"venv-{version}"
            bin_dir = venv / BIN.name
            ensure_plyvel_buildable(python)
            # The project venv's pip installs into the fresh one: seeding a pip into each venv, and
            # byte-compiling every dependency, took most of the smoke's time.
            run(python, "-m", "venv", "--without-pip", venv)
            if run(PY, "-m", "pip", "--python", bin_dir / "python", "install", "--quiet", "--no-compile", wheel,
                   env=build_env(), check=False):
                failed.append(f"{version}: installing the wheel failed")
                continue
            where = subprocess.run([bin_dir / "python", "-c", "import dataflow; print(dataflow.__file__)"],
                                   cwd=work, capture_output=True, text=True, check=False).stdout.strip()
            if not where.startswith(str(venv)):  # the wheel's copy, not the clone's
                failed.append(f"{version}: dataflow imports from {where or 'nowhere'}, not from the venv")
                continue
            code, output = demo(bin_dir, work, Path(f"data-{version}"), ["--quiet"], capture=True)
            if code or output != expected:
                failed.append(f"{version}: the demo " + (f"exited {code}" if code else "printed something else")
                              + f":\n{output}--- expected (Python {sys.version.split()[0]}):\n{expected}")
            else:
                print(f"smoke: Python {version}: the demo printed the same {len(output.splitlines())} lines")
    for failure in failed:
        print(f"smoke: error: Python {failure}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command == "demo":
        ensure_venv("")
        # A fresh data directory each time: the demo shows one run over the sample input,
        # not state accumulated by earlier demos.
        return demo(BIN, ROOT, Path(".dataflow") / "demo", argv[1:])[0]
    if command == "test":
        ensure_venv("test")
        ensure_graphviz()
        code = run(PY, "-m", "pytest", *argv[1:], check=False)
        if argv[1:]:  # a chosen part of the suite: pytest only
            return code
        smoked = smoke("test")  # also after a failing suite: whether the wheel works is news either way
        return code or smoked
    if command == "smoke":
        return smoke()
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
