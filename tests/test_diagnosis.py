"""The diagnosis rules: which fault an alert names, and how severe.

The rules on window features directly, then through the pipeline on simulated motors
whose negative-sequence current comes from the winding or from the supply. The real
ITSC shorts are in test_evaluate.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import AlertConfig, Config
from edge_agent.diagnosis import diagnose
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import SimulationSpec, simulate
from tests.test_cli import run

CFG = AlertConfig()
RATED = 10.0


def findings(**features):
    return diagnose({"i1": 8.0, **features}, None, None, CFG, RATED)


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
    # The documented limit: with currents alone, the supply's share cannot be told apart.
    alerts = named_alerts("supply-unbalance", 2.0, voltages=False)
    assert set(alerts) == {"stator_short"}
    assert alerts["stator_short"]["evidence"]["v2_v1"] is None


def test_a_healthy_motor_with_voltages_raises_nothing():
    assert named_alerts(None) == {}
