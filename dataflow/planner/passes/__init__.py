"""Planner passes: pure functions `Topology -> Topology`, one per file, applied in `PASSES` order."""
from .fuse_stateless import fuse_stateless
from .insert_repartitions import insert_repartitions
from .push_filters_ahead_of_repartitions import push_filters_ahead_of_repartitions

#: The order passes run in; listed once, here.
PASSES = (insert_repartitions, push_filters_ahead_of_repartitions, fuse_stateless)

__all__ = ["PASSES", "insert_repartitions", "push_filters_ahead_of_repartitions", "fuse_stateless"]
