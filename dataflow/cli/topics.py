"""Topic tools: `dataflow topics create|list|describe`, `dataflow send`, `dataflow tail`.

They work on any transport URL, through the same interface the runtime uses:

    dataflow topics create orders payments --partitions 4 --broker kafka://localhost:9092
    dataflow topics list --broker kafka://localhost:9092
    dataflow topics describe orders -p examples/orders.py
    dataflow send orders orders.jsonl --key order_id
    dataflow tail enriched-orders --from-beginning --follow

Where the topics live: `--broker URL`, else `$DATAFLOW_BROKER`, else the pipeline's
broker (`--pipeline`), else the embedded local log in `--data-dir` (default: the
pipeline's data directory with `--pipeline`, `.dataflow/default` without). With
`--pipeline` the pipeline's Kafka settings (credentials, client id) apply too.
"""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Optional, TextIO, TypeVar

import orjson
import typer

from . import UserError, _guard, _overrides, app, load, logs
from .help import ReadableGroup

T = TypeVar("T")

topics_app = typer.Typer(cls=ReadableGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                         help="Create, list and describe topics on any transport.")
app.add_typer(topics_app, name="topics")

DEFAULT_DATA_DIR = str(Path(".dataflow") / "default")
BROKER_HELP = ("memory://, local://DIR or kafka://HOST:PORT[,HOST:PORT]; default: $DATAFLOW_BROKER, the "
               "pipeline's broker, else the local log in --data-dir.")
DATA_DIR_HELP = f"Where the local log lives; default: the pipeline's, else {DEFAULT_DATA_DIR}."
PIPELINE_OPT_HELP = "Use this pipeline's broker, data directory and Kafka settings."


def _where(broker: str | None, data_dir: str | None, pipeline: str | None) -> tuple[str | None, str, Any]:
    """(url, data_dir, settings) from the options, the environment and the pipeline."""
    settings = None
    pipeline_dir = None
    if pipeline is not None:
        flow = load(pipeline, _overrides(None))
        settings = flow.settings
        pipeline_dir = settings.data_dir or str(Path(".dataflow") / flow.name)
    url = broker or os.environ.get("DATAFLOW_BROKER") or (settings.broker if settings is not None else None)
    return url, data_dir or pipeline_dir or DEFAULT_DATA_DIR, settings


def _run(body: Callable[[], Coroutine[Any, Any, T]], log_level: str | None, log_format: str) -> T:
    """Run an async command body, logging as asked; transport errors become one line on stderr, exit 1."""
    from ..transport.base import TransportError

    async def guarded() -> T:
        try:
            return await body()
        except TransportError as e:
            raise UserError(f"error: {e}") from None

    def sync() -> T:
        return asyncio.run(guarded())

    with logs.configured(log_level, log_format):
        return _guard(sync)  # type: ignore[no-any-return]


async def _open(url: str | None, data_dir: str, settings: Any):  # type: ignore[no-untyped-def]
    from ..transport.base import open_transport

    if url is None or url.startswith("local://"):
        Path(url[len("local://"):] if url and url != "local://" else data_dir).mkdir(parents=True, exist_ok=True)
    transport = open_transport(url, data_dir, settings)
    await transport.start()
    return transport


# --------------------------------------------------------------------------- topics


@topics_app.command("create")
def create_command(
    names: list[str] = typer.Argument(..., metavar="TOPIC", help="Topic names."),
    partitions: int = typer.Option(1, "--partitions", min=1, metavar="N", help="Partitions per topic."),
    compacted: bool = typer.Option(False, "--compacted", help="Keep only the latest record per key (Kafka: "
                                   "cleanup.policy=compact)."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", help=BROKER_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE", help=PIPELINE_OPT_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Create topics (existing ones with the same partition count are left alone)."""
    from ..transport.base import TopicSpec

    async def body() -> list[str]:
        try:
            specs = [TopicSpec(name, partitions, compacted) for name in names]
        except ValueError as e:
            raise UserError(f"error: {e}") from None
        transport = await _open(*_where(broker, data_dir, pipeline))
        try:
            before = await transport.describe_topics(names)
            await transport.create_topics(specs)
            return [name for name in names if name not in before]
        finally:
            await transport.stop()

    created = _run(body, log_level, log_format)
    for name in names:
        state = "created" if name in created else "exists"
        typer.echo(f"{state} {name} ({partitions} partition{'s' if partitions != 1 else ''}"
                   f"{', compacted' if compacted and name in created else ''})")


@topics_app.command("list")
def list_command(
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", help=BROKER_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE", help=PIPELINE_OPT_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """List topics with their partition counts."""

    async def body() -> dict[str, int]:
        transport = await _open(*_where(broker, data_dir, pipeline))
        try:
            return await transport.describe_topics(await transport.list_topics())
        finally:
            await transport.stop()

    for name, count in sorted(_run(body, log_level, log_format).items()):
        typer.echo(f"{name}\t{count}")


@topics_app.command("describe")
def describe_command(
    names: list[str] = typer.Argument(..., metavar="TOPIC", help="Topic names."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", help=BROKER_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE", help=PIPELINE_OPT_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Show partitions and end offsets (records written so far) per partition."""
    from ..transport.base import TP

    async def body() -> list[str]:
        transport = await _open(*_where(broker, data_dir, pipeline))
        try:
            counts = await transport.describe_topics(names)
            missing = [name for name in names if name not in counts]
            if missing:
                raise UserError(f"error: no topic {', '.join(map(repr, missing))} on {transport.url}; "
                                "hint: dataflow topics list")
            # A throwaway group that never commits: reading end offsets needs a consumer.
            consumer = transport.consumer(f"dataflow-describe-{uuid.uuid4().hex[:12]}", names)
            async with consumer:
                ends = await consumer.end_offsets(TP(n, p) for n in names for p in range(counts[n]))
            lines = []
            for name in names:
                total = sum(ends[TP(name, p)] for p in range(counts[name]))
                lines.append(f"{name}: {counts[name]} partition{'s' if counts[name] != 1 else ''}, "
                             f"end offsets sum {total}")
                lines.extend(f"  partition {p}: end offset {ends[TP(name, p)]}" for p in range(counts[name]))
            return lines
        finally:
            await transport.stop()

    typer.echo("\n".join(_run(body, log_level, log_format)))


# --------------------------------------------------------------------------- send


def _records(lines: list[bytes], source: str, topic: str, keyed: bool, key_field: str | None) -> list[Any]:
    """Parse every line before anything is sent: a bad line stops the whole send."""
    from ..runtime.runner import keyed_line_extras
    from ..transport.base import ProducerRecord

    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise UserError(f"{source}:{number}: error: not valid JSON ({e}); nothing was sent") from None
        key: Any = None
        value = obj
        timestamp, headers = None, ()
        if keyed:
            if not isinstance(obj, dict) or "value" not in obj:
                raise UserError(f'{source}:{number}: error: expected {{"key": ..., "value": ...}} with --keyed; '
                                "nothing was sent")
            key, value = obj.get("key"), obj["value"]
            try:  # as `dataflow tail` prints them, so that what it prints can be sent again
                timestamp, headers = keyed_line_extras(obj)
            except ValueError as e:
                raise UserError(f"{source}:{number}: error: {e}; nothing was sent") from None
        elif key_field is not None:
            if not isinstance(obj, dict) or key_field not in obj:
                raise UserError(f"{source}:{number}: error: no field {key_field!r} for the key; nothing was sent")
            key = obj[key_field]
        # The value is sent as written when it is the whole line: numbers keep their spelling.
        raw = line.strip() if value is obj else orjson.dumps(value)
        out.append(ProducerRecord(topic, orjson.dumps(key) if key is not None else None, raw,
                                  timestamp=timestamp, headers=headers))
    return out


@app.command("send")
def send_command(
    topic: str = typer.Argument(..., help="The topic to write to."),
    file: Optional[Path] = typer.Argument(None, help="A JSON-lines file; default: stdin."),
    key: Optional[str] = typer.Option(None, "--key", "-k", metavar="FIELD", help="Take each record's key from this field of "
                                      "its value."),
    keyed: bool = typer.Option(False, "--keyed", help='Lines are {"key": ..., "value": ...} objects, with an '
                               'optional "timestamp" and "headers" (as `dataflow tail` prints them).'),
    create: bool = typer.Option(False, "--create", help="Create the topic if it is missing (with --partitions)."),
    partitions: int = typer.Option(1, "--partitions", min=1, metavar="N", help="Partitions for --create."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", help=BROKER_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE", help=PIPELINE_OPT_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Send JSON lines to a topic: values as they are, keys as JSON (keyless lines go to partition 0)."""
    from ..transport.base import TopicSpec

    if key is not None and keyed:
        raise typer.BadParameter("use either --key FIELD or --keyed", param_hint="--key")

    async def body() -> int:
        if file is None:
            data, source = sys.stdin.buffer.read(), "<stdin>"
        else:
            try:
                data, source = file.read_bytes(), str(file)
            except OSError as e:
                raise UserError(f"{file}: error: {e.strerror}") from None
        records = _records(data.splitlines(), source, topic, keyed, key)
        transport = await _open(*_where(broker, data_dir, pipeline))
        try:
            if not await transport.describe_topics([topic]):
                if not create:
                    raise UserError(f"error: no topic {topic!r} on {transport.url}; hint: dataflow topics create "
                                    f"{topic} --partitions N, or send --create")
                await transport.create_topics([TopicSpec(topic, partitions)])
            async with transport.producer() as producer:
                for start in range(0, len(records), 5000):
                    await producer.send_batch(records[start:start + 5000])
            return len(records)
        finally:
            await transport.stop()

    sent = _run(body, log_level, log_format)
    text = f"sent {sent} record{'s' if sent != 1 else ''} to {topic}"
    if log_format == "json":  # stderr holds JSON lines only
        text = logs.json_line("dataflow.send", text, {"topic": topic, "records": sent})
    typer.echo(text, err=True)


# --------------------------------------------------------------------------- tail


def _line(m: Any) -> bytes:
    from ..runtime.runner import json_or_text, message_line

    return message_line(m, json_or_text(m.value))


async def tail(transport: Any, topic: str, out: TextIO, *, from_beginning: bool = False, follow: bool = False,
               lines: int = 10, stop: asyncio.Event | None = None, started: asyncio.Event | None = None) -> int:
    """Write a topic's records as JSON lines: the last `lines` of each partition (or all with
    `from_beginning`), then, with `follow`, new ones until `stop` is set. Returns the count.
    `started` is set once the start of each partition is fixed: what is produced after that is new.

    Reads with a throwaway consumer group that never commits, so it disturbs no one.
    """
    from ..transport.base import TP

    counts = await transport.describe_topics([topic])
    if topic not in counts:
        raise UserError(f"error: no topic {topic!r} on {transport.url}; hint: dataflow topics list")
    stop = stop or asyncio.Event()
    written = 0
    async with transport.consumer(f"dataflow-tail-{uuid.uuid4().hex[:12]}", [topic]) as consumer:
        tps = [TP(topic, p) for p in range(counts[topic])]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if tp in consumer.assignment():
                consumer.seek(tp, 0 if from_beginning else max(0, ends[tp] - lines))
        if started is not None:
            started.set()
        while not stop.is_set():
            if not follow and all(consumer.position(tp) >= ends[tp] for tp in consumer.assignment()):
                break
            batch = await consumer.getmany(max_records=5000, timeout=0.2)
            rows = []
            for tp in sorted(batch):
                for m in batch[tp]:
                    if follow or m.offset < ends[tp]:  # without --follow: the records there were at the start
                        rows.append(_line(m))
            if rows:
                out.write(b"\n".join(rows).decode() + "\n")
                out.flush()
                written += len(rows)
    return written


@app.command("tail")
def tail_command(
    topic: str = typer.Argument(..., help="The topic to read."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Every record, not only the last ones."),
    follow: bool = typer.Option(False, "--follow", "-F", help="Keep printing new records until Ctrl-C."),
    lines: int = typer.Option(10, "--lines", "-n", min=0, metavar="N", help="Records per partition to show first."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", help=BROKER_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help=DATA_DIR_HELP),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", "-p", metavar="PIPELINE", help=PIPELINE_OPT_HELP),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Print a topic's records as JSON lines (key, value, topic, partition, offset, timestamp, headers)."""
    import signal

    async def body() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (e.g. under a test runner)
                pass
        transport = await _open(*_where(broker, data_dir, pipeline))
        try:
            return await tail(transport, topic, sys.stdout, from_beginning=from_beginning, follow=follow,
                              lines=lines, stop=stop)
        finally:
            await transport.stop()

    _run(body, log_level, log_format)
