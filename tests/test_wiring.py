"""Wiring checks: a miswired installation is told apart from a faulty motor.

Simulated currents and voltages are miswired as an installer would (a CT turned round, two
leads swapped, a CT left open, the voltages taken in another order) and go through the
pipeline; the phase-angle features the checks read are checked analytically too.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import Config, MotorConfig
from edge_agent.features import FeatureExtractor
from edge_agent.pipeline import Pipeline
from edge_agent.publish.schema import summary_payload
from edge_agent.simulate import SimulationSpec, simulate
from edge_agent.summary import MEAN_FEATURES
from edge_agent.wiring import energised_warning, running, wiring_problems
from tests.test_cli import ITSC, ITSC_CONFIG, run

FS = 15000.0
ROLES = ["ia", "ib", "ic", "va", "vb", "vc"]


def miswire(x: np.ndarray, how: str) -> np.ndarray:
    y = x.copy()
    if how.endswith(" reversed"):
        y[:, ROLES.index(how.split()[0])] *= -1
    elif how == "ib, ic swapped":
        y[:, [1, 2]] = y[:, [2, 1]]
    elif how == "vb, vc swapped":
        y[:, [4, 5]] = y[:, [5, 4]]
    elif how == "ic open":
        y[:, 2] = 0.002 * np.random.default_rng(0).standard_normal(y.shape[0])
    elif how == "voltages hold vb, vc, va":
        y[:, 3:] = x[:, [4, 5, 3]]
    elif how == "voltages hold vc, va, vb":
        y[:, 3:] = x[:, [5, 3, 4]]
    return y


@pytest.fixture(scope="module", params=[0.8, 0.1], ids=["80 % load", "10 % load"])
def motor(request) -> np.ndarray:
    spec = SimulationSpec(duration_s=3.0, voltages=True, load=request.param, seed=1)
    return simulate(spec, Config().motor)[1]


CASES = {
    # how: (check, words of its message)
    "right": (None, ""),
    "ia reversed": ("reversed", "the CT of ia is reversed"),
    "ib reversed": ("reversed", "the CT of ib is reversed"),
    "ic reversed": ("reversed", "the CT of ic is reversed"),
    "ib, ic swapped": ("sequence", "the currents rotate a-c-b"),
    "ic open": ("missing", "ic reads under 10% of the largest phase current"),
    "vb, vc swapped": ("voltage_sequence", "two of va, vb, vc are swapped"),
    "voltages hold vb, vc, va": ("pairing", "the channels read as va, vb, vc hold vb, vc, va"),
    "voltages hold vc, va, vb": ("pairing", "the channels read as va, vb, vc hold vc, va, vb"),
}


@pytest.mark.parametrize("how", list(CASES))
def test_each_miswiring_is_named_and_stops_the_diagnosis(motor, how):
    check, words = CASES[how]
    pipe = Pipeline(Config(), FS, ROLES)
    recs = pipe.update(miswire(motor, how))
    windows = [r for r in recs if r["type"] == "window"]
    if check is None:
        assert pipe.wiring == {} and not any("wiring" in w["flags"] for w in windows)
        return
    assert list(pipe.wiring) == [check] and words in pipe.wiring[check]
    assert all("wiring" in w["flags"] for w in windows)
    assert pipe.stats.wiring_windows == len(windows)
    # A reversed CT reads as i2/i1 = 2: without the check, a stator-short alarm.
    assert not [r for r in recs if r["type"] == "alert"]


def test_a_stopped_motor_is_not_judged():
    # Under 10 % of the nameplate current the pipeline flags the window "stopped" and does
    # not check it; the same currents on a smaller motor's nameplate are checked.
    features = {"rms_a": 0.5, "rms_b": 0.0, "rms_c": 0.4, "i0": 0.3, "i1": 0.1, "i2": 0.2}
    assert not running(features, rated_current=10.0)
    assert running(features, rated_current=1.0)
    assert "missing" in wiring_problems(features)
    x = simulate(SimulationSpec(duration_s=3.0, seed=1), Config().motor)[1] * 0.05
    x[:, 1] *= -1  # a reversed CT on a motor at standstill
    pipe = Pipeline(Config(), 15000.0)
    windows = [r for r in pipe.update(x) if r["type"] == "window"]
    assert all(w["flags"] == ["stopped"] for w in windows) and pipe.wiring == {}


@pytest.mark.parametrize("name", ["SC_HLT_001.csv", "SC_A0_B0_C4_001.csv"])
def test_the_real_itsc_motor_reads_right_healthy_and_shorted(name, tmp_path):
    # A real bench motor whose current sensors leave i0/i1 at up to 0.11, and a 40 % short.
    res = run("replay", ITSC / name, "--config", ITSC_CONFIG, "--no-model",
              "--out", tmp_path / "r.jsonl")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "wiring" not in res.output


# --- the angle features ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    rotation=st.floats(0, 360),
    lag=st.floats(-170, 170),
    unbalance=st.floats(0, 0.2),
)
def test_phase_angles_read_back_a_known_three_phase_set(rotation, lag, unbalance):
    """Currents lagging their voltages by ``lag``, a negative-sequence part of the
    currents, and the whole set turned by ``rotation``: the features give the angles the
    phasors have."""
    n, f = 15000, 50.0
    t = np.arange(n) / FS
    theta = math.radians(rotation)
    shifts = np.array([0.0, -2 * math.pi / 3, 2 * math.pi / 3])
    v = 325.0 * np.cos(2 * math.pi * f * t[None, :] + theta + shifts[:, None])
    i_pos = 10.0 * np.exp(1j * (theta - math.radians(lag) + shifts))
    i_neg = 10.0 * unbalance * np.exp(1j * (0.7 - shifts))
    ph = i_pos + i_neg
    x = np.abs(ph)[:, None] * np.cos(2 * math.pi * f * t[None, :] + np.angle(ph)[:, None])
    out = FeatureExtractor(MotorConfig(supply_hz=50.0), FS, FS / 7).short(x, v)

    def lag_of(ref, k):
        return math.degrees(np.angle(ref) - np.angle(k)) % 360.0

    def apart(a, b):
        return abs((a - b + 180.0) % 360.0 - 180.0)

    assert apart(out["i_angle_b_deg"], lag_of(ph[0], ph[1])) < 1e-3
    assert apart(out["i_angle_c_deg"], lag_of(ph[0], ph[2])) < 1e-3
    assert apart(out["v_angle_b_deg"], 120.0) < 1e-3 and apart(out["v_angle_c_deg"], 240.0) < 1e-3
    for k, p in enumerate("abc"):
        want = math.degrees(theta + shifts[k] - np.angle(ph[k]))
        assert apart(out[f"phi_{p}_deg"], want) < 1e-3
        assert -180.0 < out[f"phi_{p}_deg"] <= 180.0
    if unbalance == 0:
        assert apart(out["i_angle_b_deg"], 120.0) < 1e-3
        assert out["phi_a_deg"] == pytest.approx(lag, abs=1e-3)


# --- what the user sees ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reversed_ct(tmp_path_factory):
    """6 s of a healthy motor, currents only, with ib's CT turned round."""
    path = tmp_path_factory.mktemp("wiring") / "reversed.npy"
    x = simulate(SimulationSpec(duration_s=6.0, seed=1), Config().motor)[1]
    x[:, 1] *= -1
    np.save(path, x)
    return path


def test_replay_and_train_say_which_ct_to_turn(reversed_ct, tmp_path):
    res = run("replay", reversed_ct, "--fs", "15000", "--out", tmp_path / "r.jsonl")
    assert res.exit_code == 0, res.output
    assert "wiring: 11 windows flagged; " in res.output
    assert "the CT of ib is reversed" in res.output
    recs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert not [r for r in recs if r["type"] == "alert"]
    # The plant hears of it in the summaries.
    assert sum(r["wiring_windows"] for r in recs if r["type"] == "summary") == 11
    res = run("train", reversed_ct, "--fs", "15000", "--out", tmp_path / "m")
    assert res.exit_code == 65
    assert "0 clean windows" in res.output and "the CT of ib is reversed" in res.output
    # Beside a well-wired run, the miswired one's windows are left out, and train says so.
    good = tmp_path / "good.npy"
    np.save(good, simulate(SimulationSpec(duration_s=6.0, seed=2), Config().motor)[1])
    res = run("train", good, reversed_ct, "--fs", "15000", "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    assert "reversed.npy: wiring: 11 windows flagged; " in res.output
    assert "left out" in res.output
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert [s["windows"] for s in card["training"]["sources"]] == [11, 0]
    # One recording gave windows: the threshold comes from its stretches.
    assert "stretch" in card["threshold_rule"]
    assert "warning: the threshold has seen 3 stretches of one recording" in res.output


def daemon_log(recording, tmp_path, **env: str) -> list[str]:
    """The stderr lines (the journal, under systemd) of `run` over ``recording``."""
    env = {**os.environ, "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0", **env}
    res = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--source", "replay", "--recording",
         str(recording), "--no-model", "--out", str(tmp_path / "run.jsonl")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stderr.splitlines()


def test_the_daemon_logs_a_miswiring_once_and_counts_its_windows(reversed_ct, tmp_path):
    lines = daemon_log(reversed_ct, tmp_path)
    warnings = [line for line in lines if "the CT of ib is reversed" in line]
    # One log line when it first shows, and the run's summary at the end.
    assert len(warnings) == 2, lines
    assert "wiring: 11 windows flagged" in warnings[-1]


def test_a_summary_queued_before_the_wiring_count_still_publishes():
    # An outbox written by an older version holds summaries without wiring_windows (nor
    # the diagnosis's means, added after it).
    old = {"type": "summary", "t_start": 0.0, "t_end": 60.0, "windows": 119,
           "flagged_windows": 0, "anomalous_windows": 0, "alerts_raised": 0,
           "alerts_cleared": 0, "active_alerts": [], "lost_samples": 0,
           **dict.fromkeys(MEAN_FEATURES[:6]), "i2_i1_max": None, "score_p50": None,
           "score_p95": None, "score_max": None}  # fmt: skip
    payload = summary_payload(old, site="s", asset="a", t0=1.7e9)
    assert payload["wiring_windows"] == 0 and payload["windows"] == 119
    assert payload["brb_lsb_db"] is None and payload["i1"] is None


def test_a_nameplate_current_that_is_not_this_motors_is_said_once(tmp_path):
    # The simulated motor draws 8.4 A; a nameplate of 4 A is wrong, or the motor overloaded.
    rec = tmp_path / "healthy.npy"
    np.save(rec, simulate(SimulationSpec(duration_s=8.0, seed=1), Config().motor)[1])
    lines = daemon_log(rec, tmp_path, EDGE_AGENT_MOTOR__RATED_CURRENT="4")
    said = [line for line in lines if "nameplate: the motor draws" in line]
    assert len(said) == 1, lines
    assert "2.1 x the nameplate's rated_current (4 A)" in said[0]
    res = run("train", rec, "--fs", "15000", "--out", tmp_path / "m",
              env={"EDGE_AGENT_MOTOR__RATED_CURRENT": "4"})  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "warning: the motor draws 8.3" in res.output


def test_a_nameplate_current_far_over_the_motors_is_said_not_taken_for_a_stop(tmp_path):
    # The simulated motor draws 8.4 A; on a 100 A nameplate every window reads stopped
    # (under 10 A), and nothing would ever be analysed.
    rec = tmp_path / "healthy.npy"
    x = simulate(SimulationSpec(duration_s=14.0, seed=1), Config().motor)[1]
    np.save(rec, x)
    big = {"EDGE_AGENT_MOTOR__RATED_CURRENT": "100"}
    lines = daemon_log(rec, tmp_path, **big)
    said = [line for line in lines if "nameplate: the motor reads stopped" in line]
    # Once when 20 windows in a row have said it, and in the run's summary at the end.
    assert len(said) == 2 and " WARNING " in said[0], lines
    assert "yet its currents are a running motor's: a balanced three-phase set of 8.3" in said[0]
    assert "[motor] rated_current is likely not this motor's" in said[0]
    res = run("replay", rec, "--fs", "15000", "--out", os.devnull, env=big)
    assert res.exit_code == 0 and "27 with the motor stopped" in res.output, res.output
    assert "\nnameplate: the motor reads stopped (every phase under 10% of" in res.output
    res = run("train", rec, "--fs", "15000", "--out", tmp_path / "m", env=big)
    assert res.exit_code == 65 and "27 windows: the motor reads stopped" in res.output
    # The right nameplate: running. A stopped motor's CTs (1 % of the running current:
    # noise and pick-up) say nothing.
    lines = daemon_log(rec, tmp_path)
    assert lines and not [line for line in lines if "nameplate" in line]
    pipe = Pipeline(Config(), FS)
    windows = [r for r in pipe.update(0.01 * x) if r["type"] == "window"]
    assert all(w["flags"] == ["stopped"] for w in windows) and pipe.energised_seen is None


@pytest.mark.parametrize(
    "change, why",
    [({}, None), ({"i1": 1.0, "rms_a": 1.0, "rms_b": 1.0, "rms_c": 1.0}, "running"),
     ({"i1": 0.15}, "under 2 %"), ({"i2_i1": 0.9}, "noise: no sequence"),
     ({"i0": 0.5}, "no 3-wire set"), ({"supply_hz": None}, "no fundamental")],
    ids=["energised", "running", "small", "unbalanced", "zero sequence", "no supply"],
)  # fmt: skip
def test_only_a_balanced_current_between_noise_and_running_is_a_running_motors(change, why):
    features = {"rms_a": 0.5, "rms_b": 0.5, "rms_c": 0.5, "i1": 0.5, "i2_i1": 0.02,
                "i0": 0.01, "supply_hz": 50.0, **change}  # fmt: skip
    said = energised_warning(features, rated_current=10.0)
    assert (said is None) == (why is not None)
    if why is None:
        assert "a balanced three-phase set of 0.5 A at 50.0 Hz (i2/i1 0.020), 5 % of" in said


def test_systemctl_status_says_when_a_running_motor_reads_stopped(tmp_path):
    """The status line `systemctl status` shows, over a run whose 100 A nameplate makes
    the 8.4 A motor read stopped: from 20 windows in a row on, it says why nothing is
    analysed. (The notifier's clock runs 10 s a call, so each turn of the loop sends one.)"""
    from edge_agent.acquisition.sources import make_source
    from edge_agent.cli import _make_sink
    from edge_agent.config import load_config
    from edge_agent.service import run as run_service
    from edge_agent.systemd import STATUS_INTERVAL_S, Notifier
    from tests.test_systemd import NotifySocket

    rec = tmp_path / "healthy.npy"
    np.save(rec, simulate(SimulationSpec(duration_s=14.0, seed=1), Config().motor)[1])
    cfg = load_config(overrides={
        "acquisition": {"source": "replay", "replay": {"path": str(rec), "speed": 0}},
        "motor": {"rated_current": 100.0},
        "store": {"path": str(tmp_path / "edge-agent.db")},
    })  # fmt: skip
    ticks = itertools.count(step=STATUS_INTERVAL_S)
    systemd = NotifySocket()
    try:
        notifier = Notifier({"NOTIFY_SOCKET": systemd.address}, clock=lambda: next(ticks))
        sink = _make_sink(cfg, None, None, ts_offset=0.0, daemon=True)
        try:
            run_service(cfg, make_source(cfg), sink, scorer=None, notifier=notifier)
        finally:
            sink.close()
        systemd.wait_for(lambda s: s.having("STOPPING"), 10, "STOPPING=1")
    finally:
        systemd.close()
    statuses = [m["STATUS"] for _, m in systemd.having("STATUS")]
    said = [x for x in statuses if "running motor's current" in x]
    assert said, statuses
    assert said[0].endswith(
        "; reads stopped with a running motor's current: check [motor] rated_current"
    )
    before = statuses[: statuses.index(said[0])]
    assert any(" windows (0 anomalous, 0 flagged)" in x for x in before)  # not at once


def test_a_fixed_supply_hz_off_the_current_is_said_alone():
    # Features that read as a missing phase; at a fixed frequency 0.6 Hz from the one the
    # current runs at they are read at the wrong frequency, and only that is said.
    features = {"rms_a": 0.5, "rms_b": 0.0, "rms_c": 0.4, "i0": 0.3, "i1": 0.1, "i2": 0.2}
    assert list(wiring_problems(features, 50.0, 49.4)) == ["supply_hz"]
    assert wiring_problems(features, 50.0, 49.4)["supply_hz"].startswith(
        "the current runs at 49.4 Hz, not at [motor] supply_hz = 50"
    )
    # Within 0.5 Hz (a grid's wander), or detected: the other checks, as before.
    for fixed, peak in ((50.0, 49.6), (None, 49.4), (50.0, None)):
        assert list(wiring_problems(features, fixed, peak)) == ["missing"]
