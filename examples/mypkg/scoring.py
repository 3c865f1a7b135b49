"""Scores for orders: plain Python functions a pipeline calls as `udf`s.

>>> risk(5000.0, "NO"), risk(10.0, "XX")
(0.5, 0.9)
>>> label(12.5)
'small'
"""
from __future__ import annotations

RISKY_COUNTRIES = frozenset({"XX", "ZZ"})


def risk(amount: float, country: str) -> float:
    """Between 0 and 1: large amounts and unusual countries score higher."""
    score = min(amount / 10_000, 0.5)
    return 0.9 if country in RISKY_COUNTRIES else score


def label(amount: float) -> str:
    return "large" if amount >= 1000 else "small"
