"""Pipeline-wide settings, declared in the `.flow` header or on `Flow(...)`, overridable from the
environment (`DATAFLOW_<SETTING>`) and the CLI (`--set name=value`).

Every value, from wherever it comes, goes through one parser, :func:`parse_setting`: text as typed
on a command line (`500ms`, `true`, `8`) or a Python value (`0.5`, `True`, `8`, a timedelta).

>>> parse_setting("commit_interval", "500ms"), parse_setting("auto_create_topics", "no")
(0.5, False)
>>> parse_setting("auto_create_topics", "flase")
Traceback (most recent call last):
...
dataflow.ir.settings.SettingError: setting 'auto_create_topics' must be true or false, not 'flase'
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any

from .durations import parse_duration
from .timestamps import parse_iso
from .bounds import setting_problem
from .urls import redact_urls_in, refusal

GUARANTEES = ("at_least_once", "exactly_once")
KAFKA_CHOICES = {
    "kafka_security_protocol": ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    "kafka_sasl_mechanism": ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
    "kafka_auto_offset_reset": ("earliest", "latest"),
    "kafka_acks": ("all", "1", "0"),
}
CHOICES = {"processing_guarantee": GUARANTEES, **KAFKA_CHOICES}
#: float settings that hold a duration in seconds: `500ms`, `2s`, or a number of seconds
DURATION_SETTINGS = frozenset({"commit_interval", "max_task_idle", "max_future_skew"})
#: Kafka options in milliseconds: a whole number of milliseconds, or a duration such as `30s`
MILLISECOND_SETTINGS = frozenset({"kafka_session_timeout_ms", "kafka_heartbeat_interval_ms", "kafka_linger_ms",
                                  "kafka_fetch_max_wait_ms"})
#: counts below 1 make no sense (no partitions, empty batches, no actors, a commit before any record)
POSITIVE_SETTINGS = frozenset({"partitions", "commit_every", "batch_size", "concurrency"})
ENV_PREFIX = "DATAFLOW_"
#: settings the environment does not set as DATAFLOW_<SETTING>: the Kafka driver reads
#: DATAFLOW_KAFKA_<OPTION> itself, below the header and the broker URL (dataflow.transport.kafka)
_NOT_FROM_ENV_PREFIX = "kafka_"
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_WHOLE = re.compile(r"^[+-]?\d+$")


class SettingError(ValueError):
    """A setting value that does not parse; ``expected`` says what would.

    The message names the setting; callers that know where the value came from (a flag, a
    variable, a header line) say so, and what was expected, with the ``expected`` text.
    """

    def __init__(self, name: str, value: Any, expected: str) -> None:
        shown = "***" if isinstance(value, Secret) else value
        super().__init__(f"setting '{name}' must be {expected}, not {shown!r}")
        self.name = name
        self.value = value
        self.expected = expected

    @property
    def reason(self) -> str:
        """What is wrong, for a message that names where the value came from."""
        return f"must be {self.expected}"


class RefusedSetting(SettingError):
    """A value that parses but must not be used: past its bounds (`ir.bounds`), or a broker
    URL with a password. The message is `problem` alone, so a secret is never echoed."""

    def __init__(self, name: str, problem: str) -> None:
        ValueError.__init__(self, problem)
        self.name = name
        self.value = "***"
        self.expected = problem

    @property
    def reason(self) -> str:
        return self.expected


class UnknownSetting(SettingError, KeyError):
    """A setting name that does not exist; the message suggests the closest one."""

    def __init__(self, name: str) -> None:
        ValueError.__init__(self, f"unknown setting '{name}'; {suggest_setting(name)}")
        self.name = name
        self.value = None
        self.expected = ""

    def __str__(self) -> str:  # not KeyError's quoted repr
        return str(self.args[0])


def suggest_setting(name: str) -> str:
    """A did-you-mean hint for a setting name, or the list of settings.

    >>> suggest_setting("comit_interval")
    "did you mean 'commit_interval'?"
    """
    close = difflib.get_close_matches(name.lower(), SETTING_NAMES, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else "settings are: " + ", ".join(sorted(SETTING_NAMES))


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
        """These settings with `overrides` applied, each value parsed by :func:`parse_setting`."""
        return replace(self, **{key: parse_setting(key, value) for key, value in overrides.items()})

    def to_json(self) -> dict[str, Any]:
        # Secrets become "***": plans are printed and saved.
        return {f.name: _public(getattr(self, f.name)) for f in fields(self)}


def _public(value: Any) -> Any:
    return str(value) if isinstance(value, Secret) else value


SETTING_NAMES = tuple(f.name for f in fields(Settings))


def _kind(name: str, annotation: str) -> str:
    """Which of the parsers below reads setting `name` (annotated `annotation`)."""
    if name in CHOICES:
        return "choice"
    if name in DURATION_SETTINGS:
        return "seconds"
    if name in MILLISECOND_SETTINGS:
        return "milliseconds"
    if name == "min_event_time":
        return "iso"
    if annotation.startswith("Secret"):
        return "secret"
    return annotation.replace(" ", "").split("|")[0]  # int, bool, str


_KINDS = {f.name: _kind(f.name, str(f.type)) for f in fields(Settings)}
OPTIONAL_SETTINGS = frozenset(f.name for f in fields(Settings) if str(f.type).endswith("None"))
#: settings whose value is text: a `.flow` header writes them as strings or bare words
TEXT_SETTINGS = frozenset(name for name, kind in _KINDS.items() if kind in ("str", "secret", "choice", "iso"))


def expected_for(name: str) -> str:
    """What a value of setting `name` looks like, in words.

    >>> expected_for("partitions"), expected_for("max_task_idle")
    ('a whole number >= 1', 'a duration >= 0 such as 500ms, 30s or 1.5 (seconds)')
    """
    kind = _KINDS[name]
    if kind == "int":
        return "a whole number >= 1" if name in POSITIVE_SETTINGS else "a whole number >= 0"
    return {
        "bool": "true or false",
        "seconds": "a duration >= 0 such as 500ms, 30s or 1.5 (seconds)",
        "milliseconds": "a duration such as 30s or 500ms, or a whole number of milliseconds",
        "iso": "ISO-8601 text such as 1970-01-01T00:00:00Z",
        "choice": "one of " + ", ".join(CHOICES.get(name, ())),
    }.get(kind, "text")


def parse_setting(name: str, value: Any) -> Any:
    """The value of setting `name`, checked: from text as typed (`"500ms"`, `"true"`, `"8"`)
    or from a Python value (`0.5`, `True`, `8`, `timedelta(seconds=1)`). ``None`` restores
    the default of optional settings; so does empty text.

    >>> parse_setting("partitions", "8"), parse_setting("max_future_skew", "1h"), parse_setting("kafka_linger_ms", "1s")
    (8, 3600.0, 1000)
    >>> parse_setting("partitons", "8")
    Traceback (most recent call last):
    ...
    dataflow.ir.settings.UnknownSetting: unknown setting 'partitons'; did you mean 'partitions'?
    """
    kind = _KINDS.get(name)
    if kind is None:
        raise UnknownSetting(name)
    if name in OPTIONAL_SETTINGS and (value is None or value == ""):
        return None
    out = _PARSERS[kind](name, value)
    if out is _BAD:
        raise SettingError(name, value, expected_for(name))
    if name == "broker" and isinstance(out, str) and (problem := refusal(out, "the broker setting")):
        raise RefusedSetting(name, problem)  # settings are printed in every plan
    if (problem := setting_problem(name, out)) is not None:
        raise RefusedSetting(name, problem)
    return out


_BAD = object()


def _whole(name: str, value: Any) -> Any:
    if isinstance(value, str) and _WHOLE.match(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return _BAD
    return value if value >= (1 if name in POSITIVE_SETTINGS else 0) else _BAD


def _bool(name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return _BAD


def _seconds(name: str, value: Any) -> Any:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)  # a plain number is seconds
        except ValueError:
            try:
                return _non_negative(parse_duration(text) / 1000)
            except ValueError:
                return _BAD
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _BAD
    return _non_negative(value)


def _non_negative(value: float) -> Any:
    return value if math.isfinite(value) and value >= 0 else _BAD


def _milliseconds(name: str, value: Any) -> Any:
    if isinstance(value, timedelta):
        return _non_negative(round(value.total_seconds() * 1000))
    if isinstance(value, str) and not _WHOLE.match(value.strip()):
        try:
            return parse_duration(value)
        except ValueError:
            return _BAD
    return _whole(name, value)


def _choice(name: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # `kafka_acks 1` in a header is a number
    if not isinstance(value, str):
        return _BAD
    upper = name in ("kafka_security_protocol", "kafka_sasl_mechanism")
    normal = value.strip().upper() if upper else value.strip().lower()
    return normal if normal in CHOICES[name] else _BAD


def _iso(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return _BAD
    try:
        parse_iso(value)
    except ValueError:
        return _BAD
    return value


def _text(name: str, value: Any) -> Any:
    return value if isinstance(value, str) else _BAD


def _secret(name: str, value: Any) -> Any:
    if isinstance(value, Secret):
        return value
    return Secret(value) if isinstance(value, str) else _BAD


_PARSERS = {"int": _whole, "bool": _bool, "seconds": _seconds, "milliseconds": _milliseconds, "choice": _choice,
            "iso": _iso, "str": _text, "secret": _secret}


def environment_name(name: str) -> str:
    """The environment variable of setting `name`.

    >>> environment_name("commit_interval")
    'DATAFLOW_COMMIT_INTERVAL'
    """
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class EnvironmentSetting:
    """A setting read from a variable, kept with the variable's name for messages."""

    variable: str
    text: str
    value: Any


class BadEnvironment(ValueError):
    """A DATAFLOW_ variable that is not a setting or does not parse: the message names it."""


def from_environment(env: Mapping[str, str], ignore: frozenset[str] = frozenset()) -> dict[str, EnvironmentSetting]:
    """Settings given as `DATAFLOW_<SETTING>` variables in `env`, parsed. Empty variables are unset.

    `DATAFLOW_KAFKA_*` are left to the Kafka driver, and names in `ignore` (such as
    `DATAFLOW_LOG_LEVEL`) belong to someone else. Another `DATAFLOW_` variable whose name is
    close to a setting's is refused as a likely typo; the rest are not ours and are ignored.

    >>> from_environment({"DATAFLOW_COMMIT_INTERVAL": "500ms", "HOME": "/root"})["commit_interval"].value
    0.5
    >>> from_environment({"DATAFLOW_COMIT_INTERVAL": "500ms"})
    Traceback (most recent call last):
    ...
    dataflow.ir.settings.BadEnvironment: DATAFLOW_COMIT_INTERVAL is not a setting; did you mean DATAFLOW_COMMIT_INTERVAL?
    """
    ours = {environment_name(n): n for n in SETTING_NAMES if not n.startswith(_NOT_FROM_ENV_PREFIX)}
    out: dict[str, EnvironmentSetting] = {}
    for variable in sorted(env):
        text = env[variable]
        if not variable.startswith(ENV_PREFIX) or variable in ignore or text == "":
            continue
        name = ours.get(variable)
        if name is None:
            if variable.startswith(ENV_PREFIX + "KAFKA_"):
                continue
            close = difflib.get_close_matches(variable, list(ours), n=1, cutoff=0.85)
            if close:
                raise BadEnvironment(f"{variable} is not a setting; did you mean {close[0]}?")
            continue
        try:
            out[name] = EnvironmentSetting(variable, text, parse_setting(name, text))
        except SettingError as e:
            raise BadEnvironment(f"{variable}={redact_urls_in(text)}: {e.reason}") from None
    return out
