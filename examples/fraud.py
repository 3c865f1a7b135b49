"""Fraud alerts: large withdrawals, summed per account over one-minute windows.

An account with three or more large withdrawals in a minute raises an alert.

    dataflow plan examples/fraud.py
"""
from datetime import datetime

from dataflow import Flow, Record, agg, col, tumbling


class Withdrawal(Record):
    account_id: str
    amount: float
    country: str
    ts: datetime


flow = Flow("fraud")

withdrawals = flow.source("withdrawals", value=Withdrawal, timestamp="ts")  # keyless data: no key type
large = withdrawals.filter(col("amount") > 1000, name="large")
per_account = (
    large.group_by("account_id")
    .window(tumbling("1m", grace="10s", on="ts"))
    .aggregate(total=agg.sum("amount"), n=agg.count(), name="per_account")
)
per_account.changes().filter(col("n") >= 3, name="alerts").to("alerts")
