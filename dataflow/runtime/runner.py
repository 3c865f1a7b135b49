"""`dataflow run`: feed inputs, run the worker, tail outputs, stop cleanly.

Inputs (`--input TOPIC=FILE.jsonl`) are produced before the worker starts
consuming (stdin is fed while it runs). A file is streamed in chunks and, on the
embedded local log, resumable: its read position is written with its records, so
a rerun goes on where the last run stopped (see `file_sources`). Each line is a JSON value; with
`keyed=True` a `{"key": ..., "value": ...}` object, optionally with the message's
`"timestamp"` and `"headers"` (the shape outputs are written in). A line that is not valid
JSON is still produced, byte for byte, so the worker dead-letters it with the
reason instead of the run failing. Outputs (`--output TOPIC=FILE|-`) are read
back from the sink topic by a consumer of their own and written as JSON lines
with key, value, topic, partition, offset and timestamp.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from ..ir.timestamps import parse_iso
from ..planner.plan import ExecutionPlan
from ..transport.base import TP, Consumer, Message, ProducerRecord, Transport, open_transport
from .codecs import get_codec
from .file_sources import FileChanged, FileSource, progress_line
from .monitor import Monitor
from .worker import Worker, WorkerOptions


@dataclass
class RunOptions:
    broker: str | None = None
    data_dir: str | None = None
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (topic, path or "-")
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (topic, path or "-")
    keyed: bool = False
    until_idle: bool = False
    #: with until_idle: finish at the end of the input (close windows, emit unmatched join rows)
    bounded: bool = True
    progress: bool = False
    #: produce input files again from their start, even if an earlier run read them
    reread: bool = False
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)


class InputError(Exception):
    """An input or output argument names something that does not exist."""


def data_dir_for(plan: ExecutionPlan, options: RunOptions) -> str:
    return options.data_dir or plan.settings.data_dir or str(Path(".dataflow") / plan.name)


def state_dir_for(transport: Any, data_dir: str) -> str | None:
    """Where table stores live: beside the local log, or in the data dir for a remote broker;
    on memory:// state is as ephemeral as the topics."""
    url = transport.url
    if url.startswith("memory://"):
        return None
    if url.startswith("local://"):
        return url[len("local://"):]
    return data_dir


async def run_plan(plan: ExecutionPlan, options: RunOptions) -> Monitor:
    """Run `plan` until stopped (or idle); returns the monitor with everything counted."""
    topics = {t.name: t for t in plan.topics}
    user = ", ".join(sorted(t.name for t in plan.topics if not t.internal))
    for topic, _ in options.inputs:
        if topic not in topics:
            raise InputError(f"pipeline {plan.name} has no topic '{topic}'; its topics are: {user}")
    for topic, _ in options.outputs:
        if topic not in topics:
            # What was dead-lettered is the first thing to look at, and its topic is internal.
            dead = ", ".join(t.name for t in plan.topics if t.role == "dead-letter")
            raise InputError(f"pipeline {plan.name} has no topic '{topic}'; its topics are: {user}, and its "
                             f"dead-letter topic {dead}")
    data_dir = data_dir_for(plan, options)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    broker = options.broker or plan.settings.broker
    if plan.settings.processing_guarantee == "exactly_once" and (broker or "").startswith("kafka://"):
        # Silently running at-least-once would let a crash duplicate outputs the user asked never to see twice.
        raise InputError(f"pipeline {plan.name} asks for processing_guarantee exactly_once, which kafka:// does "
                         "not provide (runs on Kafka are at-least-once); hint: --set "
                         "processing_guarantee=at_least_once to accept duplicates after a crash, or run on the "
                         "embedded local log, which is exactly-once")
    transport = open_transport(broker, data_dir, plan.settings)
    await transport.start()
    worker = Worker(plan, transport, WorkerOptions(batch_size=plan.settings.batch_size,
                                                   commit_every=plan.settings.commit_every,
                                                   commit_interval=plan.settings.commit_interval,
                                                   stdout=options.stdout,
                                                   data_dir=state_dir_for(transport, data_dir)))
    tailers: list[_Tailer] = []
    feeders: list[asyncio.Task[int]] = []
    progress: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    try:
        await worker.start()
        for topic, path in options.inputs:
            if path != "-":
                await feed_file(transport, plan, topic, path, options)
        for topic, path in options.inputs:
            if path == "-":
                feeders.append(asyncio.create_task(feed_stdin(transport, plan, topic, options.keyed)))
                # A line stdin cannot send (a bad "timestamp") stops the run with its error.
                feeders[-1].add_done_callback(lambda f: _failed(f) is None or worker.request_stop())
        for topic, path in options.outputs:
            tailer = _Tailer(transport, plan, topic, path, options.stdout)
            await tailer.start()
            tailers.append(tailer)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, _stop_all, worker, tailers, sig)
        if options.progress:
            progress = asyncio.create_task(_progress(worker.monitor, options.stderr))
        tail_tasks = [asyncio.create_task(t.run()) for t in tailers]

        def inputs_done() -> bool:
            return all(f.done() for f in feeders)

        await worker.run(until_idle=options.until_idle, idle_when=inputs_done,
                         bounded=options.until_idle and options.bounded)
        for f in feeders:
            if (error := _failed(f)) is not None:
                raise error
        for t in tailers:
            t.finish()
        await asyncio.gather(*tail_tasks)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        for f in feeders:
            f.cancel()
        if progress is not None:
            progress.cancel()
            options.stderr.write("\r\x1b[K")
        await worker.stop()
        for t in tailers:
            await t.stop()
        await transport.stop()
    return worker.monitor


def _failed(task: asyncio.Task[Any]) -> BaseException | None:
    return task.exception() if task.done() and not task.cancelled() else None


def _stop_all(worker: Worker, tailers: list["_Tailer"], sig: int | None = None) -> None:
    if sig is not None:
        worker.monitor.stopped_by = sig  # the command's exit status reports an interrupt (130 for Ctrl-C)
    worker.request_stop()
    for t in tailers:
        t.finish()


def encode_line(line: bytes, serializer: str, keyed: bool) -> tuple[bytes | None, bytes]:
    """The key and value bytes for one input line (malformed lines pass through unchanged)."""
    record = input_record("", line, serializer, keyed)
    return record.key, record.value or b""


def input_record(topic: str, line: bytes, serializer: str, keyed: bool) -> ProducerRecord:
    """The record to produce for one input line.

    A line that is not JSON (or, keyed, not an object with a "value") passes through
    unchanged as the value, so the worker dead-letters it with the reason. A keyed line may
    also carry the message's "timestamp" (epoch ms, or ISO-8601 text) and "headers" (an
    object of text), as `--output` and `dataflow tail` print them, so that what one run
    writes can be fed to another; its other fields ("topic", "partition", "offset") are
    ignored. A timestamp or headers that cannot be sent are an InputError.

    >>> r = input_record("t", b'{"key": "a", "value": 1, "timestamp": "2024-01-01T00:00:00Z", '
    ...                  b'"headers": {"h": "x"}}', "json", keyed=True)
    >>> r.key, r.value, r.timestamp, r.headers
    (b'"a"', b'1', 1704067200000, (('h', b'x'),))
    """
    line = line.strip()
    codec = get_codec(serializer)
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ProducerRecord(topic, None, line)
    if not keyed:
        return ProducerRecord(topic, None, line if serializer == "json" else codec.dumps(obj))
    if not isinstance(obj, dict) or "value" not in obj:
        return ProducerRecord(topic, None, line)
    key = obj.get("key")
    try:
        timestamp, headers = keyed_line_extras(obj)
    except ValueError as e:
        raise InputError(f"{e} ({_excerpt(line)})") from None
    return ProducerRecord(topic, orjson.dumps(key) if key is not None else None, codec.dumps(obj["value"]),
                          timestamp=timestamp, headers=headers)


#: A message timestamp is a signed 64-bit int of epoch ms on every transport; before 1970 none accepts it.
_MAX_MESSAGE_TIMESTAMP = 2**63 - 1


def keyed_line_extras(line: dict[str, Any]) -> tuple[int | None, tuple[tuple[str, bytes], ...]]:
    """The message timestamp and headers a keyed line gives (`dataflow run --keyed`,
    `dataflow send --keyed`), or ValueError saying what is wrong with them.

    "timestamp" is epoch milliseconds or ISO-8601 text (None: the broker stamps the time of
    sending); "headers" an object of text, sent as UTF-8 (as `--output` decodes them).

    >>> keyed_line_extras({"key": 1, "value": 2, "timestamp": 5, "headers": {"h": "x"}})
    (5, (('h', b'x'),))
    >>> keyed_line_extras({"value": 2, "timestamp": 1.5})
    Traceback (most recent call last):
    ValueError: "timestamp" must be epoch milliseconds (an int) or ISO-8601 text, got 1.5
    """
    return _line_timestamp(line.get("timestamp")), _line_headers(line.get("headers"))


def _line_timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int:
        ms = value
    elif type(value) is str:
        try:
            ms = parse_iso(value)
        except ValueError:
            raise ValueError(f'"timestamp" {value[:40]!r} is not ISO-8601 text; write epoch milliseconds as a '
                             'JSON number, or text such as "2024-01-01T00:00:00Z"') from None
    else:
        raise ValueError('"timestamp" must be epoch milliseconds (an int) or ISO-8601 text, got '
                         f"{orjson.dumps(value).decode()[:40]}")
    if not 0 <= ms <= _MAX_MESSAGE_TIMESTAMP:
        raise ValueError(f'"timestamp" {value!r} is out of range for a message timestamp (epoch milliseconds '
                         "from 1970 on)")
    return ms


def _line_headers(value: Any) -> tuple[tuple[str, bytes], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError('"headers" must be an object of text values, such as {"source": "import"}')
    return tuple((name, text.encode()) for name, text in value.items())


def _excerpt(line: bytes) -> str:
    text = line.decode("utf-8", "replace")
    return f"input line {text[:60]}{'...' if len(text) > 60 else ''}"


async def feed(transport: Transport, plan: ExecutionPlan, topic: str, lines: list[bytes], keyed: bool,
               batch: int = 5000) -> int:
    serializer = plan.topic(topic).serializer
    producer = transport.producer()
    await producer.start()
    try:
        sent = 0
        pending: list[ProducerRecord] = []
        for line in lines:
            if not line.strip():
                continue
            pending.append(input_record(topic, line, serializer, keyed))
            if len(pending) >= batch:
                await producer.send_batch(pending)
                sent += len(pending)
                pending = []
        if pending:
            await producer.send_batch(pending)
            sent += len(pending)
        await producer.flush()
        return sent
    finally:
        await producer.stop()


#: the clock of the input progress line (a test replaces it)
progress_clock = time.monotonic


async def feed_file(transport: Transport, plan: ExecutionPlan, topic: str, path: str, options: RunOptions) -> int:
    """Stream a file into ``topic``, going on from where an earlier run stopped (local log)."""
    serializer, keyed = plan.topic(topic).serializer, options.keyed
    started = last = progress_clock()

    def show(source: FileSource) -> None:  # at most twice a second: a terminal line, not a log
        nonlocal last
        now = progress_clock()
        if now - last >= 0.5 and source.position is not None:
            last = now
            begun = source.start.offset if source.start is not None else 0
            options.stderr.write("\r\x1b[K" + progress_line(path, source.sent, source.position.offset, source.size,
                                                            source.position.offset - begun, now - started))
            options.stderr.flush()

    source = FileSource(transport, topic, path, record=lambda line: input_record(topic, line, serializer, keyed),
                        batch=plan.settings.batch_size, reread=options.reread,
                        on_chunk=show if options.progress else None)
    try:
        return await source.feed()
    except FileChanged as e:
        raise InputError(str(e)) from None
    finally:
        if options.progress:
            options.stderr.write("\r\x1b[K")


async def feed_stdin(transport: Transport, plan: ExecutionPlan, topic: str, keyed: bool) -> int:
    loop = asyncio.get_running_loop()
    lines = await loop.run_in_executor(None, sys.stdin.buffer.read)
    return await feed(transport, plan, topic, lines.splitlines(), keyed)


class _Tailer:
    """Reads a sink topic back and writes it as JSON lines (its own consumer group)."""

    def __init__(self, transport: Transport, plan: ExecutionPlan, topic: str, path: str, stdout: TextIO):
        self.transport = transport
        self.topic = topic
        self.codec = get_codec(plan.topic(topic).serializer)
        self.group = f"{plan.name}-output-{topic}"
        self.path = path
        self.stdout = stdout
        self.consumer: Consumer = transport.consumer(self.group, [topic])
        self._finishing = False
        self._file: TextIO | None = None

    async def start(self) -> None:
        await self.consumer.start()
        if self.path != "-":
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()

    def finish(self) -> None:
        self._finishing = True

    async def run(self) -> None:
        out = self._file or self.stdout
        while True:
            batches = await self.consumer.getmany(max_records=5000, timeout=0.05)
            if batches:
                lines = []
                offsets: dict[TP, int] = {}
                for tp in sorted(batches):
                    for m in batches[tp]:
                        lines.append(message_line(m, decoded_value(self.codec, m.value)))
                        offsets[tp] = m.offset + 1
                out.write(b"\n".join(lines).decode() + "\n")
                out.flush()
                await self.consumer.commit(offsets)
            elif self._finishing and await self._at_end():
                return

    async def _at_end(self) -> bool:
        assigned = self.consumer.assignment()
        ends = await self.consumer.end_offsets(assigned)
        return all(self.consumer.position(tp) >= end for tp, end in ends.items())

    async def stop(self) -> None:
        await self.consumer.stop()
        if self._file is not None:
            self._file.close()


def json_or_text(data: bytes | None) -> Any:
    """Bytes shown to a person: their JSON value, else their text."""
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def message_line(m: Message, value: Any) -> bytes:
    """One record as a JSON line: key, value, topic, partition, offset, timestamp, and its
    headers when it has any (a dead letter's reason is in them)."""
    row: dict[str, Any] = {"key": json_or_text(m.key), "value": value, "topic": m.topic,
                           "partition": m.partition, "offset": m.offset, "timestamp": m.timestamp}
    if m.headers:
        row["headers"] = {name: data.decode("utf-8", "replace") for name, data in m.headers}
    return orjson.dumps(row)


def decoded_value(codec: Any, data: bytes | None) -> Any:
    """A record's value as its codec reads it, or as text when it does not (shown, not failed)."""
    if data is None:
        return None
    try:
        return codec.loads(data)
    except Exception:  # noqa: BLE001 - show what is there rather than fail the tail
        return data.decode("utf-8", "replace")


async def _progress(monitor: Monitor, err: TextIO) -> None:
    while True:
        await asyncio.sleep(0.5)
        lag = sum(monitor.lag().values())
        err.write(f"\r\x1b[K{monitor.events_per_second():,.0f} events/s · {monitor.messages_received:,} read · "
                  f"lag {lag:,} · dead letters {sum(monitor.dead_letters_by_reason.values())}")
        err.flush()


def summary(monitor: Monitor, seconds: float) -> str:
    """The human summary printed when a run ends."""
    d = monitor.as_dict()
    lines = [f"processed {d['messages_received']:,} messages in {seconds:.2f}s "
             f"({d['messages_received'] / seconds if seconds > 0 else 0:,.0f}/s)"]
    for topic, n in d["messages_received_by_topic"].items():
        lines.append(f"  read  {topic}: {n:,}")
    for topic, n in d["messages_sent_by_topic"].items():
        lines.append(f"  wrote {topic}: {n:,}")
    if d["dead_letters"]:
        stages = ", ".join(f"{k}: {v}" for k, v in d["dead_letters_by_stage"].items())
        lines.append(f"  dead letters: {d['dead_letters']:,} ({stages})")
    if d["late_events"]:
        steps = ", ".join(f"{k}: {v}" for k, v in d["late_events_by_step"].items())
        lines.append(f"  late events dropped: {d['late_events']:,} ({steps})")
    if d["restored_records"]:
        lines.append(f"  state restored from changelogs: {d['restored_records']:,} records")
    lines.append(f"  commits: {d['commits']}")
    return "\n".join(lines)


def now() -> float:
    return time.monotonic()
