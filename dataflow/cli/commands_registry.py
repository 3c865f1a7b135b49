"""Imports every module of the CLI package that adds commands to `dataflow.cli.app`.

Each command family lives in its own module (`topics.py`, `query.py`, ...) and registers
with `@app.command`; listing them here, once, keeps `__init__` small.
"""
from . import query  # noqa: F401,E402
from . import ask  # noqa: F401
from . import topics  # noqa: F401
from . import repair  # noqa: F401
