"""The planner: validation, passes, sub-topologies, and the `ExecutionPlan`.

>>> from dataflow import Flow, col
>>> flow = Flow("app")
>>> flow.source("clicks").filter(col("n") > 1).to("busy")
>>> [a.name for a in plan(flow.topology()).agents]
['clicks']
"""
from __future__ import annotations

from ..ir.topology import Topology
from .plan import AgentPlan, ExecutionPlan, StorePlan, TopicPlan, build_plan, run_passes
from .validate import check


def plan(topology: Topology) -> ExecutionPlan:
    """Validate and compile a topology; raises `PipelineError` with every diagnostic."""
    return build_plan(topology)


__all__ = ["plan", "check", "run_passes", "ExecutionPlan", "AgentPlan", "TopicPlan", "StorePlan"]
