"""The intermediate representation: nodes, expressions, types and the topology graph.

The IR knows nothing of the language, the planner or the runtime.
"""
from .diagnostics import Diagnostic, PipelineError
from .location import SourceLocation
from .settings import Settings
from .topology import Edge, Topology

__all__ = ["Diagnostic", "PipelineError", "SourceLocation", "Settings", "Edge", "Topology"]
