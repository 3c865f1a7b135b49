"""Find the `Flow` a user means: a `.flow` file, a Python file, or `module:attribute`.

>>> load_pipeline("examples/wordcount.py").name
'wordcount'
"""
from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path
from typing import Any

from .builder import Flow


class PipelineNotFound(Exception):
    """The argument does not name a pipeline; the message says why and what to try."""


def load_pipeline(ref: str, overrides: dict[str, Any] | None = None) -> Flow:
    """The Flow named by `ref`, with settings overridden."""
    flow = _load(ref, overrides)
    if overrides:
        flow.configure(**{k: v for k, v in overrides.items() if v is not None})
    return flow


def _load(ref: str, overrides: dict[str, Any] | None) -> Flow:
    path = Path(ref)
    if ref.endswith(".flow"):
        if not path.exists():
            raise PipelineNotFound(f"{ref}: no such file")
        from .lang import load_flow  # the language is optional for Python pipelines
        return load_flow(path, {k: str(v) for k, v in (overrides or {}).items() if v is not None})
    if ref.endswith(".py") or path.exists():
        if not path.exists():
            raise PipelineNotFound(f"{ref}: no such file")
        sys.path.insert(0, str(path.resolve().parent))
        try:
            namespace = runpy.run_path(str(path), run_name=f"__dataflow_{path.stem}__")
        finally:
            sys.path.pop(0)
        return _pick(namespace, ref)
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules where the user stands come first
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise PipelineNotFound(f"{ref}: cannot import module '{module_name}': {e}") from None
        finally:
            sys.path.pop(0)
        flow = getattr(module, attr, None)
        if not isinstance(flow, Flow):
            raise PipelineNotFound(f"{ref}: '{attr}' is not a dataflow.Flow in module '{module_name}'")
        return flow
    raise PipelineNotFound(f"{ref}: expected a .flow file, a .py file, or module:attribute")


def _pick(namespace: dict[str, Any], ref: str) -> Flow:
    flows = {name: v for name, v in namespace.items() if isinstance(v, Flow)}
    if "flow" in flows:
        return flows["flow"]
    if len(flows) == 1:
        return next(iter(flows.values()))
    if not flows:
        raise PipelineNotFound(f"{ref}: defines no dataflow.Flow; create one with Flow(\"name\")")
    raise PipelineNotFound(f"{ref}: defines several flows ({', '.join(sorted(flows))}); "
                           f"name one with {ref}:NAME or call it `flow`")
