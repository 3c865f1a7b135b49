"""Shared test configuration. Keep it small: each test directory adds its own fixtures."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Pipeline fixtures are data read by tests, not modules to import (pytest runs --doctest-modules).
collect_ignore = ["fixtures"]


@pytest.fixture
def repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root: plan locations are relative to the working directory."""
    monkeypatch.chdir(REPO_ROOT)
    return REPO_ROOT


@pytest.fixture
def examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python agents the example pipelines call (`examples/storefront/`) import by name, as they do
    for a pipeline file in `examples/`, whatever file name the pipeline text is parsed under."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "examples"))


# The Kafka-protocol test broker: any test, in any directory, may take `kafka_url`.
pytest_plugins = ["tests.kafka_broker"]
