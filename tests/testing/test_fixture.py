"""The pipeline_driver fixture: opens drivers for any kind of reference and closes them all
when the test ends, in any project where dataflow is installed (its pytest11 entry point)."""
from __future__ import annotations

pytest_plugins = ["pytester"]

INNER = '''
import pytest
from dataflow import Flow
from dataflow.testing import DriverError

OPENED = []


def test_opens_drivers(pipeline_driver):
    flow = Flow("inner", partitions=1)
    flow.source("a").to("b")
    OPENED.append(pipeline_driver(flow))
    OPENED.append(pipeline_driver("pipe.flow", settings={"partitions": 2}))
    OPENED.append(pipeline_driver("driver_fixture_pipeline:flow"))
    OPENED[1].pipe("a", 1, key="k")
    assert OPENED[1].read_values("b") == [1]


def test_they_were_closed_after_it():
    assert len(OPENED) == 3
    for driver in OPENED:
        with pytest.raises(DriverError, match="is closed"):
            driver.read("b")
'''


def test_the_fixture_opens_drivers_and_closes_them_at_teardown(pytester):
    pytester.makepyfile(test_inner=INNER, driver_fixture_pipeline="from dataflow import Flow\nflow = Flow('m')\nflow.source('a').to('b')\n")
    pytester.makefile(".flow", pipe="pipeline p\ntopic a\ntopic b\na | to topic b\n")
    pytester.syspathinsert()
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
