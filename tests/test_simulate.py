"""The simulator must put the physics it promises into the samples, at the levels it promises.

Every expected frequency and level here is computed from the nameplate by hand, not by the
module, and measured back with a Hann-windowed DFT at the exact frequency.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.config import BearingConfig, MotorConfig
from edge_agent.simulate import (
    DEFAULT_SEVERITY,
    FAULTS,
    SimulationSpec,
    channel_names,
    iter_blocks,
    simulate,
    validate_spec,
    write_recording,
)

FS = 2000.0
MOTOR = MotorConfig()  # 2 pole pairs, 50 Hz, 1440 rpm, 10 A, 400 V
RATED_SLIP = 1.0 - 1440.0 / 1500.0
A = np.exp(2j * np.pi / 3)


def phasor(x: np.ndarray, fs: float, hz: float) -> complex:
    """Peak-amplitude phasor of the line at ``hz`` (Hann-windowed DFT at that frequency)."""
    n = len(x)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)
    return complex(2 * np.sum(x * w * np.exp(-2j * np.pi * hz * np.arange(n) / fs)) / w.sum())


def level_db(x: np.ndarray, fs: float, hz: float, ref_hz: float) -> float:
    return 20 * math.log10(abs(phasor(x, fs, hz)) / abs(phasor(x, fs, ref_hz)))


def sequences(x: np.ndarray, fs: float, hz: float) -> tuple[float, float]:
    """|positive| and |negative| sequence of the three columns of ``x`` at ``hz``."""
    xa, xb, xc = (phasor(x[:, m], fs, hz) for m in range(3))
    return abs(xa + A * xb + A * A * xc) / 3, abs(xa + A * A * xb + A * xc) / 3


def expected_current_rms(load: float) -> float:
    return math.hypot(0.4 * 10.0, load * math.sqrt(1 - 0.16) * 10.0)


def rotor_hz(load: float, f: float = 50.0) -> float:
    return (1 - RATED_SLIP * load) * f / 2


def run(**kw) -> np.ndarray:
    kw.setdefault("fs", FS)
    kw.setdefault("duration_s", 10.0)
    kw.setdefault("ct_mismatch", 0.0)  # the motor model alone, through ideal sensors
    return simulate(SimulationSpec(**kw), MOTOR)[1]


@pytest.mark.parametrize("load", [0.8, 0.3])
def test_healthy_fundamental_rms_follows_load(load):
    x = run(load=load, duration_s=2.0)
    for m in range(3):
        rms = abs(phasor(x[:, m], FS, 50.0)) / math.sqrt(2)
        assert rms == pytest.approx(expected_current_rms(load), rel=0.01)


def test_healthy_motor_has_no_broken_bar_sidebands():
    x = run()[:, 0]
    s = RATED_SLIP * 0.8
    for centre in ((1 - 2 * s) * 50, (1 + 2 * s) * 50):
        worst = max(level_db(x, FS, centre + d, 50.0) for d in np.linspace(-0.3, 0.3, 31))
        assert worst < -70


def test_broken_bar_sidebands_at_the_requested_level():
    x = run(fault="broken-bar", severity=40.0)
    s = RATED_SLIP * 0.8
    for m in range(3):
        assert level_db(x[:, m], FS, (1 - 2 * s) * 50, 50) == pytest.approx(-40, abs=0.5)
        assert level_db(x[:, m], FS, (1 + 2 * s) * 50, 50) == pytest.approx(-40, abs=0.5)
        assert level_db(x[:, m], FS, (1 - 4 * s) * 50, 50) == pytest.approx(-52, abs=0.5)
        assert level_db(x[:, m], FS, (1 + 4 * s) * 50, 50) == pytest.approx(-52, abs=0.5)


def test_eccentricity_lines_at_rotor_frequency_offsets():
    x = run(fault="eccentricity", severity=35.0, load=0.5)[:, 1]
    fr = rotor_hz(0.5)
    for hz, db in ((50 - fr, -35), (50 + fr, -35), (abs(50 - 2 * fr), -41), (50 + 2 * fr, -41)):
        assert level_db(x, FS, hz, 50) == pytest.approx(db, abs=0.5), hz


def test_bearing_outer_race_lines_default_6205():
    x = run(fault="bearing-outer")[:, 2]  # default severity 50 dB
    f_o = 9 / 2 * rotor_hz(0.8) * (1 - 7.94 / 39.04)
    assert f_o == pytest.approx(86.75, abs=0.05)
    for hz, db in ((f_o - 50, -50), (f_o + 50, -50), (2 * f_o - 50, -56), (2 * f_o + 50, -56)):
        assert level_db(x, FS, hz, 50) == pytest.approx(db, abs=0.5), hz


def test_bearing_outer_uses_the_motors_bearing_geometry():
    bearing = BearingConfig(
        n_balls=8, ball_diameter_mm=10.0, pitch_diameter_mm=50.0, contact_angle_deg=15.0
    )
    motor = MOTOR.model_copy(update={"bearing": bearing})
    spec = SimulationSpec(fs=FS, duration_s=10.0, fault="bearing-outer", severity=30.0)
    x = simulate(spec, motor)[1][:, 0]
    f_o = 4 * rotor_hz(0.8) * (1 - 0.2 * math.cos(math.radians(15)))
    assert level_db(x, FS, f_o + 50, 50) == pytest.approx(-30, abs=0.5)


def test_lines_above_nyquist_are_left_out_not_aliased():
    fs = 400.0  # Nyquist 200 Hz: the 5th, 7th and |f + 2 f_o| = 223.5 Hz are dropped
    x = run(fs=fs, fault="bearing-outer", severity=20.0)[:, 0]
    f_o = 9 / 2 * rotor_hz(0.8) * (1 - 7.94 / 39.04)
    assert level_db(x, fs, f_o + 50, 50) == pytest.approx(-20, abs=0.5)
    for alias in (fs - (2 * f_o + 50), fs - 250):  # the 7th would alias onto 50 Hz itself
        assert level_db(x, fs, alias, 50) < -80, alias


def test_supply_harmonics_have_the_sequence_of_a_three_wire_machine():
    x = run(duration_s=2.0)
    i1 = sequences(x, FS, 50)[0]
    pos5, neg5 = sequences(x, FS, 250)
    pos7, neg7 = sequences(x, FS, 350)
    assert 20 * math.log10(neg5 / i1) == pytest.approx(-30, abs=0.3)
    assert 20 * math.log10(pos7 / i1) == pytest.approx(-36, abs=0.3)
    assert pos5 < 1e-3 * neg5 and neg7 < 1e-3 * pos7


def test_voltages_and_power_factor():
    x = run(duration_s=2.0, voltages=True, load=0.8)
    v = phasor(x[:, 3], FS, 50)
    i = phasor(x[:, 0], FS, 50)
    assert abs(v) / math.sqrt(2) == pytest.approx(400 / math.sqrt(3), rel=0.005)
    lag = np.angle(v / i)
    assert lag == pytest.approx(math.atan2(4.0, 0.8 * math.sqrt(0.84) * 10.0), abs=0.01)


def test_stator_short_gives_negative_sequence_and_third_harmonic():
    x = run(fault="stator-short", severity=30.0, duration_s=2.0)
    i1, i2 = sequences(x, FS, 50)
    assert i2 / i1 == pytest.approx(0.18, abs=0.01)
    h3_pos, h3_neg = sequences(x, FS, 150)
    assert h3_pos / i1 == pytest.approx(0.03, rel=0.02)
    assert h3_neg < 0.01 * h3_pos  # only noise


@pytest.mark.parametrize("load", [0.8, 0.3])
def test_supply_unbalance_in_voltages_and_currents(load):
    x = run(fault="supply-unbalance", severity=2.0, voltages=True, duration_s=2.0, load=load)
    i1, i2 = sequences(x[:, :3], FS, 50)
    v1, v2 = sequences(x[:, 3:], FS, 50)
    assert v2 / v1 == pytest.approx(0.02, abs=0.002)
    # 6 x 2 % of the rated 10 A, at any load: more of i1 at light load.
    assert i2 / math.sqrt(2) == pytest.approx(1.2, rel=0.02)
    assert i2 / i1 == pytest.approx(1.2 / expected_current_rms(load), rel=0.02)
    assert v1 / math.sqrt(2) == pytest.approx(400 / math.sqrt(3), rel=0.005)


def test_fault_is_absent_before_onset_and_present_after():
    healthy = run(seed=3)
    x = run(fault="broken-bar", severity=40.0, onset_s=5.0, seed=3)
    n = int(5.0 * FS)
    # Before the onset the samples are the healthy recording's, bit for bit.
    assert np.array_equal(x[:n], healthy[:n])
    s = RATED_SLIP * 0.8
    before, after = x[: n - 500, 0], x[n + 500 :, 0]
    assert level_db(before, FS, (1 - 2 * s) * 50, 50) < -70
    assert level_db(after, FS, (1 - 2 * s) * 50, 50) == pytest.approx(-40, abs=0.5)


def test_noise_level():
    clean = run(noise=0.0, duration_s=2.0)
    noisy = run(noise=0.01, duration_s=2.0)
    sigma = (noisy - clean).std(axis=0)
    np.testing.assert_allclose(sigma, 0.01 * expected_current_rms(0.8), rtol=0.03)


def test_same_seed_same_bytes_other_seed_differs():
    spec = SimulationSpec(fs=FS, duration_s=1.0, fault="eccentricity", voltages=True)
    a = simulate(spec, MOTOR)[1]
    b = simulate(spec, MOTOR)[1]
    c = simulate(SimulationSpec(fs=FS, duration_s=1.0, fault="eccentricity", seed=1), MOTOR)[1]
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a[:, :3], c)


@pytest.mark.parametrize("block_s", [0.0005, 0.37, 1.0, 3.0, 100.0])
def test_output_does_not_depend_on_block_length(block_s):
    spec = SimulationSpec(
        fs=FS,
        duration_s=2.5,
        fault="supply-unbalance",
        onset_s=1.2345,
        voltages=True,
        ct_mismatch=0.02,
        adc_bits=14,
        seed=11,
    )
    t_ref, x_ref = simulate(spec, MOTOR)
    blocks = list(iter_blocks(spec, MOTOR, block_s=block_s))
    t = np.concatenate([b[0] for b in blocks])
    x = np.concatenate([b[1] for b in blocks])
    assert t.tobytes() == t_ref.tobytes()
    assert x.tobytes() == x_ref.tobytes()
    # Recording the voltages as well leaves the currents as they were.
    currents_only = simulate(dataclasses.replace(spec, voltages=False), MOTOR)[1]
    assert currents_only.tobytes() == np.ascontiguousarray(x[:, :3]).tobytes()
    assert x.dtype == np.float64 and x.shape == (5000, 6)


def test_ct_mismatch_changes_phase_gains_within_bounds():
    ref = run(duration_s=1.0, seed=5)
    x = run(duration_s=1.0, seed=5, ct_mismatch=0.05)
    gains = np.array([abs(phasor(x[:, m], FS, 50) / phasor(ref[:, m], FS, 50)) for m in range(3)])
    assert np.all(np.abs(gains - 1) <= 0.05 + 1e-9)
    assert np.ptp(gains) > 1e-4


def test_adc_quantisation_on_a_grid_within_the_rails():
    bits = 10
    x = run(duration_s=0.5, voltages=True, adc_bits=bits)
    lsb_i = 2 * 2.5 * math.sqrt(2) * 10.0 / 2**bits
    lsb_v = 2 * 1.5 * math.sqrt(2) * 400 / math.sqrt(3) / 2**bits
    for cols, lsb in ((x[:, :3], lsb_i), (x[:, 3:], lsb_v)):
        codes = cols / lsb
        np.testing.assert_allclose(codes, np.rint(codes), atol=1e-6)
        assert codes.min() >= -(2 ** (bits - 1)) and codes.max() <= 2 ** (bits - 1) - 1


@pytest.mark.parametrize("voltages", [False, True])
def test_write_csv(tmp_path, voltages):
    spec = SimulationSpec(fs=1000.0, duration_s=0.5, voltages=voltages, fault="broken-bar")
    path = tmp_path / "rec.csv"
    assert write_recording(path, spec, MOTOR) == 500
    lines = path.read_text().splitlines()
    assert lines[0] == ("t_s,ia,ib,ic,va,vb,vc" if voltages else "t_s,ia,ib,ic")
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    assert data.shape == (500, 7 if voltages else 4)
    np.testing.assert_allclose(np.diff(data[:, 0]), 1e-3, atol=1e-8)
    np.testing.assert_allclose(data[:, 1:], simulate(spec, MOTOR)[1], atol=1e-4)
    assert list(tmp_path.iterdir()) == [path]


def test_write_npy(tmp_path):
    spec = SimulationSpec(fs=3000.0, duration_s=2.2, voltages=True, seed=4)
    path = tmp_path / "rec.npy"
    assert write_recording(str(path), spec, MOTOR) == 6600
    arr = np.load(path)
    assert arr.shape == (6600, 6) and arr.dtype == np.float64
    assert np.array_equal(arr, simulate(spec, MOTOR)[1])


def test_write_rejects_unknown_suffix(tmp_path):
    path = tmp_path / "rec.parquet"
    with pytest.raises(ValueError, match=r"rec\.parquet.*\.csv or \.npy"):
        write_recording(path, SimulationSpec(duration_s=0.1), MOTOR)
    assert not path.exists()


def test_channel_names():
    assert channel_names(SimulationSpec()) == ["ia", "ib", "ic"]
    assert channel_names(SimulationSpec(voltages=True)) == ["ia", "ib", "ic", "va", "vb", "vc"]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"fault": "rotor-crack"}, "broken-bar, eccentricity, bearing-outer"),
        ({"fault": "broken-bar", "severity": 5.0}, r"severity=5 .* 10\.\.90 dB"),
        ({"fault": "stator-short", "severity": 120.0}, r"0\.\.100"),
        ({"fault": "supply-unbalance", "severity": -1.0}, r"0\.\.10 %"),
        ({"severity": 40.0}, "without a fault"),
        ({"onset_s": 10.0}, r"onset_s=10 must be within \[0, 10\)"),
        ({"load": 1.5}, "load=1.5"),
        ({"fs": 100.0}, "fs=100 must exceed"),
        ({"duration_s": 0.0}, "duration_s=0"),
        ({"fault": "broken-bar", "load": 0.0}, "load > 0"),
    ],
)
def test_validate_spec_rejects(kw, message):
    spec = SimulationSpec(**kw)
    with pytest.raises(ValueError, match=message):
        validate_spec(spec, MOTOR)
    with pytest.raises(ValueError, match=message):
        next(iter_blocks(spec, MOTOR))


def test_every_fault_validates_with_its_default_severity_without_bearing_geometry():
    assert MOTOR.bearing is None
    assert set(DEFAULT_SEVERITY) == set(FAULTS)
    for fault in FAULTS:
        validate_spec(SimulationSpec(fault=fault), MOTOR)


@settings(max_examples=30, deadline=None)
@given(
    fs=st.floats(200.0, 5000.0),
    duration=st.floats(0.01, 0.5),
    seed=st.integers(0, 2**32),
    voltages=st.booleans(),
    fault=st.sampled_from([None, *FAULTS]),
    block_s=st.floats(0.001, 1.0),
)
def test_shape_and_finiteness(fs, duration, seed, voltages, fault, block_s):
    spec = SimulationSpec(fs=fs, duration_s=duration, seed=seed, voltages=voltages, fault=fault)
    t, x = simulate(spec, MOTOR)
    n = round(fs * duration)
    assert t.shape == (n,) and x.shape == (n, 6 if voltages else 3)
    assert np.all(np.isfinite(x))
    xb = np.concatenate([b[1] for b in iter_blocks(spec, MOTOR, block_s=block_s)])
    assert xb.tobytes() == x.tobytes()
