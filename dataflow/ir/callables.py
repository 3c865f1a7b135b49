"""The Python function a pipeline names by import path (`package.module:function`).

Below the planner and the runtime, so that both can load one (`check` reports a function
that cannot be imported; the runtime calls it) without importing the loader, which sits
above the builder.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any


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
