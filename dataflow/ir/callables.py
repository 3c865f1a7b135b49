"""The Python function a pipeline names by import path (`package.module:function`), and
which of the modules a pipeline names may be imported at all (:class:`ImportPolicy`).

Below the planner and the runtime, so that both can load one (`check` reports a function
that cannot be imported; the runtime calls it) without importing the loader, which sits
above the builder.
"""
from __future__ import annotations

import fnmatch
import importlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED_MODULES_ENV = "DATAFLOW_ALLOWED_MODULES"
NO_IMPORT_ENV = "DATAFLOW_NO_IMPORT"


@dataclass(frozen=True)
class ImportPolicy:
    """What checking, planning or running a pipeline may import of the Python code it names by
    import path (udfs, `reduce` reducers, callable sinks, agents).

    A `.flow` file is code: importing a module runs it. ``imports=False`` imports nothing
    (`dataflow check --no-import`: what cannot be verified without importing is reported as a
    note). ``allowed`` (None: any module) lists the modules that may be imported: an entry
    is a dotted prefix (``mypkg`` allows ``mypkg`` and ``mypkg.scoring``, not ``mypkgx``) or,
    if it holds ``*``, ``?`` or ``[``, a glob matched against the whole module name.

    >>> policy = ImportPolicy(allowed=("mypkg", "storefront.*"))
    >>> [policy.permits(p) for p in ("mypkg.scoring:risk", "storefront.pricing:quote", "os:system")]
    [True, True, False]
    """

    imports: bool = True
    allowed: tuple[str, ...] | None = None

    def permits(self, path: str) -> bool:
        """Whether the module of ``path`` (``package.module:function``) is on the allow-list."""
        if self.allowed is None:
            return True
        module = module_of(path)
        return any(fnmatch.fnmatchcase(module, entry) if any(c in entry for c in "*?[")
                   else module == entry or module.startswith(entry + ".")
                   for entry in self.allowed)

    def describe_allowed(self) -> str:
        """The allow-list as a user wrote it, for messages.

        >>> ImportPolicy(allowed=("mypkg", "storefront")).describe_allowed()
        'mypkg, storefront'
        """
        return ", ".join(self.allowed) if self.allowed else "none"

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> ImportPolicy:
        """The policy in ``DATAFLOW_NO_IMPORT`` (``1``, ``true``, ``yes`` or ``on``: import nothing)
        and ``DATAFLOW_ALLOWED_MODULES`` (entries separated by commas or spaces; unset or empty:
        any module).

        >>> ImportPolicy.from_environment({"DATAFLOW_ALLOWED_MODULES": "mypkg, storefront.*"})
        ImportPolicy(imports=True, allowed=('mypkg', 'storefront.*'))
        """
        env = os.environ if env is None else env
        no_import = env.get(NO_IMPORT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        return cls(imports=not no_import, allowed=parse_allowed([env.get(ALLOWED_MODULES_ENV, "")]))


def parse_allowed(values: list[str] | None) -> tuple[str, ...] | None:
    """Allow-list entries from option values, each of which may hold several separated by commas
    or spaces; None when there are none (no allow-list).

    >>> parse_allowed(["mypkg,storefront", "other"]), parse_allowed([""])
    (('mypkg', 'storefront', 'other'), None)
    """
    entries = tuple(e for value in values or [] for e in re.split(r"[,\s]+", value) if e)
    return entries or None


def module_of(path: str) -> str:
    """The module an import path names.

    >>> module_of("os.path:join")
    'os.path'
    """
    return path.partition(":")[0]


TRUSTED = ImportPolicy()


def load_callable(path: str, near: str | None = None) -> Any:
    """The Python function a pipeline names by import path (`package.module:function`): a
    `udf`, a `reduce` reducer or a sink. Its module is found as an agent's is: from the
    working directory first, then from the directory of ``near`` (the pipeline file), then
    from ``sys.path``. Raises ImportError that names the path.

    >>> load_callable("os.path:join")("a", "b")
    'a/b'
    """
    module_name, _, attr = path.partition(":")
    directories = [str(Path.cwd())]
    if near and Path(near).is_file():
        directories.append(str(Path(near).resolve().parent))
    sys.path[:0] = directories
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"cannot import '{module_name}' for udf \"{path}\": {e}") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while being imported
        raise ImportError(f"importing '{module_name}' for udf \"{path}\" failed: {type(e).__name__}: {e}") from None
    finally:
        del sys.path[:len(directories)]
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ImportError(f"module '{module_name}' has no '{attr}' (udf \"{path}\")")
    if not callable(target):
        raise ImportError(f"udf \"{path}\" is not callable")
    return target
