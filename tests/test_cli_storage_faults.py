"""Storage faults end a command with one clear line and exit 1: a full disk, a read-only or
forbidden directory, a directory held by another process, a corrupt table store (rebuilt) and
a corrupt log (reported with its topic and partition; `dataflow repair` keeps what is readable).

Where the sandbox lets root mount file systems, the disk-full and read-only cases also run for
real on a 1 MB tmpfs and a read-only bind mount; elsewhere those tests skip and the injected
faults (the same LevelDB errors, raised at the storage boundary) still run.
"""
from __future__ import annotations

import os
import random
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import plyvel
import pytest
from typer.testing import CliRunner

import dataflow.transport.local as local_module
from dataflow.cli import app
from dataflow.transport.local import LocalLog
from tests.local_log_damage import corrupt_record

COUNTING = '''
from dataflow import Flow

flow = Flow("counting", partitions=2)
flow.source("lines", value=str).group_by("_value", name="by_line").count(name="counts").to("counts-out")
'''
HINT_FULL = ("hint: free space on that disk, or pass a --data-dir on another disk; rerunning the same command "
             "goes on from the last commit")
HINT_READ_ONLY = "hint: pass a --data-dir on a writable disk (or remount it read-write)"
HINT_LOCKED = "hint: stop it, or pass a different --data-dir (one process per data directory)"


def hint_repair(data_dir: Path) -> str:
    return (f"hint: stop every run using it, then `dataflow repair --data-dir {data_dir}` keeps the readable "
            "records and reports the lost offsets")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("counting.py").write_text(COUNTING)
    Path("in.jsonl").write_text("".join(f'"{w}"\n' for w in ["a", "b", "a", "c", "a"]))
    return tmp_path


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def run(data_dir: Path, *extra: str):
    return cli("run", "counting.py", "--data-dir", str(data_dir), "--until-idle", "-q", *extra)


def query(data_dir: Path) -> list[dict]:
    result = cli("query", "counting.py", "counts", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.stderr
    return sorted((orjson.loads(line) for line in result.stdout.splitlines()), key=lambda r: r["key"])


COUNTS = [{"key": "a", "value": {"count": 3}}, {"key": "b", "value": {"count": 1}},
          {"key": "c", "value": {"count": 1}}]


def _mount(*args: str) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def mounts() -> Iterator[list[Path]]:
    mounted: list[Path] = []
    yield mounted
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# -- disk full ------------------------------------------------------------------------------

def test_a_full_disk_is_one_line_with_a_hint(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = workdir / "data"
    assert run(data_dir, "--input", "lines=in.jsonl").exit_code == 0

    def full(batch: object) -> None:
        raise plyvel.IOError(f"IO error: {data_dir}/log/000005.log: No space left on device".encode())

    monkeypatch.setattr(LocalLog, "_write_batch", staticmethod(full))
    Path("more.jsonl").write_text('"d"\n')
    result = run(data_dir, "--input", "lines=more.jsonl")
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {data_dir}/log: the disk is full (No space left on device); "
                             f"{HINT_FULL}\n")


def test_a_really_full_disk_is_one_line_with_a_hint(workdir: Path, mounts: list[Path]) -> None:
    disk = workdir / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root in a sandbox that allows mounts)")
    mounts.append(disk)
    rng = random.Random(7)
    Path("big.jsonl").write_text("".join(
        orjson.dumps("".join(rng.choices(string.ascii_lowercase, k=200))).decode() + "\n" for _ in range(20_000)))
    result = run(disk / "d", "--input", "lines=big.jsonl")
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {disk}/d/log: the disk is full (No space left on device); "
                             f"{HINT_FULL}\n")


# -- read-only and forbidden ----------------------------------------------------------------

@pytest.mark.parametrize(("reason", "said"), [
    ("Read-only file system", f"cannot be written: the file system is read-only; {HINT_READ_ONLY}"),
    ("Permission denied", "cannot be written: permission denied; hint: give this user write access to it, or pass "
                          "a --data-dir it can write"),
])
def test_a_read_only_data_directory_is_not_called_locked(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         reason: str, said: str) -> None:
    data_dir = workdir / "data"
    opens = []

    def refuse(path: str, **options: object) -> None:
        opens.append(path)
        raise plyvel.IOError(f"IO error: {path}/LOCK: {reason}".encode())

    monkeypatch.setattr(local_module.plyvel, "DB", refuse)
    result = run(data_dir, "--input", "lines=in.jsonl")
    assert result.exit_code == 1
    assert result.stderr == f"error: local log {data_dir}/log {said}\n"
    assert opens == [f"{data_dir}/log"]  # not retried: waiting does not make a disk writable


def test_a_really_read_only_data_directory(workdir: Path, mounts: list[Path]) -> None:
    data_dir = workdir / "data"
    assert run(data_dir, "--input", "lines=in.jsonl").exit_code == 0
    if not (_mount("--bind", str(data_dir), str(data_dir))):
        pytest.skip("cannot bind-mount here (needs root in a sandbox that allows mounts)")
    mounts.append(data_dir)
    assert _mount("-o", "remount,ro,bind", str(data_dir))
    result = run(data_dir, "--input", "lines=in.jsonl")
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {data_dir}/log cannot be written: the file system is read-only; "
                             f"{HINT_READ_ONLY}\n")


# -- held by another process ----------------------------------------------------------------

HOLD = ("import asyncio, sys; from dataflow.transport.local import LocalTransport; "
        "t = LocalTransport(sys.argv[1]); asyncio.run(t.start()); print('open', flush=True); sys.stdin.read()")


def test_a_log_held_by_another_process_names_it(workdir: Path) -> None:
    data_dir = workdir / "data"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(data_dir)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        result = run(data_dir, "--input", "lines=in.jsonl")
    finally:
        holder.communicate("")
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {data_dir}/log is in use by process {holder.pid} "
                             f"({sys.executable} -c {HOLD} {data_dir}); {HINT_LOCKED}\n")
    assert run(data_dir, "--input", "lines=in.jsonl").exit_code == 0  # the holder is gone: its record is stale


# -- corrupt state --------------------------------------------------------------------------

def test_a_corrupt_table_store_is_rebuilt_from_its_changelog_and_said_once(workdir: Path) -> None:
    data_dir = workdir / "data"
    assert run(data_dir, "--input", "lines=in.jsonl").exit_code == 0
    damaged = sorted((data_dir / "state" / "counts").iterdir())
    for store in damaged:
        (store / "CURRENT").write_text("MANIFEST-999999\n")
    result = cli("run", "counting.py", "--data-dir", str(data_dir), "--until-idle")
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: state store {store} is corrupt: CURRENT points to a non-existent file: NotFound: "
        f"{store}/MANIFEST-999999: No such file or directory; rebuilding it from its changelog"
        for store in damaged]
    assert "  state restored from changelogs: 3 records" in result.stderr.splitlines()
    assert query(data_dir) == COUNTS
    second = cli("run", "counting.py", "--data-dir", str(data_dir), "--until-idle")
    assert "warning:" not in second.stderr  # rebuilt once, fine since


# -- corrupt log ----------------------------------------------------------------------------

def test_a_corrupt_log_names_the_partition_and_repair_keeps_the_rest(workdir: Path) -> None:
    data_dir = workdir / "data"
    cli("topics", "create", "orders", "--data-dir", str(data_dir))
    corrupt_record(data_dir, "orders", 0, offset=7, count=20)

    result = cli("tail", "orders", "--from-beginning", "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {data_dir}/log (topic orders partition 0, reading from offset 0) "
                             f"is corrupt: block checksum mismatch; {hint_repair(data_dir)}\n")

    check = cli("repair", "--check", "--data-dir", str(data_dir))
    assert check.exit_code == 1
    assert check.stderr == (f"error: local log {data_dir}/log is corrupt (block checksum mismatch); hint: stop every "
                            f"run using it, then `dataflow repair --data-dir {data_dir}`\n")

    repaired = cli("repair", "--data-dir", str(data_dir))
    assert repaired.exit_code == 0, repaired.stderr
    assert repaired.stdout.splitlines() == [
        f"local log {data_dir}/log was corrupt (block checksum mismatch); repaired: 19 records kept",
        "  orders partition 0: lost offset 7 (1 record; no consumer group has committed on this partition)",
        f"  the damaged files are kept in {data_dir}/log/lost",
    ]
    tail = cli("tail", "orders", "--from-beginning", "--data-dir", str(data_dir))
    assert tail.exit_code == 0
    assert [orjson.loads(line)["offset"] for line in tail.stdout.splitlines()] == [*range(7), *range(8, 20)]
    again = cli("repair", "--data-dir", str(data_dir))
    assert again.stdout == f"local log {data_dir}/log: no corruption found (19 records readable); nothing to repair\n"


def test_a_run_over_a_corrupt_log_stops_with_one_line_and_resumes_after_repair(workdir: Path) -> None:
    data_dir = workdir / "data"
    assert run(data_dir, "--input", "lines=in.jsonl").exit_code == 0  # lines[0] offsets 0-4, read and committed
    corrupt_record(data_dir, "lines", 1, offset=3, count=10)  # lines[1], not read yet
    result = run(data_dir)
    assert result.exit_code == 1
    assert result.stderr == (f"error: local log {data_dir}/log (topic lines partition 1, reading from offset 0) "
                             f"is corrupt: block checksum mismatch; {hint_repair(data_dir)}\n")
    repaired = cli("repair", "--data-dir", str(data_dir))
    assert repaired.stdout.splitlines()[1] == ("  lines partition 1: lost offset 3 (1 record; no consumer group "
                                               "has committed on this partition)")
    assert run(data_dir).exit_code == 0
    assert sum(row["value"]["count"] for row in query(data_dir)) == 5 + 9
