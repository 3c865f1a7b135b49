"""The RPC acceptance cases on the real Kafka-protocol test broker, and `dataflow ask`
as a client of a worker running on Kafka."""
from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow.cli import app as cli
from tests.kafka_broker import unique_name
from tests.runtime.test_rpc import check_concurrent_asks, check_error_reply, check_join_and_map, check_timeout

pytestmark = pytest.mark.kafka


async def test_1000_concurrent_asks_on_4_actors(kafka_url: str) -> None:
    await check_concurrent_asks(kafka_url, name=unique_name("rpc"))


async def test_join_keeps_input_order_and_map_yields_every_result(kafka_url: str) -> None:
    await check_join_and_map(kafka_url, name=unique_name("rpc"))


async def test_an_agent_that_raises_answers_with_an_error(kafka_url: str) -> None:
    await check_error_reply(kafka_url, name=unique_name("rpc"))


async def test_an_ask_without_a_reply_times_out(kafka_url: str) -> None:
    await check_timeout(kafka_url, name=unique_name("rpc"))


SERVICE = '''
from dataflow.runtime.app import App

app = App({name!r}, broker={url!r}, topic_partitions=2)

@app.agent(concurrency=2)
async def double(stream):
    async for key, value in stream.items():
        yield {{"key": key, "doubled": value * 2}}
'''


async def test_dataflow_ask_is_a_client_of_a_running_worker(kafka_url: str, tmp_path: Path) -> None:
    name = unique_name("svc")
    module = tmp_path / "service.py"
    module.write_text(SERVICE.format(name=name, url=kafka_url))
    worker = runpy.run_path(str(module), run_name="worker")["app"]
    await worker.start()
    try:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["ask", str(module), "double", "--value", "21", "--key", "k", "--timeout", "60"])
    finally:
        await worker.stop()
    assert (result.exit_code, result.stdout) == (0, '{"key":"k","doubled":42}\n'), result.stderr
    assert worker.monitor.as_dict()["events_by_agent"]["double"] == 1   # the worker, not the CLI, answered
