"""The diagnosis rules: which fault an alert names, and how severe.

The rules on window features directly, then through the pipeline on simulated motors
whose negative-sequence current comes from the winding or from the supply. The real
ITSC shorts are in test_evaluate.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import AlertConfig, Config
from edge_agent.diagnosis import BASELINE_LINES, AlertTracker, Finding, diagnose
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import SimulationSpec, simulate
from tests.test_cli import run

CFG = AlertConfig()
RATED = 10.0


def findings(healthy_i2: float | None = None, **features):
    """Findings of a window of a motor at its rated current (unless ``i1`` says otherwise);
    ``healthy_i2``: the model's healthy negative-sequence current, A."""
    return diagnose({"i1": RATED, **features}, None, None, CFG, RATED, None, healthy_i2)


def currents(i1: float, i2: float) -> dict[str, float]:
    return {"i1": i1, "i2": i2, "i2_i1": i2 / i1}


@pytest.mark.parametrize(
    ("v2_v1", "severity"),
    [(0.0, None), (0.0199, None), (0.02, "watch"), (0.03, "warning"), (0.049, "warning"),
     (0.05, "alarm"), (0.2, "alarm")],
)  # fmt: skip
def test_voltage_unbalance_is_graded_by_en50160_and_nema(v2_v1, severity):
    f = findings(v2_v1=v2_v1, i2_i1=6 * v2_v1, v1=230.0)
    got = f.get("supply_unbalance")
    assert (got.severity if got else None) == severity
    # The current unbalance the supply drives is not a stator short.
    assert "stator_short" not in f


@pytest.mark.parametrize(
    ("i2_i1", "v2_v1", "severity"),
    [
        (0.03, None, None),       # a healthy motor's asymmetry
        (0.08, None, "watch"),    # no voltages: all of i2/i1 counts
        (0.12, 0.02, None),       # 2 % supply unbalance drives 0.12 by itself
        (0.20, 0.005, "warning"),  # 0.17 beyond the supply's 0.03
        (0.30, 0.0, "alarm"),
    ],
)  # fmt: skip
def test_stator_short_is_the_negative_sequence_current_the_supply_does_not_explain(
    i2_i1, v2_v1, severity
):
    got = findings(i2_i1=i2_i1, v2_v1=v2_v1).get("stator_short")
    assert (got.severity if got else None) == severity
    if got:
        ev = got.evidence
        assert ev["i2_i1"] == i2_i1 and ev["v2_v1"] == v2_v1
        assert ev["i2_i1_from_supply"] == (None if v2_v1 is None else pytest.approx(6 * v2_v1))


def test_the_supply_drives_the_same_negative_sequence_current_at_any_load():
    # 2 % unbalance drives i2 = 6 x 2 % of the rated 10 A = 1.2 A: at half the rated
    # current that is i2/i1 = 0.24, all of it the supply's.
    assert "stator_short" not in findings(i1=5.0, i2_i1=0.24, v2_v1=0.02)
    got = findings(i1=5.0, i2_i1=0.24 + 0.08, v2_v1=0.02)["stator_short"]
    assert got.severity == "watch"
    assert got.evidence["i2_i1_from_supply"] == pytest.approx(0.24)
    # A 40 A motor left with the default 10 A nameplate: the supply's share is taken as at
    # least its rated-load 0.12, so the unbalance does not read as a short.
    assert "stator_short" not in findings(i1=40.0, i2_i1=0.12, v2_v1=0.02)


# A supply 1.5 % unbalanced when the model was trained drives 6 x 1.5 % of the rated 10 A.
HEALTHY_I2 = 0.9


@pytest.mark.parametrize(
    ("change", "severity"), [(0.0, None), (-0.05, None), (0.049, None), (0.051, "watch"),
                             (0.119, "watch"), (0.121, "warning"), (0.221, "alarm")],
)  # fmt: skip
@pytest.mark.parametrize("i1", [RATED, 4.0])
def test_without_voltages_a_model_of_the_motor_takes_its_healthy_negative_sequence_out(
    change, severity, i1
):
    # The same standing 0.9 A at full load (i2/i1 0.09) and at light load (0.225).
    now = currents(i1, HEALTHY_I2 + change * i1)
    got = findings(HEALTHY_I2, **now).get("stator_short")
    assert (got.severity if got else None) == severity
    if got:
        ev = got.evidence
        assert ev["i2_i1_change"] == pytest.approx(change)
        assert ev["i2_healthy"] == HEALTHY_I2 and ev["i2"] == now["i2"]
        assert ev["v2_v1"] is None
    # Without the model the standing 0.9 A alone reads as a short.
    assert findings(**currents(i1, HEALTHY_I2))["stator_short"].severity in ("watch", "warning")


def test_with_voltages_the_supply_share_is_measured_not_learnt():
    # The voltages say how much of i2 the supply drives now; the model's healthy i2,
    # learnt under another day's supply, is not used.
    f = findings(HEALTHY_I2, v2_v1=0.0, **currents(RATED, HEALTHY_I2))
    assert f["stator_short"].severity == "watch"
    assert "i2_i1_change" not in f["stator_short"].evidence
    assert "stator_short" not in findings(HEALTHY_I2, v2_v1=0.015, **currents(RATED, 0.9))


def test_a_stopped_motor_raises_no_stator_alert():
    # i1 under 10 % of the nameplate current: the ratio is one of noise.
    assert "stator_short" not in diagnose({"i1": 0.5, "i2_i1": 0.9}, None, None, CFG, RATED)
    assert "stator_short" in diagnose({"i1": 1.0, "i2_i1": 0.9}, None, None, CFG, RATED)


levels = ["watch", "warning", "alarm"]


@given(st.floats(0, 1), st.floats(0, 1), st.one_of(st.none(), st.floats(0, 0.1)))
def test_more_negative_sequence_current_is_never_less_severe(a, b, v2_v1):
    lo, hi = sorted((a, b))
    rank = [
        levels.index(f.severity) if (f := findings(i2_i1=x, v2_v1=v2_v1).get("stator_short"))
        else -1
        for x in (lo, hi)
    ]  # fmt: skip
    assert rank[0] <= rank[1]


def test_alert_levels_must_rise_and_name_the_keys(tmp_path):
    toml = tmp_path / "bad.toml"
    toml.write_text("[alerts]\nstator_i2_watch = 0.2\n")
    res = run("check-config", toml)
    assert res.exit_code == 78
    assert "stator_i2_watch < stator_i2_warning < stator_i2_alarm" in res.output


# --- through the pipeline -------------------------------------------------------------------


def named_alerts(fault: str | None, severity: float | None = None, voltages: bool = True):
    cfg = Config()
    spec = SimulationSpec(duration_s=4.0, fault=fault, severity=severity, voltages=voltages)
    _, x = simulate(spec, cfg.motor)
    roles = ["ia", "ib", "ic", "va", "vb", "vc"][: x.shape[1]]
    recs = Pipeline(cfg, spec.fs, roles).update(x)
    return {r["fault"]: r for r in recs if r["type"] == "alert" and r["state"] == "raised"}


def test_a_shorted_winding_is_named_a_stator_short_not_a_supply_problem():
    alerts = named_alerts("stator-short", 25.0)  # i2/i1 = 0.15, the supply balanced
    assert set(alerts) == {"stator_short"}
    assert alerts["stator_short"]["severity"] == "warning"
    assert alerts["stator_short"]["evidence"]["v2_v1"] < 0.002


@pytest.mark.parametrize(("percent", "severity"), [(2.0, "watch"), (3.5, "warning")])
def test_an_unbalanced_supply_is_named_as_such_and_not_a_short(percent, severity):
    # 6 x the voltage unbalance in the current (0.12 and 0.21), all of it from the supply.
    alerts = named_alerts("supply-unbalance", percent)
    assert set(alerts) == {"supply_unbalance"}
    assert alerts["supply_unbalance"]["severity"] == severity


def test_without_voltages_a_supply_unbalance_reads_as_a_short():
    # The documented limit without a model of the motor: with currents alone, the
    # supply's share cannot be told apart.
    alerts = named_alerts("supply-unbalance", 2.0, voltages=False)
    assert set(alerts) == {"stator_short"}
    assert alerts["stator_short"]["evidence"]["v2_v1"] is None


@pytest.fixture(scope="module")
def unbalanced_supply(tmp_path_factory):
    """A motor on a supply 1.5 % unbalanced, currents only, at 80 % load: 10 s of it
    healthy, then 6 s more, healthy or with 25 % of phase C's turns shorted (the
    simulator's lines add, so the short is the difference of a shorted and a healthy run
    of the same seed); and 6 s at 30 % load on the same supply."""
    d = tmp_path_factory.mktemp("unbalanced")
    motor = Config().motor
    fs, onset = 15000.0, 10.0

    def sim(fault, severity, onset_s=0.0, load=0.8):
        spec = SimulationSpec(duration_s=16.0, fault=fault, severity=severity, onset_s=onset_s,
                              load=load, seed=4)  # fmt: skip
        return simulate(spec, motor)[1]

    supply, healthy = sim("supply-unbalance", 1.5), sim(None, None)
    shorted = supply + sim("stator-short", 25.0, onset) - healthy
    n = round(onset * fs)
    np.save(d / "train.npy", supply[:n])
    np.save(d / "later.npy", supply[n:])
    np.save(d / "shorted.npy", shorted[n:])
    np.save(d / "light.npy", sim("supply-unbalance", 1.5, load=0.3)[n:])
    res = run("train", d / "train.npy", "--fs", "15000", "--out", d / "model")
    assert res.exit_code == 0, res.output
    assert "healthy negative sequence kept: i2 0.868 A (i2/i1 0.104)" in res.output
    return d


def replay_alerts(path: Path, *model: str | Path) -> dict[str, dict]:
    res = run("replay", path, "--fs", "15000", *model, "--out", path.with_suffix(".jsonl"))
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
    return {r["fault"]: r for r in recs if r["type"] == "alert" and r["state"] == "raised"}


def test_a_model_of_the_motor_takes_a_standing_supply_unbalance_out(unbalanced_supply):
    d = unbalanced_supply
    card = json.loads((d / "model" / "model.json").read_text())
    # 6 x 1.5 % of the rated 10 A, and the CT gains' mismatch (within 1 %).
    assert card["negative_sequence"]["i2"] == pytest.approx(0.9, abs=0.06)
    # The bundled default model knows nothing of this supply: a standing "short".
    assert "stator_short" in replay_alerts(d / "later.npy")
    assert "stator_short" not in replay_alerts(d / "later.npy", "--model", d / "model")


def test_the_healthy_negative_sequence_holds_at_another_load(unbalanced_supply):
    # At 30 % load the supply's 0.9 A is i2/i1 0.19, not the 0.11 of training, and its
    # angle to i1 has turned with the power factor; in amperes it has not changed.
    d = unbalanced_supply
    alerts = replay_alerts(d / "light.npy", "--model", d / "model")
    assert "stator_short" not in alerts


def test_a_short_on_an_unbalanced_supply_is_named_by_its_change(unbalanced_supply):
    d = unbalanced_supply
    alerts = replay_alerts(d / "shorted.npy", "--model", d / "model")
    ev = alerts["stator_short"]["evidence"]
    # The short's own i2 is 0.15 of i1 (0.006 per % of turns), but 80 degrees from the
    # supply's (the simulator turns both from one random phase): i2 grows by 0.09 of i1,
    # a watch. The rule reads magnitudes, which hold at any load (test above).
    assert ev["i2_i1_change"] == pytest.approx(0.09, abs=0.01)
    assert alerts["stator_short"]["severity"] == "watch"
    assert ev["i2_healthy"] == pytest.approx(0.9, abs=0.06)


def test_a_healthy_motor_with_voltages_raises_nothing():
    assert named_alerts(None) == {}


# --- eccentricity and bearing lines, against the motor's own healthy level -----------------

BASE = {"ecc_lsb_db": -60.0, "ecc_usb_db": -62.0, "bearing_outer_db": -80.0}


@pytest.mark.parametrize(
    ("rise", "severity"),
    [(5.9, None), (6.0, "watch"), (11.9, "watch"), (12.0, "warning"), (18.0, "alarm")],
)
def test_eccentricity_is_graded_by_its_rise_over_the_healthy_level(rise, severity):
    features = {"ecc_lsb_db": -70.0, "ecc_usb_db": -62.0 + rise, "ecc_usb_floor_db": -90.0}
    f = diagnose(features, None, None, CFG, RATED, BASE)
    got = f.get("eccentricity")
    assert (got.severity if got else None) == severity
    if got:
        ev = got.evidence
        assert ev["line"] == "ecc_usb_db" and ev["rise_db"] == pytest.approx(rise)
        assert ev["healthy_p95_db"] == -62.0


def test_without_a_healthy_level_no_line_is_judged():
    # The bundled default model was trained on a simulator: it carries no line levels, and
    # a real motor's own eccentricity lines must not be read against a simulated one.
    features = {"ecc_lsb_db": -30.0, "bearing_outer_db": -30.0, "bearing_outer_floor_db": -90.0}
    assert not {"eccentricity", "bearing"} & set(diagnose(features, None, None, CFG, RATED))
    assert not {"eccentricity", "bearing"} & set(diagnose(features, None, None, CFG, RATED, {}))


@pytest.mark.parametrize(
    ("fault", "line"), [("bearing", "bearing_outer"), ("eccentricity", "ecc_lsb")]
)
def test_a_line_must_stand_out_of_its_floor(fault, line):
    risen = {f"{line}_db": BASE[f"{line}_db"] + 20.0}  # 20 dB over its healthy level
    found = diagnose({**risen, f"{line}_floor_db": risen[f"{line}_db"] - 15.0}, None, None,
                     CFG, RATED, BASE)  # fmt: skip
    assert found[fault].severity == "alarm"
    assert found[fault].evidence["line"] == f"{line}_db"
    # The same level with the floor risen along (a load or noise change) is no line.
    for floor in (risen[f"{line}_db"] - 5.0, None):
        assert fault not in diagnose({**risen, f"{line}_floor_db": floor}, None, None, CFG,
                                     RATED, BASE)  # fmt: skip


@pytest.fixture(scope="module")
def own_model(tmp_path_factory):
    """A model of this motor: trained on two healthy 30 s runs with its bearing configured;
    ideal CTs, as one motor's sensors stay the same between runs."""
    d = tmp_path_factory.mktemp("own")
    config = d / "motor.toml"
    config.write_text(
        "[motor.bearing]\nn_balls = 9\nball_diameter_mm = 7.94\npitch_diameter_mm = 39.04\n"
    )
    sims = {"h1": [], "h2": [], "h3": [], "ecc": ["--fault", "eccentricity", "--severity", "50"],
            "brg": ["--fault", "bearing-outer", "--severity", "60"]}  # fmt: skip
    for seed, (name, extra) in enumerate(sims.items()):
        res = run("simulate", "-o", d / f"{name}.npy", "--duration", "30", "--ct-mismatch", "0",
                  "--seed", str(seed), "--config", config, *extra)  # fmt: skip
        assert res.exit_code == 0, res.output
    res = run("train", d / "h1.npy", d / "h2.npy", "--fs", "15000", "--config", config,
              "--out", d / "model")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "healthy line levels kept for eccentricity (2 lines), bearing (4 lines)" in res.output
    # Ideal CTs and a balanced supply: hardly any negative sequence, and a steady one.
    assert "healthy negative sequence kept: i2 0.0" in res.output and "(i2/i1 0.00" in res.output
    assert "hard to tell" not in res.output
    return d, config


def test_training_keeps_the_healthy_level_of_each_line(own_model):
    d, _ = own_model
    card = json.loads((d / "model" / "model.json").read_text())
    lines = card["baseline"]
    assert set(lines) == {n for names in BASELINE_LINES.values() for n in names}
    assert "ecc_usb_db" in lines and "bearing_cage_db" in lines
    for stats in lines.values():
        # The simulated motor has no such lines: its healthy level is the noise floor.
        assert -110 < stats["p50"] <= stats["p95"] < -80
        # Two 30 s runs: the long window (7.65 s) is analysed every 2 s once full, 12 times
        # a run; the windows in between repeat an analysis and are not counted again.
        assert stats["analyses"] == 24


def test_own_model_names_eccentricity_and_bearing_and_not_the_healthy_run(own_model, tmp_path):
    d, config = own_model
    labels = d / "labels.csv"
    labels.write_text("file,label\nh3.npy,healthy\necc.npy,eccentricity\nbrg.npy,bearing\n")
    res = run("evaluate", labels, "--model", d / "model", "--fs", "15000", "--config", config,
              "--out", tmp_path / "r.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    by_label = report["alerts"]["by_label"]
    assert by_label["eccentricity"]["named"] == 1 and by_label["bearing"]["named"] == 1
    assert report["alerts"]["healthy_with_false_alarm"] == 0
    rows = {Path(r["file"]).name: r for r in report["recordings"]}
    (ecc,) = [a for a in rows["ecc.npy"]["alerts"] if a["fault"] == "eccentricity"]
    (brg,) = [a for a in rows["brg.npy"]["alerts"] if a["fault"] == "bearing"]
    # 50 and 60 dB below the fundamental, 40 and 30 dB above the floor-level baseline.
    assert ecc["severity"] == brg["severity"] == "alarm"
    # Read off the long window: three analyses (8 s to fill, then every 2 s).
    assert ecc["t"] >= 8.0 and brg["t"] >= 8.0


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [("baseline", {"ecc_lsb_db": {"p95": "loud"}}, "'baseline' entry 'ecc_lsb_db'"),
     ("negative_sequence", {"i2_i1": 0.02}, "'negative_sequence' is"),
     ("negative_sequence", {"i2": -0.1}, "with 0 <= i2"),
     ("normalisation", {"mean": [1.0], "scale": [1.0]}, "'normalisation' is"),
     ("normalisation", {"mean": [0.0] * 9, "scale": [0.0] * 9}, "scales > 0")],
)  # fmt: skip
def test_a_broken_motor_baseline_in_the_card_is_refused(own_model, tmp_path, key, value, said):
    d, _ = own_model
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.onnx").write_bytes((d / "model" / "model.onnx").read_bytes())
    card = json.loads((d / "model" / "model.json").read_text())
    card[key] = value
    (bundle / "model.json").write_text(json.dumps(card))
    res = run("replay", d / "h3.npy", "--fs", "15000", "--model", bundle)
    assert res.exit_code == 65
    assert said in res.output and "model.json" in res.output


def test_the_default_model_names_no_line_fault_and_the_report_says_why(own_model, tmp_path):
    d, config = own_model
    labels = d / "ecc-labels.csv"
    labels.write_text("file,label\necc.npy,eccentricity\n")
    res = run("evaluate", labels, "--fs", "15000", "--config", config,
              "--out", tmp_path / "r.json")  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"]["line_baseline"] == []
    assert report["model"]["negative_sequence"] is None
    assert report["alerts"]["by_label"]["eccentricity"]["named"] == 0
    assert "the model has no healthy level of the eccentricity lines" in res.output


# --- a fault that worsens -------------------------------------------------------------------


def _finding(severity: str | None) -> dict:
    return {} if severity is None else {"bearing": Finding("bearing", severity, {"x": 1})}


def test_a_worsening_fault_is_raised_again_at_its_new_severity():
    tr = AlertTracker(raise_after=3, clear_after=2)
    seq = ["watch"] * 3 + ["alarm", "warning", "alarm"] + ["alarm"] * 3 + ["watch", None, None]
    out = [(t, r) for t, sev in enumerate(seq) for r in tr.update(float(t), _finding(sev), None)]
    got = [(t, r["state"], r["severity"]) for t, r in out]
    assert got == [
        (2, "raised", "watch"),
        # Three windows worse than watch, the mildest of them a warning.
        (5, "cleared", "watch"), (5, "raised", "warning"),
        (8, "cleared", "warning"), (8, "raised", "alarm"),
        # A milder window does not lower it; two normal ones clear it.
        (11, "cleared", "alarm"),
    ]  # fmt: skip
    ids = [r["id"] for _, r in out]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5] and len(set(ids)) == 3
    cleared, raised = out[1][1], out[2][1]
    assert cleared["evidence"] == {"superseded_by": raised["id"], "severity_now": "warning"}
    assert raised["evidence"]["escalated_from"] == cleared["id"]
    assert raised["evidence"]["previous_severity"] == "watch" and raised["evidence"]["x"] == 1


def test_only_consecutive_worse_windows_escalate():
    tr = AlertTracker(raise_after=3, clear_after=5)
    seq = ["watch"] * 3 + ["alarm", "alarm", "watch", "alarm", "alarm"]
    out = [r for t, sev in enumerate(seq) for r in tr.update(float(t), _finding(sev), None)]
    assert [(r["state"], r["severity"]) for r in out] == [("raised", "watch")]


def test_a_short_that_spreads_is_escalated_through_the_pipeline():
    # 15 % of the turns shorted (i2/i1 0.09, watch) for 4 s, then 45 % (0.27, alarm).
    cfg = Config()
    parts = [simulate(SimulationSpec(duration_s=4.0, fault="stator-short", severity=sev,
                                     seed=1), cfg.motor)[1] for sev in (15.0, 45.0)]  # fmt: skip
    recs = Pipeline(cfg, 15000.0).update(np.concatenate(parts))
    alerts = [r for r in recs if r["type"] == "alert" and r["fault"] == "stator_short"]
    # The 1 s windows across the change read a mix of the two: warning on the way up.
    assert [(a["state"], a["severity"]) for a in alerts] == [
        ("raised", "watch"),
        ("cleared", "watch"), ("raised", "warning"),
        ("cleared", "warning"), ("raised", "alarm"),
    ]  # fmt: skip
    # Each step takes three windows at or above it: warning at 5.5 s, alarm at 7 s.
    assert 4.0 < alerts[2]["t"] < alerts[4]["t"] <= 7.0
    assert alerts[2]["evidence"]["escalated_from"] == alerts[0]["id"]
    assert alerts[4]["evidence"]["escalated_from"] == alerts[2]["id"]


# ---------------------------------------------------------------------------------------
# The deadband: an open alert clears only once its value has clearly fallen


def an_hour_of_analyses(cfg: AlertConfig, mean_db: float, sd_db: float, seed: int = 0):
    """Raised and cleared alerts over an hour of long-window analyses (one every 2 s) of a
    broken-bar sideband at ``mean_db`` ± ``sd_db`` (a motor whose load wanders), fed
    through diagnose and the tracker as the pipeline does."""
    rng = np.random.default_rng(seed)
    tracker = AlertTracker.from_config(cfg)
    said = []
    for k in range(1800):
        features = {"i1": 8.0, "brb_prominence_db": 20.0,
                    "brb_lsb_db": mean_db + sd_db * rng.standard_normal()}  # fmt: skip
        found = diagnose(features, None, None, cfg, RATED, holding=tracker.active)
        said += [r["state"] for r in tracker.update(2.0 * k, found, None)]
    return said.count("raised"), said.count("cleared")


@pytest.mark.parametrize("mean_db", [-49.0, -48.5, -48.0, -47.5])
def test_a_sideband_hovering_at_the_watch_level_raises_one_alert_an_hour(mean_db):
    # Without the deadband, it raised and cleared one every few minutes.
    raised, _ = an_hour_of_analyses(CFG.model_copy(update={"deadband_db": 0.0}), mean_db, 1.0)
    assert raised >= 4
    assert an_hour_of_analyses(CFG, mean_db, 1.0) == (1, 0)


def test_a_repaired_rotor_clears_its_alert():
    tracker = AlertTracker.from_config(CFG)
    states = []
    for k, lsb in enumerate([-40.0] * 5 + [-60.0] * 6):
        features = {"i1": 8.0, "brb_prominence_db": 20.0, "brb_lsb_db": lsb}
        found = diagnose(features, None, None, CFG, RATED, holding=tracker.active)
        states += [(k, r["state"]) for r in tracker.update(2.0 * k, found, None)]
    assert states == [(2, "raised"), (9, "cleared")]  # the 5th analysis under the deadband


BRB = {"brb_prominence_db": 20.0}
LINE = {"ecc_lsb_db": -60.0, "ecc_lsb_floor_db": -80.0}  # 20 dB prominent


@pytest.mark.parametrize(
    ("fault", "features", "held", "let_go"),
    [
        # 3 dB under the watch level of -48 dB, and of the 10 dB prominence.
        ("broken_rotor_bar", BRB, {"brb_lsb_db": -50.9}, {"brb_lsb_db": -51.1}),
        ("broken_rotor_bar", {"brb_lsb_db": -45.0},
         {"brb_prominence_db": 7.1}, {"brb_prominence_db": 6.9}),
        # 3 dB under the 6 dB rise over the healthy -66 dB, and under the prominence.
        ("eccentricity", LINE, {"ecc_lsb_db": -62.9}, {"ecc_lsb_db": -63.1}),
        ("eccentricity", LINE, {"ecc_lsb_floor_db": -67.1}, {"ecc_lsb_floor_db": -66.9}),
        # 20 % under the 0.08 (stator) and 0.02 (supply) watch levels.
        ("stator_short", {}, currents(10.0, 0.65), currents(10.0, 0.63)),
        ("supply_unbalance", {}, {"v2_v1": 0.0161}, {"v2_v1": 0.0159}),
    ],
)  # fmt: skip
def test_an_open_alert_reads_watch_down_to_the_deadband(fault, features, held, let_go):
    def found(more, holding):
        window = {"i1": RATED, **features, **more}
        return diagnose(window, None, None, CFG, RATED, {"ecc_lsb_db": -66.0},
                        holding=holding).get(fault)  # fmt: skip

    # Under the watch level: nothing while no alert is open; watch while one is.
    assert found(held, ()) is None
    assert found(held, {fault}).severity == "watch"
    assert found(let_go, {fault}) is None
    assert found(held, {"anomaly"}) is None  # another fault's alert holds nothing


def test_an_open_anomaly_alert_reads_watch_down_to_80_percent_of_the_threshold():
    def found(score, holding):
        return diagnose({}, score, 10.0, CFG, RATED, holding=holding).get("anomaly")

    assert found(8.1, ()) is None and found(8.1, {"anomaly"}).severity == "watch"
    assert found(7.9, {"anomaly"}) is None


def test_the_pipeline_holds_an_open_alert_through_a_dip_under_the_watch_level():
    motor = Config().motor
    parts = [(40.0, 20.0), (49.5, 24.0), (56.0, 24.0)]  # dB under the fundamental, seconds
    x = np.concatenate([
        simulate(SimulationSpec(fs=4000.0, duration_s=s, fault="broken-bar", severity=dB,
                                seed=i), motor)[1]
        for i, (dB, s) in enumerate(parts)
    ])  # fmt: skip
    recs = Pipeline(Config(), 4000.0).update(x)
    said = [(r["state"], r["t"]) for r in recs if r["type"] == "alert"]
    # Raised at -40 dB; the 24 s at -49.5 dB (1.5 dB under watch) hold it; -56 clears it.
    assert [s for s, _ in said] == ["raised", "cleared"], said
    assert said[0][1] < 20.0 and said[1][1] > 44.0


def test_the_tracker_carries_on_an_alert_left_open_by_the_last_run():
    tracker = AlertTracker.from_config(CFG)
    tracker.resume([{"alert_id": "left", "fault": "stator_short", "severity": "watch"}])
    assert tracker.active == {"stator_short": "left"}
    short = findings(**currents(10.0, 1.0))  # i2/i1 0.10: watch
    assert tracker.update(0.0, short, None) == []  # still open: nothing raised again
    worse = findings(**currents(10.0, 2.0))  # 0.20: warning, escalates as usual
    said = [tracker.update(t, worse, None) for t in (1.0, 2.0, 3.0)][-1]
    assert [(r["state"], r["evidence"].get("superseded_by") is not None) for r in said] == [
        ("cleared", True), ("raised", False)]  # fmt: skip
    assert said[0]["id"] == "left"
    normal = [tracker.update(4.0 + t, {}, None) for t in range(5)]
    assert normal[-1][0]["state"] == "cleared" and normal[-1][0]["id"] == said[1]["id"]
