"""Test a pipeline end to end, in-process: the pipeline driver and the records it uses.

>>> from dataflow.testing import PipelineDriver
>>> with PipelineDriver("examples/wordcount.flow") as driver:
...     driver.pipe("lines", "to be or not to be")
...     [pair for pair in driver.read_pairs("word-counts") if pair[0] == "be"]
[('be', {'count': 1}), ('be', {'count': 2})]

In pytest, the ``pipeline_driver`` fixture (``dataflow.pytest_plugin``) opens drivers
and closes them after the test. See docs/testing.md.
"""
from __future__ import annotations

from ..loader import PipelineNotFound, load_pipeline
from .clock import ManualClock
from .driver import DriverError, PipelineDriver, compile_pipeline
from .records import DeadLetter, InputRecord, OutputRecord

__all__ = ["DeadLetter", "DriverError", "InputRecord", "ManualClock", "OutputRecord", "PipelineDriver",
           "PipelineNotFound", "compile_pipeline", "load_pipeline"]
