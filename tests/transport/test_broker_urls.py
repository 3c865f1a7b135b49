"""A broker URL never carries credentials, and no message prints one: `kafka://user:PASSWORD@host`
is refused with a hint that says where credentials go instead, and every command that takes a
broker prints the URL redacted."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dataflow import Flow
from dataflow.cli import app
from dataflow.ir.urls import credentials_in, redact_url, redact_urls_in
from dataflow.transport.base import TransportError, open_transport
from dataflow.transport.kafka import KafkaConfig

PASSWORD = "PASSWORD-xyzzy"
URL = f"kafka://app:{PASSWORD}@broker-1:9092"
HINT = ("hint: pass them as DATAFLOW_KAFKA_SASL_USERNAME and DATAFLOW_KAFKA_SASL_PASSWORD in the environment, "
        "or as the kafka_sasl_username and kafka_sasl_password settings (docs/kafka.md)")
REFUSED = ("error: a kafka url may not hold credentials: kafka://***@broker-1:9092 holds a user name and password, "
           f"and urls are printed in plans, logs and errors; {HINT}\n")


@pytest.mark.parametrize(("url", "shown"), [
    ("kafka://app:pw@b1:9092,b2:9092", "kafka://***@b1:9092,b2:9092"),
    ("kafka://app@b1:9092", "kafka://***@b1:9092"),
    ("kafka://b1:9092?sasl_password=pw&client_id=c", "kafka://b1:9092?sasl_password=***&client_id=c"),
    ("kafka://b1:9092?API_TOKEN=t&my_secret=s", "kafka://b1:9092?API_TOKEN=***&my_secret=***"),
    ("app:pw@b1:9092", "***@b1:9092"),
    ("kafka://b1:9092?ssl_keyfile=/k.pem", "kafka://b1:9092?ssl_keyfile=/k.pem"),
    ("local:///var/lib/app@v2", "local:///var/lib/app@v2"),  # an @ in a path is not a user name
    ("local://backups@2024/app", "local://backups@2024/app"),
    ("memory://team@orders", "memory://team@orders"),
    ("memory://orders", "memory://orders"),
])
def test_redact_url_hides_userinfo_and_secret_options_only(url, shown):
    assert redact_url(url) == shown


def test_what_credentials_a_url_holds_is_named():
    assert [credentials_in(u) for u in ("kafka://a:b@h:1", "kafka://a@h:1", "kafka://h:1?token=x", "kafka://h:1",
                                        "local:///data/app@v2")] == [
        "a user name and password", "a user name", "the option 'token'", None, None]


def test_a_source_line_shown_under_a_diagnostic_is_redacted():
    assert redact_urls_in(f'broker "kafka://app:{PASSWORD}@h:1", "local:///x@y"') == \
        'broker "kafka://***@h:1", "local:///x@y"'


@pytest.mark.parametrize(("url", "holds"), [(URL, "a user name and password"),
                                             ("kafka://app@broker-1:9092?colour=red", "a user name")])
def test_the_kafka_driver_refuses_userinfo_before_anything_else(url, holds):
    with pytest.raises(TransportError) as e:
        KafkaConfig.resolve(url, env={})
    assert str(e.value) == (f"a kafka url may not hold credentials: {redact_url(url)} holds {holds}, and urls are "
                            f"printed in plans, logs and errors; {HINT}")


@pytest.mark.parametrize(("url", "message"), [
    (f"kafak://app:{PASSWORD}@h:1", "unknown transport scheme 'kafak' in 'kafak://***@h:1'"),
    (f"app:{PASSWORD}@h:1", "invalid transport url '***@h:1'"),
])
def test_transport_errors_show_the_url_redacted(url, message):
    with pytest.raises(TransportError, match=re.escape(message)):
        open_transport(url, "/nonexistent")


def test_unknown_kafka_option_message_redacts_secret_options():
    with pytest.raises(TransportError) as e:
        KafkaConfig.resolve(f"kafka://h:1?token={PASSWORD}", env={})
    assert str(e.value).startswith("unknown kafka option 'token' in 'kafka://h:1?token=***';")


def test_the_broker_setting_refuses_credentials_from_python():
    with pytest.raises(ValueError) as e:
        Flow("p", broker=URL)
    refused = REFUSED[len("error: "):].replace("a kafka url", "the broker setting").rstrip("\n")
    assert str(e.value) == f"tests/transport/test_broker_urls.py:79: {refused}"  # where the Flow was made


# ------------------------------------------------------------------------ the command line

FLOW = """pipeline shop
topic orders: str key str
topic out
table latest = orders | to_table
latest | changes | to topic out
"""

APP = """from dataflow.runtime.app import App

app = App("pricing_for_urls")


@app.agent()
async def quote(stream):
    async for value in stream:
        yield value
"""


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), input="", env=env)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAFLOW_BROKER", raising=False)
    Path("shop.flow").write_text(FLOW)
    Path("pricing_for_urls.py").write_text(APP)
    Path("in.jsonl").write_text('{"key": "k", "value": "v"}\n')
    return tmp_path


COMMANDS = [
    ["run", "shop.flow", "--until-idle", "-i", "orders=in.jsonl"],
    ["send", "orders"],
    ["tail", "orders"],
    ["topics", "list"],
    ["topics", "create", "orders"],
    ["topics", "describe", "orders"],
    ["query", "shop.flow", "latest"],
    ["ask", "shop.flow", "orders", "--value", '"v"', "--key", "k"],
    ["ask", "pricing_for_urls.py", "quote", "--value", "1"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_refuses_a_password_in_broker_and_never_prints_it(project, command):
    result = invoke(*command, "--broker", URL)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", REFUSED)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] in ("run", "query", "ask")],
                         ids=lambda c: " ".join(c[:2]))
def test_a_password_in_dataflow_broker_is_refused_too(project, command):
    result = invoke(*command, env={"DATAFLOW_BROKER": URL})
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", REFUSED)


def test_a_misspelt_scheme_is_reported_without_the_password(project):
    result = invoke("run", "shop.flow", "--broker", f"kafak://app:{PASSWORD}@h:1")
    assert (result.exit_code, result.stderr) == (
        1, "error: unknown transport scheme 'kafak' in 'kafak://***@h:1'; hint: use memory://, memory://NAME, "
           "local://PATH or kafka://HOST:PORT\n")


def test_the_broker_setting_in_a_flow_header_is_refused_at_its_line_and_the_line_is_redacted(project):
    Path("shop.flow").write_text(FLOW.replace("pipeline shop\n", f'pipeline shop {{\n  broker "{URL}"\n}}\n'))
    for command in (["check", "shop.flow"], ["plan", "shop.flow"], ["run", "shop.flow"]):
        result = invoke(*command)
        assert (result.exit_code, result.stdout) == (1, "")
        assert result.stderr == (
            "shop.flow:2:3: error: the broker setting may not hold credentials: kafka://***@broker-1:9092 holds a "
            f"user name and password, and urls are printed in plans, logs and errors; {HINT}\n"
            '  broker "kafka://***@broker-1:9092"\n'
            "  ^" + "~" * (len('broker "kafka://***@broker-1:9092"') - 1) + "\n"
            "1 error\n")


def test_set_broker_with_a_password_is_refused_without_printing_it(project):
    result = invoke("plan", "shop.flow", "--set", f"broker={URL}")
    assert result.exit_code == 1
    assert PASSWORD not in result.output
    assert "the broker setting may not hold credentials: kafka://***@broker-1:9092" in result.stderr


def test_an_app_refuses_a_password_in_its_broker():
    from dataflow.runtime.app import App

    with pytest.raises(TransportError) as e:
        App("pricing_refused", broker=URL)
    assert str(e.value) == REFUSED[len("error: "):].rstrip("\n")
