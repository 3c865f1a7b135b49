"""The `.flow` language: parse, transform into builder calls, diagnose, format.

>>> from dataflow.lang import parse_flow
>>> flow = parse_flow('''
... pipeline fraud
... record Withdrawal { account_id: str, amount: float }
... topic withdrawals: Withdrawal key str
... topic alerts
... stream large = withdrawals | filter amount > 1000
... large | to topic alerts
... ''', "fraud.flow")
>>> sorted(n.name for n in flow.topology().nodes())
['large', 'large.to_alerts', 'withdrawals']

Only the CLI imports this package; it imports the builder, the IR and the planner.
"""
from .diagnostics import FlowError, format_diagnostics
from .fmt import format_source
from .load import load_flow, parse_flow

__all__ = ["load_flow", "parse_flow", "format_diagnostics", "format_source", "FlowError"]
