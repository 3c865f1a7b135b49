"""dataflow: a declarative stream processor.

>>> from dataflow import Flow, col
>>> flow = Flow("fraud")
>>> large = flow.source("withdrawals").filter(col("amount") > 1000)
"""
from __future__ import annotations

__version__ = "0.1.0"
