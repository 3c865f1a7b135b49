"""``kafka://``: the transport interface of :mod:`dataflow.transport.base` on aiokafka.

A URL names the bootstrap brokers and, optionally, non-secret client options::

    kafka://broker-1:9092,broker-2:9092
    kafka://broker-1:9093?security_protocol=SASL_SSL&sasl_mechanism=SCRAM-SHA-512&sasl_username=app

Every option can also come from the pipeline's settings (``kafka_<option>``, from the
``.flow`` header or ``--set``) or from the environment (``DATAFLOW_KAFKA_<OPTION>``);
the first of settings, URL, environment, built-in default wins (:class:`KafkaConfig`).
Secrets (``sasl_password``, ``ssl_password``) are refused in URLs, which get printed,
and never appear in a ``repr``:

>>> config = KafkaConfig.resolve("kafka://b1:9092,b2:9092?client_id=fraud", env={
...     "DATAFLOW_KAFKA_SASL_USERNAME": "app", "DATAFLOW_KAFKA_SASL_PASSWORD": "hunter2",
...     "DATAFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "DATAFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"})
>>> config.bootstrap_servers, config.client_id, config.sasl_mechanism
(('b1:9092', 'b2:9092'), 'fraud', 'SCRAM-SHA-256')
>>> "hunter2" in repr(config), config.describe()["sasl_password"]
(False, '***')

What the driver guarantees, and how it copes with brokers that misreport offsets:

* **At least once.** Offsets are committed only when the runtime says so (the
  consecutive-ack rule); records read but not committed are read again after a crash or
  rebalance. Kafka transactions (exactly-once) are not used.
* **Keys place records exactly as the embedded transports do**: murmur2 like the Java
  client, and keyless records on partition 0 (:func:`~dataflow.transport.base.partition_for`).
* **End offsets are never too low.** :meth:`KafkaConsumer.end_offsets` takes the largest of
  the broker's answer, the high watermark of the last fetch, and the end of what this
  transport itself produced. On Kafka the broker's answer is exact; some Kafka-protocol
  brokers (Tansu, the test broker) report the end of a multi-record batch as its first
  offset + 1, and then the other two lift it to the truth. Positions are compared against
  it to decide "read to the end", so a too-low end would stop a run early.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KTP
from aiokafka import errors as kerrors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from dataflow.ir.urls import redact_url, refusal
from dataflow.transport.base import (
    TP,
    CommitFailedError,
    Consumer,
    Message,
    OffsetReset,
    OnPartitions,
    Producer,
    ProducerRecord,
    TopicMismatchError,
    TopicSpec,
    Transport,
    TransportError,
    UnknownTopicError,
    partition_for,
)

__all__ = ["KafkaConfig", "KafkaConsumer", "KafkaProducer", "KafkaTransport", "REDACTED"]

logger = logging.getLogger(__name__)

REDACTED = "***"
ENV_PREFIX = "DATAFLOW_KAFKA_"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
OFFSET_RESETS = ("earliest", "latest")
ACKS = ("all", "1", "0")
_SECRETS = frozenset({"sasl_password", "ssl_password"})
# Records placed per (topic, key): murmur2 is pure Python, and partition counts never shrink.
_PLACEMENT_CACHE = 100_000
# Up to this many records, send_batch goes through aiokafka's accumulator (shared batches
# for concurrent callers); above, one closed batch per partition.
_SMALL_BATCH = 8


def _reveal(value: Any) -> str:
    """The plain text of a secret setting (``ir.settings.Secret`` has ``reveal()``)."""
    reveal = getattr(value, "reveal", None)
    return reveal() if callable(reveal) else str(value)


@dataclass(frozen=True)
class KafkaConfig:
    """Resolved client options for one ``kafka://`` transport.

    Built by :meth:`resolve`; secrets are kept out of ``repr`` and :meth:`describe`.

    >>> KafkaConfig.resolve("kafka://localhost:9092", env={}).acks
    'all'
    """

    bootstrap_servers: tuple[str, ...]
    client_id: str = "dataflow"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    auto_offset_reset: str = "earliest"
    linger_ms: int = 5
    max_batch_size: int = 262_144
    acks: str = "all"
    replication_factor: int = 0  # 0: min(3, brokers in the cluster)
    request_timeout_ms: int = 30_000
    fetch_max_wait_ms: int = 100

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Options settable by name (everything but the brokers).

        >>> "sasl_password" in KafkaConfig.option_names()
        True
        """
        return tuple(f.name for f in fields(cls) if f.name != "bootstrap_servers")

    @classmethod
    def resolve(cls, url: str, settings: Any = None, env: Mapping[str, str] | None = None) -> KafkaConfig:
        """Options from, in order of precedence: ``settings`` (an object with
        ``kafka_<option>`` attributes, e.g. a pipeline's ``Settings``; ``None`` values
        are unset), the URL's query string, ``DATAFLOW_KAFKA_<OPTION>`` variables in
        ``env`` (default ``os.environ``), then the defaults.

        >>> KafkaConfig.resolve("kafka://h:1?linger_ms=20", env={"DATAFLOW_KAFKA_LINGER_MS": "50"}).linger_ms
        20
        """
        env = os.environ if env is None else env
        shown = redact_url(url)  # every message below shows this, never the url itself
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.lower() != "kafka":
            raise TransportError(f"not a kafka url: {shown!r}; hint: kafka://HOST:PORT[,HOST:PORT]")
        hosts, _, query = rest.partition("?")
        if "@" in hosts:  # `kafka://user:password@host`: the client would take it all for a host name
            raise TransportError(refusal(url, "a kafka url") or f"kafka url {shown!r} holds '@'")
        servers = tuple(h.strip() for h in hosts.strip("/").split(",") if h.strip())
        if not servers:
            raise TransportError(f"kafka url {shown!r} names no broker; hint: kafka://HOST:PORT[,HOST:PORT]")
        for server in servers:
            host, colon, port = server.rpartition(":")
            if not colon or not host or not port.isdigit():
                raise TransportError(f"kafka broker {server!r} in {shown!r} is not HOST:PORT; "
                                     "hint: kafka://localhost:9092")
        names = set(cls.option_names())
        from_url: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            key = key.lower().replace("-", "_").removeprefix("kafka_")
            if key in _SECRETS:
                raise TransportError(f"{key} may not be given in the kafka url (urls are printed in logs); "
                                     f"hint: set {ENV_PREFIX}{key.upper()} or the kafka_{key} setting")
            if key not in names:
                raise TransportError(f"unknown kafka option {key!r} in {shown!r}; "
                                     f"options are: {', '.join(sorted(names))}")
            from_url[key] = value
        chosen: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "bootstrap_servers":
                continue
            value = getattr(settings, f"kafka_{f.name}", None) if settings is not None else None
            origin = f"setting kafka_{f.name}"
            if value is None and f.name in from_url:
                value, origin = from_url[f.name], f"kafka url option {f.name}"
            if value is None and env.get(ENV_PREFIX + f.name.upper()) not in (None, ""):
                value, origin = env[ENV_PREFIX + f.name.upper()], f"{ENV_PREFIX}{f.name.upper()}"
            if value is not None:
                chosen[f.name] = _check(f.name, value, f.type, origin)
        return cls(bootstrap_servers=servers, **chosen)._validated()

    def _validated(self) -> KafkaConfig:
        if self.sasl_mechanism and not self.security_protocol.startswith("SASL_"):
            # A mechanism without a SASL protocol would be silently ignored by the client.
            raise TransportError(f"kafka sasl_mechanism {self.sasl_mechanism} needs security_protocol "
                                 "SASL_PLAINTEXT or SASL_SSL")
        if self.security_protocol.startswith("SASL_"):
            if not (self.sasl_username and self.sasl_password):
                raise TransportError(f"kafka security_protocol {self.security_protocol} needs sasl_username and "
                                     f"sasl_password; hint: set {ENV_PREFIX}SASL_USERNAME and "
                                     f"{ENV_PREFIX}SASL_PASSWORD")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise TransportError(f"kafka heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                                 f"session_timeout_ms ({self.session_timeout_ms})")
        return self

    def describe(self) -> dict[str, Any]:
        """Every option, secrets shown as ``***`` when set: safe to print or log."""
        out: dict[str, Any] = {"bootstrap_servers": ",".join(self.bootstrap_servers)}
        for f in fields(self):
            if f.name != "bootstrap_servers":
                value = getattr(self, f.name)
                out[f.name] = REDACTED if f.name in _SECRETS and value is not None else value
        return out

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol.startswith("SASL_"):
            options.update(sasl_mechanism=self.sasl_mechanism or "PLAIN",
                           sasl_plain_username=self.sasl_username, sasl_plain_password=self.sasl_password)
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile,
                password=self.ssl_password)
        return options


def _check(name: str, value: Any, kind: Any, origin: str) -> Any:
    if name in _SECRETS:
        return _reveal(value)
    text = str(kind)
    if text.startswith("int"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise TransportError(f"{origin} must be a whole number, not {value!r}") from None
        if number < 0:
            raise TransportError(f"{origin} must be >= 0, not {number}")
        return number
    value = str(value)
    choices = {"security_protocol": SECURITY_PROTOCOLS, "sasl_mechanism": SASL_MECHANISMS,
               "auto_offset_reset": OFFSET_RESETS, "acks": ACKS}.get(name)
    if choices is not None:
        normal = value.upper() if name in ("security_protocol", "sasl_mechanism") else value.lower()
        if normal not in choices:
            raise TransportError(f"{origin} must be one of {', '.join(choices)}, not {value!r}")
        return normal
    return value


def _error(err: BaseException, what: str) -> TransportError:
    """A Kafka client error as a TransportError that says what we were doing."""
    return TransportError(f"kafka: {what} failed: {type(err).__name__}: {err}")


class KafkaTransport(Transport):
    """``kafka://HOST:PORT[,HOST:PORT][?option=value&...]`` on aiokafka.

    ``settings`` is any object with ``kafka_<option>`` attributes (a pipeline's
    ``Settings``); see :class:`KafkaConfig` for the options and where they come from.

    >>> KafkaTransport("kafka://localhost:9092").url
    'kafka://localhost:9092'
    """

    def __init__(self, url: str, settings: Any = None, *, env: Mapping[str, str] | None = None) -> None:
        self._url = url
        self.config = KafkaConfig.resolve(url, settings, env)
        self._admin: AIOKafkaAdminClient | None = None
        self._consumers: list[KafkaConsumer] = []
        self._producers: list[KafkaProducer] = []
        # End offsets this transport's producers have seen acknowledged: a lower bound of the
        # true end that is fresh even when a consumer's last fetch is not (see end_offsets).
        self.produced_ends: dict[TP, int] = {}
        self._partitions: dict[str, int] = {}
        self._reader: AIOKafkaConsumer | None = None  # group-less, for reading changelogs
        self._reader_lock = asyncio.Lock()

    @property
    def url(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"KafkaTransport({self._url!r})"

    async def start(self) -> None:
        if self._admin is not None:
            return
        admin = AIOKafkaAdminClient(**self.config.client_options())
        try:
            await admin.start()
        except Exception as err:  # noqa: BLE001 - every connection failure reads the same to a user
            await admin.close()
            raise TransportError(f"cannot connect to kafka at {','.join(self.config.bootstrap_servers)}: "
                                 f"{type(err).__name__}: {err}; hint: is the broker running and the url "
                                 "right?") from None
        self._admin = admin

    async def stop(self) -> None:
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            await consumer.stop()
        producers, self._producers = self._producers, []
        for producer in producers:
            await producer.stop()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise TransportError(f"kafka transport {self._url} is not started; hint: await transport.start()")
        return self._admin

    # -- reading a partition outside any group (table recovery) --------------------------

    async def _partition_reader(self, ktp: KTP) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(**self.config.client_options(), group_id=None, enable_auto_commit=False,
                                      fetch_max_wait_ms=self.config.fetch_max_wait_ms)
            await reader.start()
            self._reader = reader
        # A fresh assignment each time: no buffered fetch or high watermark of an earlier read.
        self._reader.assign([ktp])
        return self._reader

    async def end_offset(self, tp: TP) -> int:
        """The offset the next record of ``tp`` will get.

        The broker's answer is a lower bound on some brokers (Tansu reports the end of a
        multi-record batch as its first offset + 1), so one fetch from just before it reads
        the high watermark, which is exact; table recovery must read a changelog to its end.
        """
        ktp = KTP(tp.topic, tp.partition)
        async with self._reader_lock:
            reader = await self._partition_reader(ktp)
            try:
                end = (await reader.end_offsets([ktp]))[ktp]
                if end > 0:
                    reader.seek(ktp, end - 1)
                    await reader.getmany(ktp, timeout_ms=1000, max_records=1)
                    end = max(end, reader.highwater(ktp) or 0)
            except kerrors.KafkaError as err:
                raise _error(err, f"reading the end of {tp.topic}[{tp.partition}]") from None
        return max(end, self.produced_ends.get(tp, 0))

    async def read_partition(self, tp: TP, start: int, limit: int) -> list[Message]:
        """Up to ``limit`` records of ``tp`` from offset ``start``, outside any group."""
        ktp = KTP(tp.topic, tp.partition)
        async with self._reader_lock:
            reader = await self._partition_reader(ktp)
            try:
                reader.seek(ktp, start)
                fetched = await reader.getmany(ktp, timeout_ms=2000, max_records=limit)
            except kerrors.KafkaError as err:
                raise _error(err, f"reading {tp.topic}[{tp.partition}]") from None
        return [Message(tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp,
                        tuple(r.headers) if r.headers else ()) for r in fetched.get(ktp, []) if r.offset >= start]

    async def group_committed(self, group_id: str, tp: TP) -> int | None:
        """The offset ``group_id`` committed for ``tp``, read without joining the group
        (what rebuilding a table read from a topic needs outside a run)."""
        ktp = KTP(tp.topic, tp.partition)
        try:
            offsets = await self.admin.list_consumer_group_offsets(group_id, partitions=[ktp])
        except kerrors.KafkaError as err:
            raise _error(err, f"reading the offsets group {group_id!r} committed") from None
        meta = offsets.get(ktp)
        return None if meta is None or meta.offset < 0 else int(meta.offset)

    # -- topics --------------------------------------------------------------------------

    async def _metadata(self) -> dict[str, int]:
        """Partition counts of every (non-internal) topic, in one metadata request.

        Never asks about named topics: a metadata request naming an unknown topic makes
        brokers with auto-creation on (and Tansu, always) create it with their default
        partition count.
        """
        try:
            topics = await self.admin.describe_topics(None)
        except kerrors.KafkaError as err:
            raise _error(err, "reading topic metadata") from None
        out = {}
        for t in topics:
            if t.get("is_internal") or t["topic"].startswith("__"):
                continue
            if t["error_code"] == 0:
                out[t["topic"]] = len(t["partitions"])
        self._partitions.update(out)
        return out

    async def describe_topics(self, names: Iterable[str]) -> dict[str, int]:
        existing = await self._metadata()
        return {name: existing[name] for name in names if name in existing}

    async def list_topics(self) -> list[str]:
        return sorted(await self._metadata())

    async def create_topics(self, specs: Iterable[TopicSpec]) -> None:
        wanted: dict[str, TopicSpec] = {}
        for spec in specs:
            known = wanted.setdefault(spec.name, spec)
            if known.partitions != spec.partitions:
                raise TopicMismatchError(f"topic {spec.name!r} is asked for with {known.partitions} and "
                                         f"{spec.partitions} partitions")
        if not wanted:
            return
        existing = await self._metadata()
        self._check_counts(wanted.values(), existing)
        new = [wanted[name] for name in sorted(wanted) if name not in existing]
        if not new:
            return
        replicas = self.config.replication_factor or await self._default_replication()
        requests = [NewTopic(spec.name, spec.partitions, replicas,
                             topic_configs={"cleanup.policy": "compact"} if spec.compacted else {})
                    for spec in new]
        try:
            response = await self.admin.create_topics(requests)
        except kerrors.KafkaError as err:
            raise _error(err, f"creating topics {', '.join(s.name for s in new)}") from None
        raced = []
        for topic, code, *rest in response.topic_errors:
            if code == kerrors.TopicAlreadyExistsError.errno:
                raced.append(topic)  # another worker created it first: check its count below
            elif code != 0:
                message = rest[0] if rest and rest[0] else kerrors.for_code(code).__name__
                raise TransportError(f"kafka: cannot create topic {topic!r}: {message}")
        await self._await_visible({s.name for s in new}, raced, wanted)

    async def _await_visible(self, names: set[str], raced: list[str], wanted: Mapping[str, TopicSpec]) -> None:
        # Creation is asynchronous on a real cluster: wait until metadata shows every new
        # topic, so consumers that subscribe next see all its partitions.
        deadline = time.monotonic() + self.config.request_timeout_ms / 1000
        while True:
            existing = await self._metadata()
            if names <= existing.keys():
                self._check_counts((wanted[name] for name in raced), existing)
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(names - existing.keys()))
                raise TransportError(f"kafka: topics {missing} were created but never showed up in metadata")
            await asyncio.sleep(0.05)

    async def _default_replication(self) -> int:
        # Three copies where the cluster has them (Kafka's usual production choice), fewer on
        # small clusters, where asking for three would fail.
        try:
            cluster = await self.admin.describe_cluster()
        except kerrors.KafkaError as err:
            raise _error(err, "describing the cluster") from None
        return max(1, min(3, len(cluster.get("brokers") or ())))

    @staticmethod
    def _check_counts(specs: Iterable[TopicSpec], existing: Mapping[str, int]) -> None:
        for spec in specs:
            have = existing.get(spec.name)
            if have is not None and have != spec.partitions:
                raise TopicMismatchError(
                    f"topic {spec.name!r} already exists with {have} partitions, not {spec.partitions}; "
                    "hint: keep the partition count, or use a new topic name")

    async def partitions(self, topic: str) -> int:
        """The partition count of ``topic``; raises :class:`UnknownTopicError` if it does not exist."""
        count = self._partitions.get(topic)
        if count is None:
            count = (await self._metadata()).get(topic)
            if count is None:
                raise UnknownTopicError(f"unknown topic {topic!r} on {self._url}; "
                                        "hint: create it first (dataflow topics create)")
        return count

    # -- clients -------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        producer = KafkaProducer(self)
        self._producers = [p for p in self._producers if not p.stopped]
        self._producers.append(producer)
        return producer

    def consumer(
        self,
        group_id: str,
        topics: Iterable[str],
        *,
        on_assigned: OnPartitions | None = None,
        on_revoked: OnPartitions | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> KafkaConsumer:
        consumer = KafkaConsumer(self, group_id, topics, on_assigned=on_assigned, on_revoked=on_revoked,
                                 auto_offset_reset=auto_offset_reset)
        self._consumers = [c for c in self._consumers if c.state != "stopped"]
        self._consumers.append(consumer)
        return consumer


class KafkaProducer(Producer):
    """Batches records per partition (``linger_ms``, ``max_batch_size``); ``acks=all`` by
    default. ``send_batch`` returns once every record is acknowledged."""

    def __init__(self, transport: KafkaTransport) -> None:
        self._transport = transport
        self._producer: AIOKafkaProducer | None = None
        self._placement: dict[tuple[str, bytes], int] = {}
        self._tps: dict[tuple[str, int], TP] = {}
        self._enqueue = asyncio.Lock()
        self._starting = asyncio.Lock()
        self.stopped = False

    async def start(self) -> None:
        # Concurrent first sends all start the producer: one of them does it.
        async with self._starting:
            if self._producer is None:
                await self._start()

    async def _start(self) -> None:
        config = self._transport.config
        producer = AIOKafkaProducer(
            **config.client_options(),
            acks=config.acks if config.acks == "all" else int(config.acks),
            linger_ms=config.linger_ms,
            max_batch_size=config.max_batch_size,
            # Idempotence needs producer ids (and fails at start on some Kafka-protocol
            # brokers); at-least-once does not need it.
            enable_idempotence=False,
        )
        try:
            await producer.start()
        except Exception as err:  # noqa: BLE001
            await producer.stop()
            raise _error(err, "starting the producer") from None
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None and not self.stopped:
            self.stopped = True
            await self._producer.stop()  # flushes what is pending

    async def _client(self) -> AIOKafkaProducer:
        if self._producer is None:
            await self.start()
        if self.stopped:
            raise TransportError("kafka producer is stopped")
        return self._producer  # type: ignore[return-value]

    async def send(self, record: ProducerRecord) -> tuple[int, int]:
        """One record through aiokafka's accumulator, so concurrent single sends share
        batches (``linger_ms``); ``send_batch`` is the fast path for many records."""
        if record.key is None and record.value is None:
            return (await self.send_batch([record]))[0]  # the client's send() refuses those
        producer = await self._client()
        partition = (await self._partitions([record]))[0]
        try:
            future = await producer.send(record.topic, record.value, record.key, partition=partition,
                                         timestamp_ms=record.timestamp,
                                         headers=list(record.headers) if record.headers else None)
            meta = await future
        except kerrors.KafkaError as err:
            raise _error(err, f"producing to {record.topic}") from None
        self._produced(record.topic, meta.partition, meta.offset + 1)
        return meta.partition, meta.offset

    async def _send_each(self, producer: AIOKafkaProducer, records: Sequence[ProducerRecord],
                         partitions: list[int]) -> list[tuple[int, int]]:
        # A few records: the accumulator path, where concurrent small sends share batches.
        try:
            futures = [await producer.send(r.topic, r.value, r.key, partition=p, timestamp_ms=r.timestamp,
                                           headers=list(r.headers) if r.headers else None)
                       for r, p in zip(records, partitions)]
            metas = await asyncio.gather(*futures)
        except kerrors.KafkaError as err:
            raise _error(err, f"producing to {', '.join(sorted({r.topic for r in records}))}") from None
        for meta in metas:
            self._produced(meta.topic, meta.partition, meta.offset + 1)
        return [(meta.partition, meta.offset) for meta in metas]

    def _produced(self, topic: str, partition: int, end: int) -> None:
        key = (topic, partition)
        tp = self._tps.get(key)
        if tp is None:
            tp = self._tps[key] = TP(topic, partition)
        ends = self._transport.produced_ends
        if ends.get(tp, 0) < end:
            ends[tp] = end

    async def _partitions(self, records: Sequence[ProducerRecord]) -> list[int]:
        """Each record's partition; checks every record before anything is sent."""
        transport = self._transport
        placed = self._placement
        counts: dict[str, int] = {}
        partitions: list[int] = []
        for record in records:  # resolve every partition first: a bad record sends nothing
            topic = record.topic
            count = counts.get(topic)
            if count is None:
                # Known topics only: producing to an unknown one would make the broker
                # auto-create it with its default partition count.
                count = counts[topic] = await transport.partitions(topic)
            partition = record.partition
            if partition is None:
                key = record.key
                if key is None:
                    partition = 0  # as every transport does: keyless records are deterministic
                else:
                    partition = placed.get((topic, key))
                    if partition is None:
                        if len(placed) >= _PLACEMENT_CACHE:
                            placed.clear()
                        partition = placed[(topic, key)] = partition_for(key, count)
            elif not 0 <= partition < count:
                raise TransportError(f"partition {partition} out of range for topic {topic!r} "
                                     f"with {count} partitions")
            partitions.append(partition)
        return partitions

    async def send_batch(self, records: Sequence[ProducerRecord]) -> list[tuple[int, int]]:
        """Each partition's records as one closed batch (split at ``max_batch_size``), sent at
        once without lingering: the batch is already as big as it will get. A few records
        (up to 8) take the per-record path, which shares batches with concurrent senders."""
        if not records:
            return []
        producer = await self._client()
        partitions = await self._partitions(records)
        if len(records) <= _SMALL_BATCH and all(r.key is not None or r.value is not None for r in records):
            return await self._send_each(producer, records, partitions)
        # One BatchBuilder per partition run instead of producer.send() per record: the
        # per-record coroutine, metadata check and accumulator lookup cost more than the
        # pipeline's own work (about 2x on the W1 benchmark).
        groups: dict[tuple[str, int], list[int]] = {}
        for index, (record, partition) in enumerate(zip(records, partitions)):
            groups.setdefault((record.topic, partition), []).append(index)
        pending = []
        try:
            # Enqueue one caller at a time: aiokafka's add_batch waits for the partition's
            # previous batch to drain, and its timeout shrinks faster the more callers queue.
            async with self._enqueue:
                for (topic, partition), indexes in groups.items():
                    builder = producer.create_batch()
                    first = 0
                    for n, index in enumerate(indexes):
                        record = records[index]
                        headers = list(record.headers) if record.headers else []
                        if builder.append(timestamp=record.timestamp, key=record.key, value=record.value,
                                          headers=headers) is None:
                            # full (max_batch_size): send it and start the next one
                            builder.close()
                            pending.append((await producer.send_batch(builder, topic, partition=partition),
                                            indexes[first:n]))
                            builder, first = producer.create_batch(), n
                            builder.append(timestamp=record.timestamp, key=record.key, value=record.value,
                                           headers=headers)
                    builder.close()  # closed batches are sent without waiting for linger_ms
                    pending.append((await producer.send_batch(builder, topic, partition=partition), indexes[first:]))
            metas = await asyncio.gather(*(future for future, _ in pending))
        except kerrors.KafkaError as err:
            raise _error(err, f"producing to {', '.join(sorted({r.topic for r in records}))}") from None
        out: list[tuple[int, int]] = [(0, 0)] * len(records)
        for meta, (_, indexes) in zip(metas, pending):
            partition, base = meta.partition, meta.offset
            for n, index in enumerate(indexes):
                out[index] = (partition, base + n)
            self._produced(meta.topic, partition, base + len(indexes))
        return out

    async def flush(self) -> None:
        if self._producer is not None and not self.stopped:
            await self._producer.flush()


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[KTP]) -> None:
        await self._consumer._on_revoke({TP(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[KTP]) -> None:
        await self._consumer._on_assign({TP(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumer(Consumer):
    """A Kafka consumer group member (range assignor, eager rebalances, manual commits).

    On a rebalance Kafka revokes the whole assignment and then assigns the new one, so
    ``on_revoked`` sees everything this member held and ``on_assigned`` everything it now
    holds; ``on_assigned`` runs after positions are set (committed offset, else
    ``auto_offset_reset``). ``stop()`` runs ``on_revoked`` itself before leaving, because
    aiokafka does not call the listener on close.
    """

    def __init__(
        self,
        transport: KafkaTransport,
        group_id: str,
        topics: Iterable[str],
        *,
        on_assigned: OnPartitions | None = None,
        on_revoked: OnPartitions | None = None,
        auto_offset_reset: OffsetReset = "earliest",
    ) -> None:
        self.topics = frozenset(topics)
        if not self.topics:
            raise ValueError(f"consumer of group {group_id!r} subscribes to no topic")
        if auto_offset_reset not in OFFSET_RESETS:
            raise ValueError(f"auto_offset_reset must be 'earliest' or 'latest', got {auto_offset_reset!r}")
        self._transport = transport
        self._group_id = group_id
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._reset = auto_offset_reset
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TP] = set()
        self._joined = asyncio.Event()
        self._ktps: dict[TP, KTP] = {}
        self._tps: dict[KTP, TP] = {}
        self.state = "new"

    @property
    def group_id(self) -> str:
        return self._group_id

    def _ktp(self, tp: TP) -> KTP:
        ktp = self._ktps.get(tp)
        if ktp is None:
            ktp = self._ktps[tp] = KTP(tp.topic, tp.partition)
            self._tps[ktp] = tp
        return ktp

    def _tp(self, ktp: KTP) -> TP:
        tp = self._tps.get(ktp)
        if tp is None:
            tp = self._tps[ktp] = TP(ktp.topic, ktp.partition)
            self._ktps[tp] = ktp
        return tp

    @property
    def client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise TransportError(f"consumer of group {self._group_id!r} is not started")
        return self._consumer

    async def start(self) -> None:
        if self.state != "new":
            raise TransportError(f"consumer of group {self._group_id!r} was already started")
        existing = await self._transport.describe_topics(self.topics)
        missing = sorted(self.topics - existing.keys())
        if missing:
            # Subscribing would make the broker auto-create them with its default partition count.
            raise UnknownTopicError(f"unknown topic{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                                    f"on {self._transport.url}; hint: create {'them' if len(missing) > 1 else 'it'} "
                                    "first (dataflow topics create)")
        config = self._transport.config
        consumer = AIOKafkaConsumer(
            **config.client_options(),
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset=self._reset,
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_interval_ms=config.heartbeat_interval_ms,
            # The range assignor gives partition N of co-partitioned topics to one member,
            # as the embedded transports do (aiokafka's default is round-robin).
            partition_assignment_strategy=(RangePartitionAssignor,),
            # Short fetch waits keep "read to the end" checks fresh; data still streams.
            fetch_max_wait_ms=config.fetch_max_wait_ms,
        )
        self.state = "started"
        self._consumer = consumer
        try:
            await consumer.start()
            consumer.subscribe(sorted(self.topics), listener=_Listener(self))
            await self._wait_joined()
        except BaseException:
            self.state = "stopped"
            await consumer.stop()
            raise

    async def _wait_joined(self) -> None:
        # aiokafka joins in the background; the interface promises the initial assignment on
        # return. A join takes up to a session timeout (a rebalance waits for old members).
        config = self._transport.config
        budget = (2 * config.session_timeout_ms + config.request_timeout_ms) / 1000
        waiter = asyncio.create_task(self._joined.wait())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=budget)
        finally:
            waiter.cancel()
        if not done:
            raise TransportError(f"consumer of group {self._group_id!r} could not join its group within "
                                 f"{budget:.0f}s on {self._transport.url}")

    async def _on_revoke(self, tps: set[TP]) -> None:
        if not tps & self._assigned:
            return  # stop() already revoked them
        await _call(self._on_revoked, tps, "on_revoked", self._group_id)
        self._assigned -= tps

    async def _on_assign(self, tps: set[TP]) -> None:
        consumer = self.client
        try:
            # Positions first (committed offset, else the reset policy), as the interface
            # promises: the callback may seek or read position().
            await asyncio.gather(*(consumer.position(self._ktp(tp)) for tp in tps))
            self._assigned = set(tps)
            await _call(self._on_assigned, tps, "on_assigned", self._group_id)
        finally:
            self._joined.set()

    async def stop(self) -> None:
        if self.state != "started":
            return
        self.state = "stopping"
        try:
            if self._assigned:
                await _call(self._on_revoked, set(self._assigned), "on_revoked", self._group_id)
        finally:
            self._assigned = set()
            await self.client.stop()
            self.state = "stopped"

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    async def getmany(self, max_records: int = 1000, timeout: float = 1.0) -> dict[TP, list[Message]]:
        if max_records < 1:
            raise ValueError(f"max_records must be >= 1, got {max_records}")
        if self.state != "started":
            if self.state == "new":
                raise TransportError(f"consumer of group {self._group_id!r} is not started")
            return {}
        try:
            fetched = await self.client.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        except kerrors.KafkaError as err:
            raise _error(err, f"fetching for group {self._group_id!r}") from None
        out: dict[TP, list[Message]] = {}
        for ktp, records in fetched.items():
            if not records:
                continue
            tp = self._tp(ktp)
            topic, partition = tp.topic, tp.partition
            out[tp] = [Message(topic, partition, r.offset, r.key, r.value, r.timestamp,
                               tuple(r.headers) if r.headers else ()) for r in records]
        return out

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if not offsets:
            return
        foreign = sorted(set(offsets) - self._assigned)
        if foreign or self.state not in ("started", "stopping"):
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in (foreign or sorted(offsets)))
            raise CommitFailedError(
                f"group {self._group_id!r} cannot commit {names}: not assigned to this consumer; "
                "hint: the partitions were revoked by a rebalance, commit in on_revoked")
        for tp, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"commit offset for {tp.topic}[{tp.partition}] must be >= 0, got {offset}")
        try:
            await self.client.commit({self._ktp(tp): offset for tp, offset in offsets.items()})
        except (kerrors.CommitFailedError, kerrors.IllegalStateError) as err:
            raise CommitFailedError(f"group {self._group_id!r} could not commit: {err}; "
                                    "hint: a rebalance took the partitions, commit in on_revoked") from None
        except kerrors.KafkaError as err:
            raise _error(err, f"committing for group {self._group_id!r}") from None

    async def committed(self, tp: TP) -> int | None:
        try:
            offset = await self.client.committed(self._ktp(tp))
        except kerrors.KafkaError as err:
            raise _error(err, f"reading committed offsets of group {self._group_id!r}") from None
        return None if offset is None or offset < 0 else offset

    def _check_owned(self, tps: Iterable[TP], action: str) -> None:
        foreign = sorted(set(tps) - self._assigned)
        if foreign:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in foreign)
            raise TransportError(f"cannot {action} {names}: not assigned to this consumer of group "
                                 f"{self._group_id!r}")

    def position(self, tp: TP) -> int:
        self._check_owned([tp], "get the position of")
        # aiokafka's position() is a coroutine only to wait for a position to be known;
        # _on_assign() waited for that before the partition became ours.
        state = self.client._subscription.subscription.assignment.state_value(self._ktp(tp))
        if state is None or not state.has_valid_position:
            raise TransportError(f"no position yet for {tp.topic}[{tp.partition}] in group {self._group_id!r}")
        return int(state.position)

    def seek(self, tp: TP, offset: int) -> None:
        self._check_owned([tp], "seek")
        if offset < 0:
            raise ValueError(f"seek offset must be >= 0, got {offset}")
        self.client.seek(self._ktp(tp), offset)

    def pause(self, *tps: TP) -> None:
        self._check_owned(tps, "pause")
        self.client.pause(*(self._ktp(tp) for tp in tps))

    def resume(self, *tps: TP) -> None:
        self._check_owned(tps, "resume")
        self.client.resume(*(self._ktp(tp) for tp in tps))

    def paused(self) -> set[TP]:
        if self._consumer is None:
            return set()
        return {self._tp(ktp) for ktp in self._consumer.paused()} & self._assigned

    def highwater(self, tp: TP) -> int | None:
        """The high watermark of the last fetch (raised to what this transport produced)."""
        produced = self._transport.produced_ends.get(tp)
        hw = None
        if tp in self._assigned and self._consumer is not None:
            hw = self._consumer.highwater(self._ktp(tp))
        if hw is None:
            return produced
        return hw if produced is None else max(hw, produced)

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The largest of the broker's end offset, the last fetch's high watermark and the
        end of what this transport produced (see the module notes: never too low).

        A partition this member owns and fetches but has no high watermark for yet is given
        one fetch round trip to get one, so a fresh consumer does not trust the broker's
        answer alone.
        """
        wanted = list(tps)
        if not wanted:
            return {}
        consumer = self.client
        paused = consumer.paused()
        waiting = [tp for tp in wanted if tp in self._assigned and self._ktp(tp) not in paused
                   and consumer.highwater(self._ktp(tp)) is None]
        deadline = time.monotonic() + self._transport.config.request_timeout_ms / 1000
        while waiting and time.monotonic() < deadline and self.state == "started":
            await asyncio.sleep(0.01)
            waiting = [tp for tp in waiting if tp in self._assigned and consumer.highwater(self._ktp(tp)) is None]
        try:
            broker = await consumer.end_offsets([self._ktp(tp) for tp in wanted])
        except kerrors.KafkaError as err:
            raise _error(err, "reading end offsets") from None
        out = {}
        for tp in wanted:
            end = broker.get(self._ktp(tp), 0)
            hw = self.highwater(tp)
            out[tp] = end if hw is None else max(end, hw)
        return out


async def _call(callback: OnPartitions | None, tps: set[TP], name: str, group_id: str) -> None:
    if callback is None:
        return
    try:
        await callback(set(tps))
    except Exception:
        # As aiokafka does: a failing listener must not wedge the group's rebalance.
        logger.exception("%s callback of group %r failed for %s", name, group_id, sorted(tps))
