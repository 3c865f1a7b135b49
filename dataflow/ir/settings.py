"""Pipeline-wide settings, declared in the `.flow` header or on `Flow(...)`, overridable from the CLI."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from .durations import parse_duration
from .timestamps import parse_iso
from .urls import refusal

#: float settings that hold a duration in seconds; from the command line they also take `500ms`, `2s`
DURATION_SETTINGS = frozenset({"commit_interval", "max_task_idle", "max_future_skew"})
GUARANTEES = ("at_least_once", "exactly_once")
KAFKA_CHOICES = {
    "kafka_security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "kafka_sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "kafka_auto_offset_reset": ("earliest", "latest"),
    "kafka_acks": ("all", "1", "0"),
}


class Secret:
    """A setting value that must never be printed: plans, logs and reprs show ``***``.

    >>> s = Secret("hunter2")
    >>> s, str(s), s.reveal()
    (Secret('***'), '***', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The plain text, for the one place that needs it (the Kafka client)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """What a pipeline needs besides its graph.

    >>> Settings(partitions=4).with_overrides({"partitions": "2"}).partitions
    2
    """

    broker: str | None = None  # None: the embedded local log in data_dir
    partitions: int = 4
    processing_guarantee: str = "at_least_once"
    data_dir: str | None = None  # None: ./.dataflow/<pipeline>
    commit_interval: float = 1.0
    commit_every: int = 50_000
    batch_size: int = 1_000
    concurrency: int = 1
    auto_create_topics: bool = True
    # How long a task that reads several inputs waits for one that is caught up and empty
    # before it goes on without it (seconds; Kafka Streams' max.task.idle.ms). 0: wait only
    # for records known to be in the log. See "Time-aligned inputs" in docs/state.md.
    max_task_idle: float = 0.0
    # Kafka client options (kafka:// brokers only). None: the broker URL's query, then
    # DATAFLOW_KAFKA_<OPTION> in the environment, then the driver's default
    # (dataflow.transport.kafka.KafkaConfig).
    kafka_client_id: str | None = None
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: Secret | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_ssl_password: Secret | None = None
    kafka_session_timeout_ms: int | None = None
    kafka_heartbeat_interval_ms: int | None = None
    kafka_auto_offset_reset: str | None = None
    kafka_linger_ms: int | None = None
    kafka_max_batch_size: int | None = None
    kafka_acks: str | None = None
    kafka_replication_factor: int | None = None
    kafka_fetch_max_wait_ms: int | None = None
    # Event-time guards (docs/state.md, "Event time"): a record whose event time is before
    # min_event_time (ISO-8601), or more than max_future_skew (seconds) after the wall clock,
    # goes to the dead-letter topic and never moves stream time.
    min_event_time: str = "1970-01-01T00:00:00Z"
    max_future_skew: float = 86_400.0

    def with_overrides(self, overrides: dict[str, Any]) -> "Settings":
        kinds = {f.name: f.type for f in fields(self)}
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in kinds:
                raise KeyError(f"unknown setting '{key}'; settings are: {', '.join(sorted(kinds))}")
            clean[key] = _coerce(key, kinds[key], value)
        return replace(self, **clean)

    def to_json(self) -> dict[str, Any]:
        # Secrets become "***": plans are printed and saved.
        return {f.name: _public(getattr(self, f.name)) for f in fields(self)}


def _public(value: Any) -> Any:
    return str(value) if isinstance(value, Secret) else value


def _coerce(key: str, kind: Any, value: Any) -> Any:
    text = str(kind)
    if text.startswith("Secret"):
        return value if value is None or isinstance(value, Secret) else Secret(str(value))
    if value is None or not isinstance(value, str):
        out = value
    elif key in DURATION_SETTINGS and value.strip() and value.strip()[-1].isalpha():
        try:
            out = parse_duration(value) / 1000  # `--set max_task_idle=500ms`; float settings hold seconds
        except ValueError as e:
            raise ValueError(f"setting '{key}': {e}") from None
    elif text.startswith(("int", "float")):
        number = int if text.startswith("int") else float
        try:
            out = number(value)
        except ValueError:
            what = "a whole number" if number is int else "a number"
            raise ValueError(f"setting '{key}' must be {what}, not {value!r}") from None
    elif text.startswith("bool"):
        out = value.lower() in ("1", "true", "yes", "on")
    else:
        out = value
    if key == "processing_guarantee" and out not in GUARANTEES:
        raise ValueError(f"processing_guarantee must be one of {', '.join(GUARANTEES)}, not {out!r}")
    if key == "min_event_time":
        try:
            parse_iso(str(out))
        except ValueError:
            raise ValueError(f"min_event_time must be ISO-8601 text such as 1970-01-01T00:00:00Z, "
                             f"not {out!r}") from None
    if key in DURATION_SETTINGS and (isinstance(out, bool) or not isinstance(out, (int, float)) or out < 0):
        raise ValueError(f"setting '{key}' must be a duration >= 0 (seconds, or like 500ms)")
    if key == "broker" and isinstance(out, str) and (problem := refusal(out, "the broker setting")):
        raise ValueError(problem)  # settings are printed in every plan
    if key == "partitions" and (not isinstance(out, int) or out < 1):
        raise ValueError("partitions must be a positive whole number")
    if key in KAFKA_CHOICES and out is not None:
        choices = KAFKA_CHOICES[key]
        normal = str(out).upper() if key in ("kafka_security_protocol", "kafka_sasl_mechanism") else str(out).lower()
        if normal not in choices:
            raise ValueError(f"{key} must be one of {', '.join(choices)}, not {out!r}")
        out = normal
    if key.startswith("kafka_") and text.startswith("int") and out is not None and (
            not isinstance(out, int) or isinstance(out, bool) or out < 0):
        raise ValueError(f"setting '{key}' must be a whole number >= 0")
    return out


SETTING_NAMES = tuple(f.name for f in fields(Settings))
