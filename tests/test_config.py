"""Configuration: defaults, TOML, environment overrides, and errors that name the field."""

from __future__ import annotations

import re

import pytest

from edge_agent.config import Config, load_config, to_toml
from edge_agent.errors import ConfigError


def test_defaults_work_with_no_file_and_give_a_consistent_nameplate():
    cfg = load_config(None, environ={})
    assert cfg.acquisition.fs == 15000
    assert cfg.motor.supply_hz is None  # detect
    assert cfg.motor.rated_slip == pytest.approx(0.04)


def test_toml_then_environment_precedence(tmp_path):
    f = tmp_path / "motor.toml"
    f.write_text(
        "[motor]\npole_pairs = 3\nrated_rpm = 960\nrated_current = 22.5\n"
        "[acquisition]\nfs = 10000\n"
    )
    cfg = load_config(
        f,
        environ={
            "EDGE_AGENT_MOTOR__RATED_CURRENT": "30",
            "EDGE_AGENT_ACQUISITION__CHANNELS": "ia,ib,ic,va,vb,vc",
            "EDGE_AGENT_CONFIG": "ignored: no table",
        },
    )
    assert cfg.motor.pole_pairs == 3
    assert cfg.motor.rated_current == 30.0
    assert cfg.acquisition.fs == 10000
    assert cfg.acquisition.channels == ["ia", "ib", "ic", "va", "vb", "vc"]


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(
        None,
        environ={
            "EDGE_AGENT_MOTOR__SUPPLY_HZ": "60",
            "EDGE_AGENT_MOTOR__RATED_HZ": "60",
            "EDGE_AGENT_MOTOR__RATED_RPM": "1725",
        },
    )
    f = tmp_path / "out.toml"
    f.write_text(to_toml(cfg))
    assert load_config(f, environ={}) == cfg


@pytest.mark.parametrize(
    ("text", "env", "needle"),
    [
        (
            "[motor]\npole_pairs = -1\n",
            {},
            "motor.pole_pairs: Input should be greater than or equal to 1",
        ),
        ("[motor]\npole_pairs = 'two'\n", {}, "motor.pole_pairs"),
        ("[motor]\npolepairs = 2\n", {}, "motor.polepairs: unknown setting"),
        ("[motor]\nrated_rpm = 1600\n", {}, "expected 0 < slip < 0.2"),
        ("[windows]\nhop_s = 2\n", {}, "must not exceed length_s"),
        ("[acquisition]\nchannels = ['ia', 'ib']\n", {}, "missing ic"),
        ("", {"EDGE_AGENT_ACQUISITION__FS": "fast"}, "environment EDGE_AGENT_ACQUISITION__FS"),
        ("[motor\n", {}, "not valid TOML"),
    ],
)
def test_bad_values_name_the_field_and_source(tmp_path, text, env, needle):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f, environ=env)
    assert needle in str(err.value)
    assert err.value.exit_code == 78
    if not env:
        assert str(f) in str(err.value)


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_shipped_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).parent.parent / "systemd" / "edge-agent.toml"
    cfg = load_config(example, environ={})
    assert isinstance(cfg, Config)
    # Every setting is in the example, with its default value: it documents them all.
    assert cfg == Config()
    text = example.read_text()
    tables = {"": Config().model_dump(), "mqtt.tls": {"ca_file": None, "cert_file": None,
              "key_file": None, "check_hostname": True}}  # fmt: skip
    missing = []
    for key in _leaf_keys(tables.pop("")) + [f"mqtt.tls.{k}" for k in tables["mqtt.tls"]]:
        name = key.rsplit(".", 1)[-1]
        as_table = rf"^#? ?\[{re.escape(key)}[.\]]"  # an optional table: bearing, tls
        if not re.search(rf"^#? ?{re.escape(name)} = |{as_table}", text, re.MULTILINE):
            missing.append(key)
    assert not missing, f"settings not documented in {example.name}: {missing}"


def _leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            keys += _leaf_keys(v, f"{prefix}{k}.")
        else:
            keys.append(prefix + k)
    return keys


def test_nested_source_tables_take_environment_overrides():
    cfg = load_config(None, environ={"EDGE_AGENT_ACQUISITION__SERIAL__DEVICE": "socket://x:1",
                                     "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0"})  # fmt: skip
    assert cfg.acquisition.serial.device == "socket://x:1"
    assert cfg.acquisition.replay.speed == 0.0
    with pytest.raises(ConfigError, match=r"acquisition\.serial\.protocol"):
        load_config(None, environ={"EDGE_AGENT_ACQUISITION__SERIAL__PROTOCOL": "modbus"})


def test_the_mqtt_password_is_masked_when_the_config_is_printed():
    cfg = load_config(None, environ={"EDGE_AGENT_MQTT__URL": "mqtts://broker:8883",
                                     "EDGE_AGENT_MQTT__PASSWORD": "s3cret-pw"})  # fmt: skip
    assert cfg.mqtt.password.get_secret_value() == "s3cret-pw"
    text = to_toml(cfg)
    assert "s3cret-pw" not in text and "s3cret-pw" not in repr(cfg)
    assert 'url = "mqtts://broker:8883"' in text


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"EDGE_AGENT_MQTT__URL": "http://broker"}, "mqtt.url"),
        ({"EDGE_AGENT_MQTT__PROTOCOL": "4"}, "mqtt.protocol"),
        ({"EDGE_AGENT_MQTT__TLS__CERT_FILE": "/etc/c.pem"}, "mqtt.tls"),
        ({"EDGE_AGENT_MQTT__RECONNECT_MIN_S": "90"}, "mqtt"),
        ({"EDGE_AGENT_STORE__SNAPSHOT_S": "600"}, "store.snapshot_s"),
    ],
)
def test_bad_mqtt_and_store_settings_name_the_field(env, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_config(None, environ=env)


def test_the_store_lives_in_systemds_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/edge-agent")
    assert str(Config().store.resolved_path) == "/var/lib/edge-agent/edge-agent.db"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", "/home/u/.local/state")
    assert str(Config().store.resolved_path) == "/home/u/.local/state/edge-agent/edge-agent.db"


def test_a_table_level_error_never_echoes_the_table_with_its_password():
    env = {"EDGE_AGENT_MQTT__PASSWORD": "s3cret-pw", "EDGE_AGENT_MQTT__RECONNECT_MIN_S": "50",
           "EDGE_AGENT_MQTT__RECONNECT_MAX_S": "10"}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_config(None, environ=env)
    assert "s3cret-pw" not in str(err.value)
    want = "defaults + environment: mqtt: expected reconnect_min_s <= reconnect_max_s"
    assert str(err.value) == want


def test_a_bad_command_line_value_is_blamed_on_the_command_line():
    with pytest.raises(ConfigError, match=r"^command line: mqtt\.url: expected mqtt://host"):
        load_config(None, environ={}, overrides={"mqtt": {"url": "http://broker"}})
