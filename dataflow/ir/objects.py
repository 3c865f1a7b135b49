"""The Python object a reference names (a ``.py`` file's attribute, or ``module:attribute``),
and the agents a pipeline names by import path.

Below the planner and the runtime, so that `check` (which reports an agent that cannot be
found) and the runtime (which calls it) find agents without importing the loader, which sits
above the builder and the language.
"""
from __future__ import annotations

import importlib
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class PipelineNotFound(Exception):
    """The argument does not name a pipeline; the message says why and what to try.

    ``ref`` is the argument and ``reason`` the message without it, for callers that
    print their own prefix.
    """

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(f"{ref}: {reason}")
        self.ref = ref
        self.reason = reason


@dataclass(frozen=True)
class Wanted:
    """What kind of object a reference must name, and how to say it is not there."""

    cls: type
    preferred: str  # the attribute picked among several: `flow`, `app`
    label: str  # `dataflow.Flow`
    plural: str  # `flows`
    none_hint: str
    several_hint: str  # may use {ref}
    expected: str  # what a reference should look like


@runtime_checkable
class AgentLike(Protocol):
    """What pipelines need of an agent (`dataflow.runtime.agents.Agent`): its app, its
    function, and asking and casting in batches. Checked by shape, so that finding an agent
    (at plan time too) does not import the runtime."""

    app: Any
    fun: Any
    name: str

    async def kvjoin(self, items: Any, **options: Any) -> list[Any]: ...

    async def cast_many(self, items: Any) -> None: ...


AGENT = Wanted(AgentLike, "agent", "dataflow agent", "agents", "decorate an async function with @app.agent",
               "name one with {ref}:NAME", 'expected an import path, "package.module:agent"')


def load_object(ref: str, wanted: Wanted) -> Any:
    """The object of type ``wanted.cls`` that ``ref`` names: a ``.py`` file (its attribute
    ``wanted.preferred``, or its only such object) or ``module:attribute``.

    >>> load_object("examples/wordcount.py", AGENT)
    Traceback (most recent call last):
    ...
    dataflow.ir.objects.PipelineNotFound: examples/wordcount.py: defines no dataflow agent; decorate an async function with @app.agent
    """
    path = Path(ref)
    if ref.endswith(".py") or path.exists():
        if not path.is_file():
            raise PipelineNotFound(ref, "no such file")
        if path.suffix != ".py":  # never run a data file, or /etc/passwd, as Python
            raise PipelineNotFound(ref, f"not a pipeline file; {wanted.expected}")
        sys.path.insert(0, str(path.resolve().parent))
        try:
            namespace = runpy.run_path(str(path), run_name=f"__dataflow_{path.stem}__")
        finally:
            sys.path.pop(0)
        found = {name: v for name, v in namespace.items() if isinstance(v, wanted.cls)}
        if wanted.preferred in found:
            return found[wanted.preferred]
        if len(found) == 1:
            return next(iter(found.values()))
        if not found:
            raise PipelineNotFound(ref, f"defines no {wanted.label}; {wanted.none_hint}")
        raise PipelineNotFound(ref, f"defines several {wanted.plural} ({', '.join(sorted(found))}); "
                                    + wanted.several_hint.format(ref=ref))
    if ":" in ref:
        module_name, _, attr = ref.partition(":")
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: modules where the user stands come first
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise PipelineNotFound(ref, f"cannot import module '{module_name}': {e}") from None
        finally:
            sys.path.pop(0)
        obj = getattr(module, attr, None)
        if not isinstance(obj, wanted.cls):
            raise PipelineNotFound(ref, f"'{attr}' is not a {wanted.label} in module '{module_name}'")
        return obj
    raise PipelineNotFound(ref, wanted.expected)


def load_agent(ref: str, near: str | None = None) -> Any:
    """The agent that ``ref`` (``"package.module:agent"``) names. Its module is imported like
    ``python -m`` does, from the working directory first, then from the directory ``near``
    (the pipeline file that names the agent), then from ``sys.path``. A module that raises
    while it is imported is reported as :class:`PipelineNotFound` too.

    >>> load_agent("dataflow.ir.objects:AGENT")
    Traceback (most recent call last):
    ...
    dataflow.ir.objects.PipelineNotFound: dataflow.ir.objects:AGENT: 'AGENT' is not a dataflow agent in module 'dataflow.ir.objects'
    """
    directory = str(Path(near).resolve().parent) if near and Path(near).is_file() else None
    if directory is not None:
        sys.path.insert(0, directory)
    try:
        return load_object(ref, AGENT)
    except PipelineNotFound:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module failed while being imported
        raise PipelineNotFound(ref, f"importing it failed: {type(e).__name__}: {e}") from None
    finally:
        if directory is not None:
            sys.path.remove(directory)


def agents_in(ref: str) -> list[str]:
    """The names of the agents in the module of ``ref``, when it is imported (for hints)."""
    module = sys.modules.get(ref.partition(":")[0])
    return sorted(name for name, value in vars(module).items() if isinstance(value, AgentLike)) if module else []
