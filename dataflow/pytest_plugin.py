"""The dataflow pytest plugin: fixtures for testing your own pipelines and agents.

Installed with the package (the ``pytest11`` entry point ``dataflow``), so any test suite
in an environment with dataflow can use:

* ``pipeline_driver`` -- ``pipeline_driver(pipeline, settings=None, wall_clock=None)``
  opens a :class:`~dataflow.testing.PipelineDriver` (the whole pipeline running in-process
  on a private in-memory log) for a ``.flow`` file, a Python file, ``module:attribute`` or
  a ``Flow``, and closes it when the test ends (see docs/testing.md)::

      def test_large_orders(pipeline_driver):
          driver = pipeline_driver("pipelines/orders.flow")
          driver.pipe("orders", {"id": 1, "amount": 500}, key="alice")
          assert driver.read_values("large-orders") == [{"id": 1, "amount": 500}]

* ``agent_context`` -- ``await agent_context(agent)`` opens the agent's
  :meth:`~dataflow.runtime.agents.Agent.test_context` (the agent alone, on a private
  in-memory log) and closes it when the test ends::

      async def test_double(agent_context):
          agent = await agent_context(double)
          event = await agent.put(21)
          assert agent.results_of(event) == [42]

Async fixtures need pytest-asyncio (``asyncio_mode = "auto"``, or mark the test with
``@pytest.mark.asyncio``).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

__all__ = ["agent_context", "pipeline_driver"]


@pytest.fixture
def pipeline_driver() -> Iterator[Callable[..., Any]]:
    """Open pipeline drivers for one test; all are closed at teardown."""
    from dataflow.testing import PipelineDriver

    opened: list[PipelineDriver] = []

    def open_driver(pipeline: Any, *, settings: dict[str, Any] | None = None,
                    wall_clock: float | None = None) -> PipelineDriver:
        driver = PipelineDriver(pipeline, settings=settings, wall_clock=wall_clock)
        opened.append(driver)
        return driver

    yield open_driver
    for driver in reversed(opened):
        driver.close()

try:
    import pytest_asyncio
except ImportError:  # the fixture then explains what is missing

    @pytest.fixture
    def agent_context() -> Any:
        pytest.fail("the agent_context fixture needs pytest-asyncio; hint: pip install pytest-asyncio",
                    pytrace=False)

else:

    @pytest_asyncio.fixture
    async def agent_context() -> AsyncIterator[Callable[[Any], Awaitable[Any]]]:
        """Open test contexts of agents for one test; all are closed at teardown."""
        from dataflow.runtime.testing import AgentTestContext

        opened: list[AgentTestContext] = []

        async def open_context(agent: Any) -> AgentTestContext:
            context = agent.test_context()
            await context.__aenter__()
            opened.append(context)
            return context

        yield open_context
        for context in reversed(opened):
            await context.__aexit__(None, None, None)
