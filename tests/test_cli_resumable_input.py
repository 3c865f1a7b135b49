"""`--input TOPIC=FILE` on the local log is resumable: its read position is written with its
records, so rerunning the same command after a crash goes on where the last run stopped and
the result is exactly that of one clean run. A file that changed is refused; `--reread`
produces it again.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.transport.base import TP
from dataflow.transport.local import LocalTransport

RECORDS = 6_000
KEYS = 7

PIPELINE = '''
import os
from dataflow import Flow, Record

class Item(Record):
    id: int
    key: str

def work(v):
    # A run given CRASH_TEST_HANG_AT hangs (busy) at that record, so a kill lands mid-stream
    # however fast or loaded the machine is.
    if os.environ.get("CRASH_TEST_HANG_AT") == str(v["id"]):
        while True:
            pass
    return {"id": v["id"], "double": v["id"] * 2}

flow = Flow("resume", partitions=2)
items = flow.source("src", value=Item)
items.map(work).to("sink")
items.group_by("key", name="by_key").count(name="counts")
'''
SETTINGS = ["--set", "batch_size=50", "--set", "commit_every=200"]


def write_input(path: Path) -> None:
    path.write_bytes(b"".join(orjson.dumps({"id": i, "key": f"k{i % KEYS}"}) + b"\n" for i in range(RECORDS)))


def command(pipe: Path, data: Path, big: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "dataflow.cli", "run", str(pipe), "--data-dir", str(data), "--input",
            f"src={big}", "--output", f"sink={out}", "--until-idle", "-q", *SETTINGS]


async def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def read_position(pid: int, path: Path) -> int:
    """How far process `pid` has read `path` (its open file's offset), or -1 if it has it not open."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
                        if line.startswith("pos:"):
                            return int(line.split()[1])
            except OSError:
                continue
    except OSError:
        pass
    return -1


def lines_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def kill_when(args: list[str], ready, what: str, env: dict[str, str] | None = None) -> None:
    process = await asyncio.create_subprocess_exec(*args, env={**os.environ, **(env or {})},
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: ready(process.pid) or process.returncode is not None, what)
        assert process.returncode is None, (await process.stderr.read()).decode()  # type: ignore[union-attr]
        process.send_signal(signal.SIGKILL)
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    assert process.returncode == -signal.SIGKILL


async def finish(args: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()


async def sink_and_source(data: Path) -> tuple[list[dict], int]:
    transport = LocalTransport(data)
    await transport.start()
    try:
        log = transport.log
        sink = [orjson.loads(m.value) for p in range(2) for m in await log.read(TP("sink", p), 0, 10 * RECORDS)]
        return sorted(sink, key=lambda v: v["id"]), sum(log.end_offset(TP("src", p)) for p in range(2))
    finally:
        await transport.stop()


def table(pipe: Path, data: Path) -> list[str]:
    result = CliRunner().invoke(app, ["query", str(pipe), "counts", "--data-dir", str(data)])
    assert result.exit_code == 0, result.stderr
    return sorted(result.stdout.splitlines())


async def test_three_sigkills_then_a_rerun_give_exactly_one_clean_run(tmp_path: Path) -> None:
    pipe = tmp_path / "resume_pipe.py"
    pipe.write_text(PIPELINE)
    big = tmp_path / "big.jsonl"
    write_input(big)
    size = big.stat().st_size
    data = tmp_path / "data"

    # 1: killed while the file is being produced (a third of it read)
    await kill_when(command(pipe, data, big, tmp_path / "out1.jsonl"),
                    lambda pid: read_position(pid, big) >= size // 3, "a third of the input read")
    sink, produced = await sink_and_source(data)
    print(f"after the first kill: {produced} of {RECORDS} records produced, {len(sink)} processed")
    assert produced < RECORDS and sink == []  # it was killed while producing the file
    # 2 and 3: killed while processing, each hung at a record after the last run's
    await kill_when(command(pipe, data, big, tmp_path / "out2.jsonl"),
                    lambda pid: lines_in(tmp_path / "out2.jsonl") > 0, "the second run's first output",
                    {"CRASH_TEST_HANG_AT": "2500"})
    await kill_when(command(pipe, data, big, tmp_path / "out3.jsonl"),
                    lambda pid: lines_in(tmp_path / "out3.jsonl") > 0, "the third run's first output",
                    {"CRASH_TEST_HANG_AT": "4500"})
    await finish(command(pipe, data, big, tmp_path / "out4.jsonl"))

    clean = tmp_path / "clean"
    await finish(command(pipe, clean, big, tmp_path / "clean.jsonl"))

    sink, produced = await sink_and_source(data)
    assert produced == RECORDS  # the file went into the log once
    assert [v["id"] for v in sink] == list(range(RECORDS))  # each record's result once
    assert (sink, produced) == await sink_and_source(clean)
    rows = await asyncio.to_thread(table, pipe, data)  # the CLI runs its own event loop
    assert rows == await asyncio.to_thread(table, pipe, clean)
    assert rows == sorted(
        orjson.dumps({"key": f"k{k}", "value": {"count": len(range(k, RECORDS, KEYS))}}).decode() for k in range(KEYS))


# -- changed files and --reread ----------------------------------------------------------------

COUNTING = '''
from dataflow import Flow

flow = Flow("counting", partitions=1)
flow.source("lines", value=str).group_by("_value", name="by_line").count(name="counts")
'''


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    Path("counting.py").write_text(COUNTING)
    Path("in.jsonl").write_text('"a"\n"b"\n"a"\n')
    return tmp_path


def run(*extra: str):
    return CliRunner().invoke(app, ["run", "counting.py", "--data-dir", "d", "--input", "lines=in.jsonl",
                                    "--until-idle", *extra])


def counts() -> dict[str, int]:
    result = CliRunner().invoke(app, ["query", "counting.py", "counts", "--data-dir", "d"])
    assert result.exit_code == 0, result.stderr
    return {row["key"]: row["value"]["count"] for row in map(orjson.loads, result.stdout.splitlines())}


def test_a_rerun_of_a_finished_input_produces_nothing_and_says_so(workdir: Path) -> None:
    assert run("-q").exit_code == 0
    again = run()
    assert again.exit_code == 0
    assert again.stderr.splitlines()[0] == ("warning: input in.jsonl was read to its end by an earlier run (3 lines); "
                                            "nothing new to produce (--reread produces it again)")
    assert counts() == {"a": 2, "b": 1}


def test_lines_appended_since_the_last_run_are_read_on(workdir: Path) -> None:
    assert run("-q").exit_code == 0
    with open("in.jsonl", "a") as f:
        f.write('"b"\n\n"c"\n')
    assert run("-q").exit_code == 0
    assert counts() == {"a": 2, "b": 2, "c": 1}


@pytest.mark.parametrize(("change", "said"), [
    (lambda: Path("in.jsonl").write_text('"x"\n'),
     "is shorter (4 bytes) than what an earlier run read 3 lines (12 bytes) of it"),
    (lambda: Path("in.jsonl").write_text('"b"\n"a"\n"a"\n"c"\n'),
     "changed in the part an earlier run read 3 lines (12 bytes) of it"),
    (lambda: (Path("new.jsonl").write_text('"a"\n"b"\n"a"\n'), os.replace("new.jsonl", "in.jsonl")),
     "is another file than the one an earlier run read 3 lines (12 bytes) of it"),
])
def test_a_changed_input_file_is_refused_and_reread_reads_it_again(workdir: Path, change, said: str) -> None:
    assert run("-q").exit_code == 0
    change()
    refused = run("-q")
    assert refused.exit_code == 1
    assert refused.stderr == (f"error: input file in.jsonl {said}; hint: pass --reread to produce it again from its "
                              "start, or a new --data-dir\n")
    assert counts() == {"a": 2, "b": 1}  # nothing of the changed file went in
    assert run("-q", "--reread").exit_code == 0
    again = {k: 0 for k in ("a", "b", "c", "x")}
    for line in Path("in.jsonl").read_text().splitlines():
        again[orjson.loads(line)] += 1
    expected = {k: v + {"a": 2, "b": 1}.get(k, 0) for k, v in again.items() if v or k in ("a", "b")}
    assert counts() == expected
    assert run("-q").exit_code == 0  # and the reread file is now the one whose position is kept
    assert counts() == expected


def test_the_progress_line_shows_records_bytes_and_an_eta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from dataflow import Flow
    from dataflow.planner import plan
    from dataflow.runtime import runner

    flow = Flow("progress", partitions=1, batch_size=2)
    flow.source("lines", value=str).to("out")
    Path(tmp_path / "in.jsonl").write_text('"a"\n"b"\n"c"\n"d"\n"e"\n')
    ticks = iter(range(0, 100, 2))  # 2 s per reading: every chunk is shown
    monkeypatch.setattr(runner, "progress_clock", lambda: next(ticks))
    err = io.StringIO()
    options = runner.RunOptions(data_dir=str(tmp_path / "d"), inputs=[("lines", str(tmp_path / "in.jsonl"))],
                                until_idle=True, progress=True, stderr=err)
    asyncio.run(runner.run_plan(plan(flow.topology()), options))
    shown = [part for part in err.getvalue().split("\r\x1b[K") if "records ·" in part]
    # started at 0; chunks of 2 lines (8 bytes) read at 2, 4 and 6 s, the last one 4 bytes
    name = tmp_path / "in.jsonl"
    assert shown == [f"{name}: 2 records · 0.0 of 0.0 MB · ETA 3s", f"{name}: 4 records · 0.0 of 0.0 MB · ETA 1s",
                     f"{name}: 5 records · 0.0 of 0.0 MB · ETA 0s"]
