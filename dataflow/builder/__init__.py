"""The fluent Python API: the only code that creates IR nodes.

>>> from dataflow.builder import Flow, col, agg, tumbling
>>> flow = Flow("fraud")
>>> _ = (flow.source("withdrawals").group_by("account_id")
...      .window(tumbling("1m")).aggregate(total=agg.sum("amount"), name="totals"))
"""
from .expressions import Col, col, fn, key, lit, record, timestamp, udf, value
from .flow import Branches, Flow, Stream, Table, TopicDecl
from .types import Timestamp
from .windows import (WindowSpec, agg, avg, collect, count, hopping, latest, max_, min_, reduce, session, set_,
                      sliding, sum_, tumbling)

__all__ = ["Flow", "Stream", "Table", "Branches", "TopicDecl", "Col", "col", "lit", "key", "value", "timestamp",
           "record", "udf", "fn", "Timestamp", "agg", "tumbling", "hopping", "sliding", "session", "WindowSpec", "count",
           "sum_", "min_", "max_", "avg", "collect", "set_", "latest", "reduce"]
