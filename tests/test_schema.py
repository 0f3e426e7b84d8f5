"""MQTT payloads: the checked-in JSON Schemas are current, builders round-trip, commands
are refused with a clear message, and every example in docs/mqtt.md is valid."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from edge_agent.publish import schema
from edge_agent.publish.schema import (
    AlertPayload,
    CommandError,
    CommandLabel,
    CommandReload,
    CommandSnapshot,
    EventPayload,
    StatusPayload,
    SummaryPayload,
    alert_payload,
    event_payload,
    parse_command,
    status_payload,
    summary_payload,
    topic,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schemas"
MQTT_DOC = ROOT / "docs" / "mqtt.md"

RAISED = {
    "type": "alert",
    "id": "0b9e7f52-8a1d-4c3e-b6f0-2d4a5c6e7f80",
    "state": "raised",
    "t": 12.5,
    "fault": "broken_rotor_bar",
    "severity": "warning",
    "score": 0.0123,
    "evidence": {"brb_lsb_db": -40.2, "slip": 0.031, "consecutive_windows": 3},
}
SUMMARY = {
    "type": "summary",
    "t_start": 0.0,
    "t_end": 60.0,
    "windows": 119,
    "flagged_windows": 1,
    "anomalous_windows": 0,
    "alerts_raised": 1,
    "alerts_cleared": 0,
    "active_alerts": ["broken_rotor_bar"],
    "lost_samples": 0,
    "rms_a": 7.3,
    "rms_b": 7.2,
    "rms_c": 7.4,
    "i2_i1": 0.003,
    "supply_hz": 50.0,
    "slip": None,
    "i2_i1_max": 0.004,
    "score_p50": 0.002,
    "score_p95": 0.009,
    "score_max": 0.0123,
}


def published(payload: dict, historical: bool = False) -> dict:
    """What the publisher sends: the builder's dict plus historical, through JSON."""
    return json.loads(json.dumps({**payload, "historical": historical}, allow_nan=False))


# --------------------------------------------------------------------------------------
# JSON Schema files


def test_checked_in_schema_files_are_current(tmp_path):
    out = tmp_path / "schemas"
    subprocess.run(
        [sys.executable, "-m", "edge_agent.publish.schema", "--write", str(out)], check=True
    )
    generated = sorted(p.name for p in out.iterdir())
    assert generated == sorted(p.name for p in SCHEMAS.glob("*.schema.json")), (
        "run `python -m edge_agent.publish.schema --write docs/schemas`"
    )
    for name in generated:
        assert (SCHEMAS / name).read_text() == (out / name).read_text(), (
            f"docs/schemas/{name} is stale: run "
            "`python -m edge_agent.publish.schema --write docs/schemas`"
        )
    assert set(generated) == {
        "alert.schema.json",
        "summary.schema.json",
        "status.schema.json",
        "event.schema.json",
        "cmd-label.schema.json",
        "cmd-reload.schema.json",
        "cmd-snapshot.schema.json",
    }
    text = (out / "alert.schema.json").read_text()
    assert text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_check_lists_stale_files(tmp_path, capsys):
    assert schema.main(["--write", str(tmp_path)]) == 0
    assert schema.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "alert.schema.json").write_text("{}\n")
    (tmp_path / "summary.schema.json").unlink()
    (tmp_path / "old.schema.json").write_text("{}\n")
    assert schema.main(["--check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    for name in ("alert.schema.json", "summary.schema.json", "old.schema.json"):
        assert name in err
    assert "event.schema.json" not in err


def test_schemas_require_the_common_fields():
    for model in (AlertPayload, SummaryPayload, StatusPayload, EventPayload):
        js = model.model_json_schema(by_alias=True)
        assert {"schema", "id", "ts", "historical", "site", "asset"} <= set(js["required"])
        assert js["additionalProperties"] is False
    for model in (*schema.PAYLOADS.values(), *schema.COMMANDS.values()):
        js = model.model_json_schema(by_alias=True)
        assert js.get("description"), model
        for name, prop in js["properties"].items():
            assert "description" in prop, f"{model.__name__}.{name} has no description"


def test_fault_names_are_one_list_that_the_diagnosis_names_from():
    from edge_agent import diagnosis

    assert schema.FAULTS[:2] == ("anomaly", "broken_rotor_bar") and len(schema.FAULTS) == 6
    assert schema.SEVERITIES == ("watch", "warning", "alarm")
    assert diagnosis.LONG_WINDOW_FAULTS < set(schema.FAULTS)
    # A fault name outside the list is refused by the payload, not published.
    with pytest.raises(ValidationError):
        alert_payload({**RAISED, "fault": "broken_bar"}, site="s", asset="a", t0=0.0, model=None)


# --------------------------------------------------------------------------------------
# Builders


def test_alert_payload_round_trip():
    p = alert_payload(RAISED, site="plant1", asset="pump3", t0=1_764_000_000.0, model="abc")
    assert "historical" not in p
    assert p["schema"] == schema.SCHEMA_VERSION == 1
    assert uuid.UUID(p["id"]).version == 4
    assert p["ts"] == 1_764_000_012.5
    assert p["alert_id"] == RAISED["id"] and p["state"] == "raised"
    assert p["evidence"] == RAISED["evidence"] and p["model"] == "abc"
    back = AlertPayload.model_validate(published(p, historical=True))
    assert back.historical is True
    assert back.model_dump(mode="json", by_alias=True) == published(p, historical=True)


def test_each_message_gets_a_fresh_id_and_the_alert_keeps_its_own():
    cleared = {**RAISED, "state": "cleared", "t": 20.0, "evidence": {}}
    a = alert_payload(RAISED, site="s", asset="a", t0=0.0, model=None)
    b = alert_payload(cleared, site="s", asset="a", t0=0.0, model=None)
    again = alert_payload(RAISED, site="s", asset="a", t0=0.0, model=None)
    assert len({a["id"], b["id"], again["id"]}) == 3
    assert a["alert_id"] == b["alert_id"] == RAISED["id"]


def test_non_finite_values_become_null():
    rec = {**RAISED, "score": math.nan, "evidence": {"x": math.inf, "y": [1.0, -math.inf]}}
    p = alert_payload(rec, site="s", asset="a", t0=0.0, model=None)
    assert p["score"] is None and p["evidence"] == {"x": None, "y": [1.0, None]}
    json.dumps(p, allow_nan=False)
    s = summary_payload({**SUMMARY, "rms_a": math.nan}, site="s", asset="a", t0=0.0)
    assert s["rms_a"] is None
    st_ = status_payload("online", site="s", asset="a", counters={"ok": 3, "bad": math.nan})
    assert st_["counters"] == {"ok": 3}


def test_summary_payload_round_trip():
    p = summary_payload(SUMMARY, site="plant1", asset="pump3", t0=1000.0)
    assert p["t_start"] == 1000.0 and p["t_end"] == p["ts"] == 1060.0
    assert p["windows"] == 119 and p["slip"] is None
    assert p["active_alerts"] == ["broken_rotor_bar"]
    assert "type" not in p and "historical" not in p
    SummaryPayload.model_validate(published(p))


def test_summary_payload_takes_every_summary_record_field():
    from edge_agent.summary import Summarizer

    s = Summarizer(10.0)
    window = {
        "type": "window",
        "t_start": 0.0,
        "t_end": 1.0,
        "score": 0.1,
        "anomalous": False,
        "features": {"rms_a": 1.0},
        "flags": [],
    }
    (rec,) = s.update([window]) + s.flush()
    fields = set(rec) - {"type"}
    assert fields == set(SummaryPayload.model_fields) - set(schema._Payload.model_fields)
    SummaryPayload.model_validate(published(summary_payload(rec, site="s", asset="a", t0=0.0)))


def test_status_and_event_payloads():
    online = status_payload(
        "online", site="s", asset="a", version="0.1.0", outbox={"alert": 0}, ts=5.0
    )
    assert online["ts"] == 5.0 and online["reason"] is None
    will = status_payload("offline", site="s", asset="a", reason="lost")
    assert will["state"] == "offline" and will["reason"] == "lost"
    with pytest.raises(ValidationError):
        status_payload("sleeping", site="s", asset="a")  # type: ignore[arg-type]
    reply = event_payload("command", site="s", asset="a", command="label", ok=True, detail={"n": 1})
    assert reply["error"] is None and reply["request_id"] is None and reply["detail"] == {"n": 1}
    for p, model in ((online, StatusPayload), (will, StatusPayload), (reply, EventPayload)):
        model.model_validate(published(p))


def test_payload_models_refuse_unknown_and_missing_fields():
    good = published(alert_payload(RAISED, site="s", asset="a", t0=0.0, model=None))
    with pytest.raises(ValidationError, match="extra"):
        AlertPayload.model_validate({**good, "colour": "red"})
    with pytest.raises(ValidationError, match="historical"):
        AlertPayload.model_validate({k: v for k, v in good.items() if k != "historical"})
    with pytest.raises(ValidationError):
        AlertPayload.model_validate({**good, "fault": "gremlins"})
    with pytest.raises(ValidationError):
        alert_payload({**RAISED, "severity": "mild"}, site="s", asset="a", t0=0.0, model=None)


def test_topic():
    assert (
        topic("edge-agent", "plant1", "pump3", "cmd/label") == "edge-agent/plant1/pump3/cmd/label"
    )
    for bad in ("a/b", "+", "#", ""):
        with pytest.raises(ValueError, match="asset"):
            topic("edge-agent", "plant1", bad, "alert")


# --------------------------------------------------------------------------------------
# Commands


def test_parse_good_commands():
    c = parse_command("label", b'{"alert_id": "x1", "label": "false_positive", "id": "r"}')
    assert isinstance(c, CommandLabel)
    assert (c.alert_id, c.label, c.by, c.note, c.id) == ("x1", "false_positive", None, None, "r")
    assert isinstance(parse_command("reload", b""), CommandReload)
    assert parse_command("reload", b'{"id": "r2"}').id == "r2"
    snap = parse_command("snapshot", b"")
    assert isinstance(snap, CommandSnapshot) and snap.seconds == 10.0
    assert parse_command("snapshot", b' {"seconds": 60} \n').seconds == 60.0
    assert parse_command("snapshot", '{"seconds": 0.5}').seconds == 0.5


@pytest.mark.parametrize(
    ("name", "payload", "match"),
    [
        ("shutdown", b"", r"unknown command 'shutdown'; known commands: label, reload, snapshot"),
        ("label", b"", r"/cmd/label: alert_id: required field missing; label: required"),
        ("label", b"\xff\xfe", r"/cmd/label: payload is not UTF-8"),
        ("label", b"{alert_id: 1}", r"/cmd/label: payload is not valid JSON"),
        ("reload", b"[]", r"/cmd/reload: expected a JSON object, got an array"),
        ("reload", b'"x"', r"expected a JSON object, got a string"),
        ("reload", b'{"force": true}', r"/cmd/reload: force: unknown field"),
        ("snapshot", b'{"seconds": 90}', r"seconds: Input should be less than or equal to 60"),
        ("snapshot", b'{"seconds": 0}', r"seconds: Input should be greater than 0"),
        ("snapshot", b'{"seconds": NaN}', r"seconds: Input should be a finite number"),
        ("snapshot", b'{"seconds": "long"}', r"seconds: .*valid number.*'long'"),
        ("label", b'{"alert_id": "a", "label": "maybe"}', r"label: Input should be"),
        ("label", b"[" * 50_000, r"nests too deeply"),
        ("label", b" " * 70_000, r"at most 65536"),
    ],
)
def test_bad_commands_say_what_is_wrong(name, payload, match):
    with pytest.raises(CommandError, match=match) as info:
        parse_command(name, payload)
    assert isinstance(info.value, ValueError)
    assert info.value.command == name


def test_refused_command_keeps_its_request_id():
    with pytest.raises(CommandError) as info:
        parse_command("snapshot", b'{"seconds": -1, "id": "req-7"}')
    assert info.value.request_id == "req-7"


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["label", "reload", "snapshot", "nope"]),
    payload=st.binary(max_size=200),
)
def test_arbitrary_bytes_give_a_command_or_a_command_error(name, payload):
    try:
        parse_command(name, payload)
    except CommandError:
        pass


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["label", "reload", "snapshot"]),
    data=st.dictionaries(
        st.sampled_from(["alert_id", "label", "by", "note", "id", "seconds", "x"]), _json_values
    ),
)
def test_arbitrary_json_objects_give_a_command_or_a_command_error(name, data):
    payload = json.dumps(data).encode()
    try:
        cmd = parse_command(name, payload)
    except CommandError as exc:
        assert str(exc).startswith(f"/cmd/{name}: ")
    else:
        assert json.loads(cmd.model_dump_json())  # a usable command is valid JSON again


# --------------------------------------------------------------------------------------
# docs/mqtt.md

_TOPIC_MODELS = {
    "/alert": AlertPayload,
    "/summary": SummaryPayload,
    "/status": StatusPayload,
    "/event": EventPayload,
}


def _doc_examples() -> dict[str, list[str]]:
    """The ```json blocks of docs/mqtt.md by the `/topic` of the heading above them."""
    examples: dict[str, list[str]] = {}
    heading = None
    for m in re.finditer(r"^(#+) ([^\n]*)$|^```json\n(.*?)^```", MQTT_DOC.read_text(), re.M | re.S):
        if m.group(1):
            found = re.fullmatch(r"`(/[a-z/]+)`", m.group(2).strip())
            heading = found.group(1) if found else None
        elif heading is not None:
            examples.setdefault(heading, []).append(m.group(3))
    return examples


def test_every_documented_payload_is_valid():
    examples = _doc_examples()
    assert set(examples) == {*_TOPIC_MODELS, "/cmd/label", "/cmd/reload", "/cmd/snapshot"}
    for where, blocks in examples.items():
        for text in blocks:
            if where.startswith("/cmd/"):
                parse_command(where.removeprefix("/cmd/"), text.encode())
            else:
                payload = _TOPIC_MODELS[where].model_validate_json(text)
                assert uuid.UUID(str(payload.id)).version == 4, where


def test_doc_covers_the_contract():
    text = MQTT_DOC.read_text()
    for needle in (
        "QoS",
        "retain",
        "Last Will",
        "historical",
        "de-duplication",
        "## Delivery and the outbox",
    ):
        assert needle.lower() in text.lower(), needle
