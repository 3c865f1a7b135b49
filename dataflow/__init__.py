"""dataflow: a declarative stream processor.

>>> from dataflow import Flow, col, agg
>>> flow = Flow("fraud")
>>> large = flow.source("withdrawals").filter(col("amount") > 1000)
"""
from __future__ import annotations

from .builder import (Branches, Col, Flow, Stream, Table, Timestamp, TopicDecl, agg, avg, col, collect, count, fn,
                      hopping, key, latest, lit, max_, min_, record, reduce, session, set_, sliding, sum_, timestamp,
                      tumbling, udf, value)
from .ir.records import Record
from .loader import PipelineNotFound, load_pipeline

__version__ = "0.1.0"

__all__ = ["Flow", "Stream", "Table", "Branches", "TopicDecl", "Record", "Col", "col", "lit", "key", "value",
           "timestamp", "Timestamp", "record", "udf", "fn", "agg", "tumbling", "hopping", "sliding", "session", "count",
           "sum_", "min_", "max_", "avg", "collect", "set_", "latest", "reduce"]
__all__ += ["load_pipeline", "PipelineNotFound"]  # loading a pipeline by path: see docs/testing.md
