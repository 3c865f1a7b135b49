"""The planner: validation, passes, sub-topologies, and the `ExecutionPlan`.

>>> from dataflow import Flow, col
>>> flow = Flow("app")
>>> flow.source("clicks").filter(col("n") > 1).to("busy")
>>> [a.name for a in plan(flow.topology()).agents]
['clicks']
"""
from __future__ import annotations

from ..ir.callables import TRUSTED, ImportPolicy
from ..ir.topology import Topology
from .plan import AgentPlan, ExecutionPlan, StorePlan, TopicPlan, build_plan, run_passes
from .validate import check, not_imported


def plan(topology: Topology, imports: ImportPolicy = TRUSTED) -> ExecutionPlan:
    """Validate and compile a topology; raises `PipelineError` with every diagnostic.

    Validating imports the Python code the pipeline names, as ``imports`` permits."""
    return build_plan(topology, imports)


__all__ = ["plan", "check", "not_imported", "run_passes", "ExecutionPlan", "AgentPlan", "TopicPlan", "StorePlan",
           "ImportPolicy"]
