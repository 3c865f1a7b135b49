"""Process-wide settings for a worker process (what `dataflow run` owns).

A worker allocates many short-lived tuples and dicts per batch; CPython's
default generation-0 threshold (700) then runs the cyclic collector thousands
of times a second, about 30% of a stateless run. Objects alive at start-up are
frozen out of collection and the threshold raised; reference counting still
frees almost everything at once, so memory stays flat.
"""
from __future__ import annotations

import gc

#: (gen0, gen1, gen2): fixed values, so calling this twice in one process changes nothing
THRESHOLDS = (50_000, 20, 100)


def tune_for_throughput() -> None:
    """Call once, before the worker starts."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
