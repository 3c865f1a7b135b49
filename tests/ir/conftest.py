from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _from_repo_root(repo_root):  # noqa: ANN001 - the shared fixture in tests/conftest.py
    """Builder call sites print relative to the working directory; pin it to the repo root."""
    return repo_root
