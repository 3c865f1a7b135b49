"""Kafka client options: where they come from, how they are checked, and that secrets never show.

No broker needed: these only build configurations.
"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dataflow.cli import app
from dataflow.ir.settings import Secret, Settings
from dataflow.lang import parse_flow
from dataflow.planner import plan
from dataflow.planner.render import to_json, to_text
from dataflow.transport.base import TransportError, open_transport
from dataflow.transport.kafka import KafkaConfig, KafkaTransport

FLOW = """pipeline secure {
  broker "kafka://b1:9093,b2:9093"
  kafka_client_id "fraud-app"
  kafka_security_protocol SASL_SSL
  kafka_sasl_mechanism "SCRAM-SHA-512"
  kafka_sasl_username "app"
  kafka_sasl_password "pw-in-the-header"
  kafka_session_timeout_ms 6000
  kafka_auto_offset_reset latest
}
topic n: int
topic out
n | to topic out
"""


def test_flow_header_settings_reach_the_kafka_config_and_secrets_stay_out_of_plans():
    p = plan(parse_flow(FLOW).topology())
    s = p.settings
    assert (s.kafka_client_id, s.kafka_security_protocol, s.kafka_sasl_mechanism) == (
        "fraud-app", "SASL_SSL", "SCRAM-SHA-512")
    assert isinstance(s.kafka_sasl_password, Secret)
    for text in (to_json(p), to_text(p), repr(s), str(s.to_json())):
        assert "pw-in-the-header" not in text
    assert '"kafka_sasl_password": "***"' in to_json(p)
    transport = open_transport(s.broker, ".", s)
    assert isinstance(transport, KafkaTransport)
    config = transport.config
    assert config.bootstrap_servers == ("b1:9093", "b2:9093")
    assert (config.sasl_username, config.sasl_password, config.session_timeout_ms) == ("app", "pw-in-the-header",
                                                                                        6000)
    assert config.auto_offset_reset == "latest" and config.acks == "all"
    assert "pw-in-the-header" not in repr(config) + repr(transport) + str(config.describe())
    assert config.client_options()["sasl_plain_password"] == "pw-in-the-header"


def test_cli_set_overrides_and_plans_redact(tmp_path):
    path = tmp_path / "secure.flow"
    path.write_text(FLOW)
    result = CliRunner().invoke(app, ["plan", str(path), "-f", "json", "--set", "kafka_sasl_password=from-cli",
                                      "--set", "kafka_client_id=other"])
    assert result.exit_code == 0, result.output
    assert "from-cli" not in result.output and "pw-in-the-header" not in result.output
    assert '"kafka_client_id": "other"' in result.output
    bad = CliRunner().invoke(app, ["plan", str(path), "--set", "kafka_acks=2"])
    assert bad.exit_code == 1
    assert bad.stderr == "error: --set kafka_acks=2: must be one of all, 1, 0\n"


def test_precedence_settings_then_url_then_environment_then_defaults():
    env = {"DATAFLOW_KAFKA_CLIENT_ID": "from-env", "DATAFLOW_KAFKA_LINGER_MS": "7",
           "DATAFLOW_KAFKA_ACKS": "1", "DATAFLOW_KAFKA_SESSION_TIMEOUT_MS": ""}
    settings = Settings().with_overrides({"kafka_client_id": "from-settings"})
    config = KafkaConfig.resolve("kafka://h:9092?linger_ms=3&acks=0", settings, env)
    assert (config.client_id, config.linger_ms, config.acks) == ("from-settings", 3, "0")
    config = KafkaConfig.resolve("kafka://h:9092", Settings(), env)
    assert (config.client_id, config.linger_ms, config.acks) == ("from-env", 7, "1")
    assert config.session_timeout_ms == 10_000  # an empty variable is unset
    assert KafkaConfig.resolve("kafka://h:9092", None, {}).client_id == "dataflow"


@pytest.mark.parametrize(("url", "env", "message"), [
    ("kafka://", {}, "names no broker"),
    ("kafka://host", {}, "kafka broker 'host' in 'kafka://host' is not HOST:PORT"),
    ("kafka://h:1?sasl_password=x", {}, "sasl_password may not be given in the kafka url"),
    ("kafka://h:1?colour=red", {}, "unknown kafka option 'colour'"),
    ("kafka://h:1?linger_ms=soon", {}, "kafka url option linger_ms must be a whole number, not 'soon'"),
    ("kafka://h:1", {"DATAFLOW_KAFKA_SECURITY_PROTOCOL": "TLS"},
     "DATAFLOW_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, not 'TLS'"),
    ("kafka://h:1?security_protocol=SASL_PLAINTEXT", {}, "needs sasl_username and sasl_password"),
    ("kafka://h:1?sasl_mechanism=PLAIN", {}, "sasl_mechanism PLAIN needs security_protocol SASL_PLAINTEXT or SASL_SSL"),
    ("kafka://h:1?session_timeout_ms=1000&heartbeat_interval_ms=1000", {}, "must be below session_timeout_ms"),
])
def test_bad_options_are_reported_with_their_origin(url, env, message):
    with pytest.raises(TransportError, match=message):
        KafkaConfig.resolve(url, None, env)


def test_scram_and_ssl_options_map_to_the_client():
    env = {"DATAFLOW_KAFKA_SASL_USERNAME": "u", "DATAFLOW_KAFKA_SASL_PASSWORD": "p"}
    options = KafkaConfig.resolve("kafka://h:1?security_protocol=sasl_plaintext&sasl_mechanism=scram-sha-256",
                                  None, env).client_options()
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-256", "u")
    assert "ssl_context" not in options
    ssl = KafkaConfig.resolve("kafka://h:1?security_protocol=SSL", None, {}).client_options()
    assert ssl["ssl_context"] is not None and "sasl_plain_password" not in ssl
