"""The dataflow pytest plugin: fixtures for testing your own agents.

Installed with the package (the ``pytest11`` entry point ``dataflow``), so any test suite
in an environment with dataflow can use:

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

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

__all__ = ["agent_context"]

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
