"""Reducers `(accumulator, value) -> accumulator` for `reduce(...)` aggregations.

>>> longest("ab", "abc"), top(3, 7)
('abc', 7)
"""
from __future__ import annotations

from typing import Any


def longest(acc: str, value: str) -> str:
    """The longest text seen (the earlier one on a tie)."""
    return value if len(value or "") > len(acc or "") else acc


def top(acc: Any, value: Any) -> Any:
    """The largest value seen."""
    return value if acc is None or value > acc else acc
