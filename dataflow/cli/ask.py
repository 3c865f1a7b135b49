"""`dataflow ask PIPELINE AGENT --value JSON`: ask an agent of a Python App for a result.

    dataflow ask shop.py add_tax --value 100 --broker kafka://localhost:9092
    dataflow ask shop:app add_tax --value '{"amount": 5}' --key order-1 --timeout 5

PIPELINE is a Python file (or ``module:attribute``) that defines a ``dataflow`` App with
agents. On ``kafka://`` the command is a client only: it sends the request and waits for
the reply from the app's running workers. The embedded log (``local://``, the default)
and ``memory://`` serve one process at a time, so there the command runs the app's
agents itself for the duration of the ask (without its timers and tasks); if another
process holds the log, it says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from . import UserError, _guard, app, logs

ASK_PIPELINE_HELP = ("A Python file defining a dataflow App with agents, or module:attribute; or a pipeline (.flow, "
                     "or a .py defining a Flow).")


def load_app(ref: str) -> Any:
    """The App named by ``ref``: a ``.py`` file (its ``app``, or its only App) or
    ``module:attribute``."""
    from ..loader import PipelineNotFound, Wanted, load_object
    from ..runtime.app import App

    wanted = Wanted(App, "app", "dataflow App", "apps", 'hint: App("name") with @app.agent functions',
                    "hint: name one with module:NAME or call it `app`",
                    "expected a .py file or module:attribute defining a dataflow App")
    try:
        return load_object(ref, wanted)
    except PipelineNotFound as e:
        raise UserError(f"{e.ref}: error: {e.reason}") from None
    except Exception as e:  # noqa: BLE001 - a mistake in the user's file
        raise UserError(f"{ref}: error: {type(e).__name__}: {e}") from None


async def ask_agent(target: Any, agent_name: str, value: Any, key: Any, timeout: float) -> Any:
    """Start ``target`` (client-only unless its log is in-process), ask, stop."""
    from ..runtime.replies import ReplyError
    from ..transport.base import LogLockedError, TransportError
    from ..transport.memory import InProcessTransport

    agent = target.agents.get(agent_name)
    if agent is None:
        names = ", ".join(sorted(target.agents)) or "none"
        raise UserError(f"error: app {target.name!r} has no agent {agent_name!r}; agents: {names}")
    if isinstance(target.transport, InProcessTransport):
        # One process per log: host the agents here. Naming every agent also leaves out
        # the app's timers and tasks, which an ask should not set off.
        target._only_agents = set(target.agents)
    else:
        target.client_only = True
    try:
        await target.start()
    except LogLockedError as e:
        raise UserError(f"error: {e}; hint: the embedded log serves one process at a time, so ask while "
                        "the app is stopped (dataflow ask then runs its agents), or run the app on kafka://") from None
    except TransportError as e:
        raise UserError(f"error: {e}") from None
    try:
        return await agent.ask(value, key=key, timeout=timeout)
    except (ReplyError, TypeError) as e:
        raise UserError(f"error: {e}") from None
    finally:
        await target.stop()


def _defines_flow(ref: str) -> bool:
    """Whether a .py file defines a compiled pipeline (a Flow) and no App."""
    if not ref.endswith(".py") or not Path(ref).is_file():
        return False
    text = Path(ref).read_text(errors="replace")
    return "Flow(" in text and "App(" not in text


def _ask_pipeline(ref: str, topic: str, value: Any, key: Any, timeout: float, broker: str | None,
                  data_dir: str | None) -> Any:
    """Ask a compiled pipeline through one of its source topics."""
    import asyncio

    from ..runtime.flow_ask import UnknownEntry, ask_flow
    from ..runtime.replies import ReplyError
    from ..runtime.runner import state_dir_for
    from ..transport.base import LogLockedError, TransportError, open_transport
    from . import _plan

    plan = _plan(ref, None)
    directory = data_dir or plan.settings.data_dir or str(Path(".dataflow") / plan.name)
    try:
        transport = open_transport(broker or plan.settings.broker, directory, plan.settings)
        return asyncio.run(ask_flow(plan, topic, value, key, transport=transport, timeout=timeout,
                                    data_dir=state_dir_for(transport, directory)))
    except LogLockedError as e:
        raise UserError(f"error: {e}; hint: the embedded log serves one process at a time: ask while the "
                        "pipeline is stopped (dataflow ask then runs it), or run it on kafka://") from None
    except (ReplyError, UnknownEntry, TransportError) as e:
        raise UserError(f"error: {e}") from None


@app.command("ask")
def ask_command(
    pipeline: str = typer.Argument(..., help=ASK_PIPELINE_HELP),
    agent: str = typer.Argument(..., help="The agent to ask (an App), or the source topic to ask a compiled "
                                "pipeline through (.flow, or a .py defining a Flow); the value is written to it."),
    value: str = typer.Option(..., "--value", metavar="JSON", help="The value to send, as JSON."),
    key: Optional[str] = typer.Option(None, "--key", metavar="KEY", help="The key to send it with (text)."),
    timeout: float = typer.Option(30.0, "--timeout", metavar="SECONDS", help="Seconds to wait for the reply."),
    broker: Optional[str] = typer.Option(None, "--broker", "-b", metavar="URL", envvar="DATAFLOW_BROKER",
                                         help="kafka://HOST:PORT, local://DIR or memory://; default: "
                                         "$DATAFLOW_BROKER, else the app's own broker."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", metavar="DIR", help="Where the embedded log lives, when the "
                                           "broker is the default local log."),
    log_level: Optional[str] = logs.level_option(),
    log_format: str = logs.format_option(),
) -> None:
    """Ask an agent, or a pipeline through a source topic, for its result for one value; print it as JSON.

    Asking writes through: the value goes into the agent's or the pipeline's source topic and is
    processed like any record, so it updates the pipeline's tables and state and reaches its
    output topics. To leave a pipeline's state alone, give a scratch --data-dir or --broker memory://.
    """
    import asyncio

    import orjson

    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise typer.BadParameter(f"not JSON: {e}", param_hint="--value") from None
    if timeout <= 0:
        raise typer.BadParameter("must be > 0 seconds", param_hint="--timeout")

    def body() -> Any:
        if pipeline.endswith(".flow") or _defines_flow(pipeline):
            return _ask_pipeline(pipeline, agent, decoded, key, timeout, broker, data_dir)
        from ..ir.callables import ImportPolicy
        from .trust import refuse_to_run

        if refusal := refuse_to_run(ImportPolicy.from_environment()):  # importing the app runs it
            raise UserError(refusal)
        target = load_app(pipeline)
        if broker is not None or data_dir is not None:
            from ..transport.base import TransportError

            try:
                target.set_broker(broker, data_dir)
            except TransportError as e:  # a bad --broker: one line, not a traceback
                raise UserError(f"error: {e}") from None
        return asyncio.run(ask_agent(target, agent, decoded, key, timeout))

    with logs.configured(log_level, log_format):
        result = _guard(body)
    typer.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())
