"""Find the `Flow` a user means: a `.flow` file, a Python file, or `module:attribute`.

>>> load_pipeline("examples/wordcount.py").name
'wordcount'
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .builder import Flow
from .ir.callables import TRUSTED, ImportPolicy
from .ir.objects import AGENT, AgentLike, PipelineNotFound, Wanted, agents_in, load_agent, load_object

__all__ = ["AGENT", "FLOW", "AgentLike", "PipelineNotFound", "Wanted", "agents_in", "load_agent", "load_object",
           "load_pipeline"]


FLOW = Wanted(Flow, "flow", "dataflow.Flow", "flows", 'create one with Flow("name")',
              "name one with {ref}:NAME or call it `flow`", "expected a .flow file, a .py file, or module:attribute")


NOT_WITHOUT_IMPORTS = ("a Python pipeline runs when it is loaded; only a .flow file can be checked or planned "
                       "without importing code")


def load_pipeline(ref: str | os.PathLike[str], overrides: dict[str, Any] | None = None,
                  imports: ImportPolicy = TRUSTED) -> Flow:
    """The pipeline that ``ref`` names, as a :class:`~dataflow.Flow`, with the settings in
    ``overrides`` changed (as ``dataflow run --set name=value`` changes them).

    ``ref`` is what every ``dataflow`` command takes:

    * a ``.flow`` file (its locations name the path as given);
    * a Python file: its ``Flow`` called ``flow``, or its only one (the file is run, with
      its own directory first on ``sys.path``);
    * ``package.module:attribute``, imported from the working directory first.

    Loading a `.flow` file checks it, which imports the Python code it names as ``imports``
    permits. A Python pipeline is Python: it runs when it is loaded, so it is refused when
    ``imports`` allows no import.

    Raises :class:`PipelineNotFound` when ``ref`` names no pipeline, and the language's
    ``FlowError`` (every diagnostic, located) for a ``.flow`` file with mistakes. Compile
    the Flow with ``dataflow.planner.plan(flow.topology())``.

    >>> flow = load_pipeline("examples/wordcount.flow", {"partitions": 2})
    >>> flow.name, flow.settings.partitions
    ('wordcount', 2)
    >>> load_pipeline("examples.wordcount:flow").name
    'wordcount'
    >>> load_pipeline("examples/nothing.flow")
    Traceback (most recent call last):
    ...
    dataflow.ir.objects.PipelineNotFound: examples/nothing.flow: no such file
    >>> load_pipeline("examples/wordcount.py", imports=ImportPolicy(imports=False))
    Traceback (most recent call last):
    ...
    dataflow.ir.objects.PipelineNotFound: examples/wordcount.py: a Python pipeline runs when it is loaded; only a .flow file can be checked or planned without importing code
    """
    ref = os.fspath(ref)
    path = Path(ref)
    if ref.endswith(".flow"):
        if not path.exists():
            raise PipelineNotFound(ref, "no such file")
        from .lang import load_flow  # the language is optional for Python pipelines
        flow = load_flow(path, {k: v for k, v in (overrides or {}).items() if v is not None}, imports)
    else:
        python = path.is_file() and path.suffix == ".py" or ":" in ref and not path.exists()
        if python and not imports.imports:
            raise PipelineNotFound(ref, NOT_WITHOUT_IMPORTS)
        flow = load_object(ref, FLOW)  # refuses, without running it, a file that is not Python
    if overrides:
        flow.configure(**{k: v for k, v in overrides.items() if v is not None})
    return flow


