"""SIGKILL a `dataflow run` mid-stream, restart it, and show no input record was lost.

At-least-once: the restarted run resumes from the last commit, so records processed
after it are processed again (duplicates are allowed); none may be missing.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import orjson

from dataflow.transport.base import TP
from dataflow.transport.local import LocalTransport

RECORDS = 20_000
HANG_AT = 12_345

PIPELINE = '''
import os
from dataflow import Flow, Record, col

class Item(Record):
    id: int
    text: str

def work(v):
    # The first run hangs (busy, no sleep) at a record in the middle of the input, so
    # the kill always lands mid-stream, however fast or loaded the machine is.
    if os.environ.get("CRASH_TEST_HANG_AT") and v["id"] == int(os.environ["CRASH_TEST_HANG_AT"]):
        while True:
            pass
    return {"id": v["id"], "double": v["id"] * 2}

flow = Flow("crash", partitions=2)
flow.source("src", value=Item).filter(col("id") >= 0).map(work).to("sink")
'''


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dataflow.cli", "run", *args]


async def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def ids_in(path: Path) -> list[int]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(orjson.loads(line)["value"]["id"])
    return out


async def test_sigkill_mid_stream_then_restart_loses_nothing(tmp_path):
    pipe = tmp_path / "crash_pipe.py"
    pipe.write_text(PIPELINE)
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"".join(orjson.dumps({"id": i, "text": f"item {i}"}) + b"\n" for i in range(RECORDS)))
    data = tmp_path / "data"
    first_out, second_out = tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"
    settings = ["--set", "batch_size=100", "--set", "commit_every=500"]

    first = await asyncio.create_subprocess_exec(
        *cli(str(pipe), "--data-dir", str(data), "--input", f"src={big}", "--output", f"sink={first_out}", "-q",
             *settings),
        env={**os.environ, "CRASH_TEST_HANG_AT": str(HANG_AT)}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)
    try:
        await wait_for(lambda: len(ids_in(first_out)) > 0 or first.returncode is not None, "the first output")
        assert first.returncode is None, (await first.stderr.read()).decode()  # type: ignore[union-attr]
        first.send_signal(signal.SIGKILL)
    finally:
        if first.returncode is None:
            first.kill()
        await first.wait()
    assert first.returncode == -signal.SIGKILL

    second = await asyncio.create_subprocess_exec(
        *cli(str(pipe), "--data-dir", str(data), "--until-idle", "--output", f"sink={second_out}", *settings),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(second.communicate(), 120)
    summary = err.decode()
    assert second.returncode == 0, summary
    # The restart had work left: at least everything from the record the first run hung on.
    reread = int(re.search(r"read  src: ([\d,]+)", summary).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert RECORDS - HANG_AT <= reread <= RECORDS
    assert HANG_AT not in ids_in(first_out)

    expected = set(range(RECORDS))
    assert set(ids_in(first_out)) | set(ids_in(second_out)) == expected

    transport = LocalTransport(data)
    await transport.start()
    try:
        log = transport.log
        sink: list[int] = []
        for p in range(2):
            for m in await log.read(TP("sink", p), 0, log.end_offset(TP("sink", p))):
                sink.append(orjson.loads(m.value)["id"])
                assert orjson.loads(m.value)["double"] == 2 * sink[-1]
        assert set(sink) == expected  # every input's result is in the sink topic (duplicates allowed)
        assert log.end_offset(TP("src", 0)) == RECORDS  # the input was not produced twice
        assert log.committed("crash", TP("src", 0)) == RECORDS
        assert log.end_offset(TP("crash-dead-letters", 0)) == 0
    finally:
        await transport.stop()
