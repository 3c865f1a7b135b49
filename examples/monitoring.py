"""Heartbeats and a row for every minute: timers declared in the pipeline.

Every ten seconds the service says it is alive on `heartbeats`. Every minute a
tick joins the withdrawals on their way to a per-minute count, so a minute with
no withdrawals still gets its row (0 withdrawals).

    dataflow plan examples/monitoring.py
"""
from dataflow import Flow, Record, agg, col, fn, timestamp


class Withdrawal(Record):
    account_id: str
    amount: float


flow = Flow("monitoring")

heartbeat = flow.every("10s", value={"service": "fraud", "at": fn.now()}, name="heartbeat")
heartbeat.to("heartbeats")

minute_of_tick = fn.format_time(timestamp(), "%Y-%m-%d %H:%M")
ticks = flow.every("1m", value={"minute": minute_of_tick, "amount": 0.0, "withdrawal": False}, name="ticks")
withdrawals = flow.source("withdrawals", key=str, value=Withdrawal)
seen = withdrawals.map({"minute": minute_of_tick, "amount": col("amount"), "withdrawal": True}, name="seen")
per_minute = ticks.merge(seen).group_by("minute").aggregate(
    withdrawals=agg.sum(fn.if_(col("withdrawal"), 1, 0)), total=agg.sum("amount"), name="per_minute"
)
per_minute.changes().to("per-minute")
