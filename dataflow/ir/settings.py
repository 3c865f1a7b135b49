"""Pipeline-wide settings, declared in the `.flow` header or on `Flow(...)`, overridable from the CLI."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

GUARANTEES = ("at_least_once", "exactly_once")


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
    commit_every: int = 10_000
    batch_size: int = 1_000
    concurrency: int = 1
    auto_create_topics: bool = True

    def with_overrides(self, overrides: dict[str, Any]) -> "Settings":
        kinds = {f.name: f.type for f in fields(self)}
        clean: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in kinds:
                raise KeyError(f"unknown setting '{key}'; settings are: {', '.join(sorted(kinds))}")
            clean[key] = _coerce(key, kinds[key], value)
        return replace(self, **clean)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _coerce(key: str, kind: Any, value: Any) -> Any:
    text = str(kind)
    if value is None or not isinstance(value, str):
        out = value
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
    if key == "partitions" and (not isinstance(out, int) or out < 1):
        raise ValueError("partitions must be a positive whole number")
    return out


SETTING_NAMES = tuple(f.name for f in fields(Settings))
