"""The command line as a user drives it: real files, real exit codes, real model bundles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.cli import main

DATA = Path(__file__).parent / "data"
ITSC = DATA / "itsc"
ITSC_CONFIG = DATA / "itsc_motor.toml"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def windows(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["type"] == "window"]


def alerts(recs: list[dict], state: str = "raised") -> list[dict]:
    return [r for r in recs if r["type"] == "alert" and r["state"] == state]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """30 s recordings at 15 kS/s: healthy and with a broken bar 40 dB down."""
    d = tmp_path_factory.mktemp("sim")
    assert run("simulate", "--duration", "30", "-o", d / "healthy.csv").exit_code == 0
    res = run("simulate", "--fault", "broken-bar", "--severity", "40", "--duration", "30",
              "-o", d / "bb.csv")  # fmt: skip
    assert res.exit_code == 0, res.output
    return d


def test_broken_bar_sidebands_read_back_at_the_simulated_level(sim, tmp_path):
    out = tmp_path / "ev.jsonl"
    res = run("replay", sim / "bb.csv", "--out", out)
    assert res.exit_code == 0, res.output
    recs = records(out)
    w = windows(recs)
    assert len(w) == 59  # 1 s windows every 0.5 s over 30 s
    levels = [x["features"]["brb_lsb_db"] for x in w]
    # Empty until the 8 s long window has filled, then within 3 dB of -40 dB.
    assert levels[0] is None
    filled = [v for v in levels if v is not None]
    assert len(filled) >= 40
    assert all(abs(v + 40) < 3 for v in filled)
    brb = [a for a in alerts(recs) if a["fault"] == "broken_rotor_bar"]
    assert len(brb) == 1 and brb[0]["severity"] == "warning"
    assert not [a for a in alerts(recs) if a["fault"] == "anomaly"]
    # The slip came from the sidebands, and matches the simulated 0.8 x rated slip.
    assert w[-1]["features"]["slip_method"] == 1.0
    assert w[-1]["features"]["slip"] == pytest.approx(0.8 * 0.04, abs=5e-4)


def test_healthy_simulation_has_no_sidebands_and_no_alerts(sim, tmp_path):
    out = tmp_path / "ev.jsonl"
    assert run("replay", sim / "healthy.csv", "--out", out).exit_code == 0
    recs = records(out)
    filled = [x["features"]["brb_lsb_db"] for x in windows(recs)]
    filled = [v for v in filled if v is not None]
    assert filled and max(filled) < -55
    assert alerts(recs) == []
    assert not any(x["anomalous"] for x in windows(recs))


def test_window_records_follow_the_contract(sim, tmp_path):
    out = tmp_path / "ev.jsonl"
    assert run("replay", sim / "healthy.csv", "--out", out).exit_code == 0
    w = windows(records(out))[-1]
    assert set(w) == {"type", "t_start", "t_end", "score", "anomalous", "features", "flags"}
    for name in ("supply_hz", "rms_a", "rms_b", "rms_c", "i1", "i2", "i2_i1", "thd_a",
                 "thd_b", "thd_c", "epva_2f_db", "slip", "rotor_hz", "brb_lsb_db",
                 "brb_usb_db"):  # fmt: skip
        assert isinstance(w["features"][name], float), name
    assert w["features"]["supply_hz"] == pytest.approx(50.0, abs=0.05)
    assert w["t_end"] == pytest.approx(30.0) and w["t_start"] == pytest.approx(29.0)
    assert isinstance(w["score"], float) and w["anomalous"] is False


def test_stator_short_onset_is_flagged_by_the_default_model(tmp_path):
    rec = tmp_path / "ss.npy"
    assert run("simulate", "--fault", "stator-short", "--severity", "10", "--duration", "12",
               "--onset", "6", "--fs", "15000", "-o", rec).exit_code == 0  # fmt: skip
    out = tmp_path / "ev.jsonl"
    assert run("replay", rec, "--fs", "15000", "--out", out).exit_code == 0
    recs = records(out)
    w = windows(recs)
    before = [x for x in w if x["t_end"] <= 6.0]
    after = [x for x in w if x["t_start"] >= 6.0]
    assert before and not any(x["anomalous"] for x in before)
    assert after and all(x["anomalous"] for x in after)
    raised = alerts(recs)
    assert [a["fault"] for a in raised] == ["anomaly"]
    assert raised[0]["t"] > 6.0


def test_trained_bundle_has_the_contract_card(itsc_model):
    card = json.loads((itsc_model / "model.json").read_text())
    assert card["feature_names"][:3] == ["rms_a", "rms_b", "rms_c"]
    assert card["fs"] == 1000.0
    assert card["threshold"] > 0 and "leave-one-recording-out" in card["threshold_rule"]
    assert [s["path"] for s in card["training"]["sources"]] == [
        "SC_HLT_001.csv", "SC_HLT_002.csv", "SC_HLT_003.csv"]  # fmt: skip
    assert all(len(s["sha256"]) == 64 and s["windows"] == 9 for s in card["training"]["sources"])
    for key in ("normalisation", "hyperparameters", "created", "edge_agent_version"):
        assert key in card
    # The three healthy runs drew 4.46-4.53 A (uncalibrated: README) at 59.99-60.04 Hz.
    assert 4.4 < card["operating_range"]["i1"][0] < card["operating_range"]["i1"][1] < 4.6
    assert 59.9 < card["operating_range"]["supply_hz"][0] <= 60.1


@pytest.mark.parametrize(
    ("name", "expect_alert"),
    [
        ("SC_A0_B0_C3_001", True),
        ("SC_A0_B0_C3_002", True),
        ("SC_A0_B0_C4_001", True),
        ("SC_A0_B0_C4_002", True),
        ("SC_HLT_001", False),
        ("SC_HLT_002", False),
        ("SC_HLT_003", False),
    ],
)
def test_itsc_shorts_raise_alerts_and_healthy_runs_do_not(itsc_model, tmp_path, name, expect_alert):
    out = tmp_path / "ev.jsonl"
    res = run("replay", ITSC / f"{name}.csv", "--model", itsc_model, "--config", ITSC_CONFIG,
              "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    recs = records(out)
    assert windows(recs)[0]["features"]["supply_hz"] == pytest.approx(60.0, abs=0.1)
    assert bool(alerts(recs)) is expect_alert
    # Negative sequence: 0.02-0.04 healthy, far above at 30-40 % shorts. (In C3_001 the
    # short ends 2.3 s in, so only the peak is compared.)
    peak = max(w["features"]["i2_i1"] for w in windows(recs))
    assert (peak > 0.15) is expect_alert


@pytest.mark.parametrize("name", ["SC_A0_B0_C1_002", "SC_A0_B0_C3_001"])  # 10 %, 30 % short
def test_an_anomaly_alert_names_what_changed(itsc_model, tmp_path, name):
    out = tmp_path / "ev.jsonl"
    res = run("replay", ITSC / f"{name}.csv", "--model", itsc_model, "--config", ITSC_CONFIG,
              "--out", out)  # fmt: skip
    assert res.exit_code == 0, res.output
    (anomaly,) = [a for a in alerts(records(out)) if a["fault"] == "anomaly"]
    furthest = anomaly["evidence"]["furthest"]
    # The shorted winding's negative sequence, many healthy spreads above its mean.
    assert furthest[0]["feature"] == "i2_i1" and len(furthest) == 3
    top = furthest[0]
    assert top["value"] > 0.1 and top["healthy_mean"] == pytest.approx(0.031, abs=0.002)
    assert top["deviation"] > 10
    assert abs(top["deviation"]) >= abs(furthest[1]["deviation"]) >= abs(furthest[2]["deviation"])


# --- bad input: message and exit code --------------------------------------------------


def test_missing_file_exits_66(tmp_path):
    res = run("replay", tmp_path / "nope.csv")
    assert res.exit_code == 66
    assert "nope.csv: no such file" in res.output


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "file is empty"),
        ("time,x,y,z\n0,1,2,3\n", "expected t_s (optional), ia, ib, ic"),
        ("t_s,ia,ib,ic\n0,1,2,3\n0.001,1,2,three\n", "line 3, column 4: 'three' is not a number"),
    ],
)
def test_bad_csv_exits_65_naming_file_and_line(tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    res = run("replay", f, "--no-model")
    assert res.exit_code == 65
    assert needle in res.output and "bad.csv" in res.output


def test_truncated_csv_keeps_the_records_already_made(sim, tmp_path):
    text = (sim / "healthy.csv").read_text()
    cut = tmp_path / "cut.csv"
    cut.write_text(text[: len(text) // 2] + "\n")  # cut mid-line at about 15 s
    out = tmp_path / "ev.jsonl"
    res = run("replay", cut, "--out", out)
    assert res.exit_code == 65
    assert "(the file may be truncated)" in res.output
    w = windows(records(out))
    assert len(w) >= 27 and w[-1]["t_end"] >= 14.0


def test_bad_config_exits_78_naming_the_field(sim, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[motor]\npole_pairs = 0\n")
    res = run("check-config", cfg)
    assert res.exit_code == 78
    assert "motor.pole_pairs" in res.output and "c.toml" in res.output
    res = run("replay", tmp_path / "x.csv", env={"EDGE_AGENT_WINDOWS__HOP_S": "-1"})
    assert res.exit_code == 78
    assert "EDGE_AGENT_WINDOWS__HOP_S" in res.output
    # The FFT library's switch is settled before any data is read, and named.
    res = run("replay", sim / "healthy.csv", "--no-model", env={"EDGE_AGENT_FFT": "fastest"})
    assert res.exit_code == 78
    assert "EDGE_AGENT_FFT='fastest'" in res.output and "expected auto, fftw or scipy" in res.output


def test_broken_model_exits_65_and_missing_model_66(sim, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"\x08\x07garbage")
    src = Path(__file__).parent.parent / "models" / "default" / "model.json"
    (bad / "model.json").write_text(src.read_text())
    res = run("replay", sim / "healthy.csv", "--model", bad)
    assert res.exit_code == 65 and "model.onnx" in res.output
    res = run("replay", sim / "healthy.csv", "--model", tmp_path / "none")
    assert res.exit_code == 66


def test_check_config_prints_the_resolved_config(tmp_path):
    res = run("check-config", env={"EDGE_AGENT_MOTOR__POLE_PAIRS": "3",
                                   "EDGE_AGENT_MOTOR__RATED_RPM": "960"})  # fmt: skip
    assert res.exit_code == 0
    assert "[motor]\n" in res.output and "pole_pairs = 3\n" in res.output


def test_check_config_names_another_motors_configuration_sharing_its_name_adc_or_store(
    tmp_path,
):
    """/etc/edge-agent with a unit per motor: a configuration copied for a second motor,
    its asset not changed and its ADC named by another path to the same port, is named
    with what it shares; so is one that sets the same event store. The configuration
    printed is unchanged, and the exit is 0: the other file may be one no unit uses."""
    etc = tmp_path / "edge-agent"
    etc.mkdir()
    tty = tmp_path / "ttyUSB0"
    tty.touch()
    by_id = tmp_path / "usb-adc-if00"
    by_id.symlink_to(tty)
    db = tmp_path / "pump.db"

    def conf(name: str, device: Path | str, asset: str, store: Path | None = None) -> Path:
        text = f'[acquisition.serial]\ndevice = "{device}"\n[output]\nsite = "plant1"\n'
        text += f'asset = "{asset}"\n' + (f'[store]\npath = "{store}"\n' if store else "")
        (etc / name).write_text(text)
        return etc / name

    pump = conf("pump-1.toml", by_id, "pump-1", db)
    conf("fan-2.toml", tty, "pump-1")  # copied from pump-1: neither edited
    conf("press.toml", "/dev/ttyUSB1", "press", db)
    conf("spare.toml", "/dev/ttyUSB2", "spare")
    (etc / "broken.toml").write_text("[motor]\npole_pairs = 0\n")
    (etc / "sim.toml").write_text('[acquisition]\nsource = "simulator"\n[output]\nasset = "x"\n')
    res = run("check-config", pump)
    assert res.exit_code == 0
    assert '[output]\nsite = "plant1"\nasset = "pump-1"\n' in res.stdout
    assert res.stderr.splitlines() == [
        f"warning: {etc}/fan-2.toml names the same motor ([output] site and asset "
        "plant1/pump-1): the plant would get two motors' alerts and summaries under one name, "
        "and with a broker their daemons would take the connection from each other; and the "
        f"same ADC ([acquisition.serial] device {by_id}): the daemon started second would "
        "find it busy. Each motor needs its own.",
        f"warning: {etc}/press.toml names the same event store ([store] path {db}): two "
        "daemons would share one outbox. Each motor needs its own.",
    ]
    # The spare's configuration shares nothing; and without a file, nothing is compared.
    assert run("check-config", etc / "spare.toml").stderr == ""
    assert run("check-config").stderr == ""


def test_check_config_reads_the_units_environment_files_as_the_service_does(tmp_path):
    """/etc/edge-agent/pump-1.toml runs as edge-agent@pump-1, which reads edge-agent.env,
    then pump-1.env (systemd/edge-agent@.service). The configuration printed is the one
    the service runs with: before, the files' settings were left out, and a motor named
    in its .env file printed as the one of its .toml."""
    etc = tmp_path / "edge-agent"
    etc.mkdir()
    (etc / "pump-1.toml").write_text('[output]\nsite = "plant1"\nasset = "motor"\n')
    (etc / "edge-agent.env").write_text(
        "# the broker, for every motor\n"
        "EDGE_AGENT_MQTT__URL=mqtts://broker.plant.local\n"
        "EDGE_AGENT_MQTT__USERNAME='edge agent'\n"
        "EDGE_AGENT_OUTPUT__ASSET=shared\n"
        "\n; a comment the systemd way\n"
    )
    (etc / "pump-1.env").write_text(
        'EDGE_AGENT_OUTPUT__ASSET="pump-1"\n  EDGE_AGENT_MOTOR__RATED_CURRENT = 12.5  \n'
    )
    (etc / "fan-2.toml").write_text('[output]\nsite = "plant1"\nasset = "motor"\n')
    (etc / "fan-2.env").write_text("EDGE_AGENT_OUTPUT__ASSET=pump-1\n")  # a copy, not edited
    res = run("check-config", etc / "pump-1.toml")
    assert res.exit_code == 0, res.output
    assert '[output]\nsite = "plant1"\nasset = "pump-1"\n' in res.stdout  # its own .env's
    assert 'username = "edge agent"\n' in res.stdout and "rated_current = 12.5\n" in res.stdout
    assert 'url = "mqtts://broker.plant.local"\n' in res.stdout
    assert res.stderr.splitlines()[0] == (
        f"read as the service does: {etc}/edge-agent.env, {etc}/pump-1.env"
    )
    # the sibling's asset is in its .env file: it is the same motor
    assert f"warning: {etc}/fan-2.toml names the same motor ([output] site and asset " \
        "plant1/pump-1)" in res.stderr  # fmt: skip
    # edge-agent.toml is edge-agent.service's: it reads edge-agent.env only
    (etc / "edge-agent.toml").write_text("")
    res = run("check-config", etc / "edge-agent.toml")
    assert res.exit_code == 0 and 'asset = "shared"\n' in res.stdout
    assert res.stderr.splitlines()[0] == f"read as the service does: {etc}/edge-agent.env"
    # A bad value from a file is named with its file; a quote left open with its line.
    (etc / "pump-1.env").write_text("EDGE_AGENT_MOTOR__POLE_PAIRS=two\n")
    res = run("check-config", etc / "pump-1.toml")
    assert res.exit_code == 78
    assert f"{etc}/pump-1.env: EDGE_AGENT_MOTOR__POLE_PAIRS: motor.pole_pairs: " in res.stderr
    (etc / "pump-1.env").write_text("EDGE_AGENT_MOTOR__POLE_PAIRS=3\n")  # 1440 rpm: no
    res = run("check-config", etc / "pump-1.toml")
    assert res.exit_code == 78
    assert f"{etc}/pump-1.toml + {etc}/pump-1.env: motor: rated_rpm=1440 gives a full-load " \
        "slip of -0.440 for pole_pairs=3" in res.stderr  # fmt: skip
    (etc / "pump-1.env").write_text("\n\nEDGE_AGENT_MQTT__PASSWORD='secret\n")
    res = run("check-config", etc / "pump-1.toml")
    assert res.exit_code == 78 and "secret" not in res.output
    assert f"{etc}/pump-1.env, line 3: EDGE_AGENT_MQTT__PASSWORD: the quote ' is not closed " \
        "on this line; put the value on one line" in res.stderr  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
        max_size=6,
    ),
    st.sampled_from(["plain", "single", "double"]),
)
def test_environment_files_read_back_what_a_person_wrote(tmp_path_factory, variables, style):
    """Any value written the ways systemd's EnvironmentFile= takes (escaped as a shell
    would, or in quotes) reads back as it was; whitespace around it does not count."""
    from edge_agent.config import read_env_file

    def written(value: str) -> str:
        if style == "single" and "'" not in value:
            return f"'{value}'"
        if style == "double":
            return '"' + "".join("\\" + c if c in '\\"$`' else c for c in value) + '"'
        return "".join("\\" + c if c in "\\'\" \t" else c for c in value)

    path = tmp_path_factory.mktemp("env") / "motor.env"
    lines = ["# written by hand", ""] + [f"{k} = {written(v)}  " for k, v in variables.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_env_file(path) == variables


def test_simulate_rejects_bad_arguments_as_usage_errors(tmp_path):
    res = run("simulate", "-o", tmp_path / "x.csv", "--fault", "stator-short", "--severity", "400")
    assert res.exit_code == 2 and "severity" in res.output
    res = run("simulate", "-o", tmp_path / "x.wav")
    assert res.exit_code == 2 and ".csv" in res.output


def test_simulate_runs_the_configured_motor_at_its_frequency_and_rate(tmp_path):
    """A 60 Hz motor's config (the ITSC motor's: 1 kS/s): the simulator runs it at 60 Hz
    and 1 kS/s, as `run` with the simulator source does; before, at 50 Hz and 15 kS/s
    unless told, so a model trained on it learned another supply than the motor's."""
    config = Path(__file__).parent / "data" / "itsc_motor.toml"
    rec, out = tmp_path / "sim.csv", tmp_path / "out.jsonl"
    res = run("simulate", "--duration", "6", "-o", rec, "--config", config)
    assert res.exit_code == 0 and "6000 samples, 6 s at 1000 Hz" in res.output, res.output
    assert run("replay", rec, "--config", config, "--no-model", "--out", out).exit_code == 0
    windows = [json.loads(x) for x in out.read_text().splitlines()]
    hz = [r["features"]["supply_hz"] for r in windows if r["type"] == "window"]
    assert len(hz) == 11 and all(h == pytest.approx(60.0, abs=0.01) for h in hz)
    # Told otherwise, it runs as told.
    res = run("simulate", "--duration", "2", "--fs", "5000", "--supply-hz", "50", "-o",
              tmp_path / "x.npy", "--config", config)  # fmt: skip
    assert res.exit_code == 0 and "10000 samples, 2 s at 5000 Hz" in res.output


def test_train_refuses_too_little_data(tmp_path):
    f = tmp_path / "short.csv"
    assert run("simulate", "--duration", "2", "--fs", "2000", "-o", f).exit_code == 0
    res = run("train", f, "--out", tmp_path / "m")
    assert res.exit_code == 65 and "clean windows" in res.output


def test_console_script_and_module_entry_points(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    for cmd in (["edge-agent", "--version"], [sys.executable, "-m", "edge_agent", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        assert "edge-agent, version" in out.stdout


def test_library_use_on_a_numpy_array():
    import edge_agent
    from edge_agent.simulate import SimulationSpec, simulate

    cfg = edge_agent.Config()
    _, x = simulate(SimulationSpec(fs=5000.0, duration_s=4.0, ct_mismatch=0.01), cfg.motor)
    recs = edge_agent.analyze(x, fs=5000.0, scorer=None)
    w = windows(recs)
    assert len(w) == 7
    assert np.isclose(w[0]["features"]["supply_hz"], 50.0, atol=0.05)
    assert all(r["score"] is None for r in w)


def test_paced_replay_gives_the_same_records_as_a_fast_one(tmp_path):
    rec = tmp_path / "r.csv"
    assert run("simulate", "--duration", "3", "--fs", "4000", "-o", rec).exit_code == 0
    fast, paced = tmp_path / "fast.jsonl", tmp_path / "paced.jsonl"
    assert run("replay", rec, "--no-model", "--out", fast).exit_code == 0
    assert run("replay", rec, "--no-model", "--speed", "30", "--out", paced).exit_code == 0
    assert records(fast) == records(paced)
