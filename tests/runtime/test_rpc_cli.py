"""`dataflow ask PIPELINE AGENT --value JSON`: results, error replies, timeouts and mistakes."""
from __future__ import annotations

from pathlib import Path

import plyvel
import pytest
from typer.testing import CliRunner

from dataflow.cli import app as cli

SHOP = '''
from dataflow.runtime.app import App

app = App("shop", topic_partitions=2)
hits = []

@app.agent(concurrency=2)
async def double(stream):
    async for key, value in stream.items():
        yield {"key": key, "doubled": value * 2}

@app.agent()
async def invert(stream):
    async for value in stream:
        yield 1 / value

@app.agent()
async def evens(stream):
    async for value in stream:
        if value % 2 == 0:
            yield value

@app.agent()
async def quiet(stream):
    async for value in stream:
        pass

@app.task
async def not_on_ask():
    raise SystemExit("tasks must not run during an ask")
'''


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shop.py").write_text(SHOP)
    return tmp_path


def ask(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["ask", *args])
    return result.exit_code, result.stdout, result.stderr


def test_ask_prints_the_result_as_json_and_works_again_on_the_same_log(shop: Path) -> None:
    broker = f"local://{shop / 'log'}"
    assert ask("shop.py", "double", "--value", "21", "--key", "k1", "--broker", broker) == (
        0, '{"key":"k1","doubled":42}\n', "")
    assert ask("shop.py", "double", "--value", "[1, 2]", "--broker", broker) == (
        0, '{"key":null,"doubled":[1,2,1,2]}\n', "")
    assert (shop / "log").is_dir()


def test_ask_module_attribute_on_the_default_data_dir(shop: Path) -> None:
    assert ask("shop:app", "evens", "--value", "4", "--data-dir", str(shop / "data")) == (0, "4\n", "")
    assert (shop / "data" / "log").is_dir()


def test_an_agent_error_and_a_timeout_exit_1_with_one_line(shop: Path) -> None:
    code, out, err = ask("shop.py", "invert", "--value", "0", "--broker", "memory://")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == "error: agent 'invert' failed: ZeroDivisionError: division by zero"

    code, out, err = ask("shop.py", "evens", "--value", "3", "--timeout", "0.2", "--broker", "memory://")
    assert (code, out) == (1, "")
    assert err.startswith("error: no reply from agent 'evens' within 0.2 s (correlation id ")
    assert err.endswith("hint: is a worker running the agent? raise reply_expires or the timeout\n")


def test_mistakes_are_one_line_errors(shop: Path) -> None:
    (shop / "flow.flow").write_text("pipeline x\n")
    (shop / "none.py").write_text("x = 1\n")
    (shop / "two.py").write_text("from dataflow.runtime.app import App\na = App('a')\nb = App('b')\n")
    cases = {
        ("shop.py", "nope"): "error: app 'shop' has no agent 'nope'; agents: double, evens, invert, quiet\n",
        ("shop.py", "quiet"): "error: agent 'quiet' cannot reply: its function does not yield results; hint: "
                              "`yield` the result inside `async for`, or use cast() to send without a reply\n",
        ("flow.flow", "a"): "error: pipeline x has no source topic 'a'; ask through one of: none\n",
        ("none.py", "a"): 'none.py: error: defines no dataflow App; hint: App("name") with @app.agent functions\n',
        ("two.py", "a"): "two.py: error: defines several apps (a, b); hint: name one with module:NAME or call it `app`\n",
        ("missing.py", "a"): "missing.py: error: no such file\n",
        ("shop:nothing", "a"): "shop:nothing: error: 'nothing' is not a dataflow App in module 'shop'\n",
    }
    for (pipeline, agent), message in cases.items():
        assert ask(pipeline, agent, "--value", "1", "--broker", "memory://") == (1, "", message), pipeline
    code, _, err = ask("shop.py", "double", "--value", "{oops")
    assert code == 2 and "Invalid value for --value: not JSON" in err


def test_a_log_held_by_a_running_app_is_reported(shop: Path) -> None:
    (shop / "log" / "log").mkdir(parents=True)
    held = plyvel.DB(str(shop / "log" / "log"), create_if_missing=True)  # as a running app holds it
    try:
        code, out, err = ask("shop.py", "double", "--value", "1", "--broker", f"local://{shop / 'log'}")
    finally:
        held.close()
    assert (code, out) == (1, "")
    assert err.startswith("error: local log ")
    assert err.endswith("hint: the embedded log serves one process at a time, so ask while the app is stopped "
                        "(dataflow ask then runs its agents), or run the app on kafka://\n")
