"""Kernels that need the voltages: fundamental power and V-I trajectory features.

Each against its slow reference in naive.py and against analytic truths.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
from edge_agent.kernels.power import PowerResult, power_quantities, true_power
from edge_agent.kernels.vi import VI_FEATURE_NAMES, vi_features
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import naive

RNG = np.random.default_rng(2024)
A = cmath.exp(2j * math.pi / 3)
FEATURE = {name: k for k, name in enumerate(VI_FEATURE_NAMES)}


def from_sequences(fs, n, f, p1, p2=0j, t0=0.0):
    """Phases a, b, c with positive-sequence peak phasor p1 and negative-sequence p2."""
    t = np.arange(n) / fs + t0
    phasors = [p1 + p2, A * A * p1 + A * p2, A * p1 + A * A * p2]
    return np.stack([abs(p) * np.cos(2 * np.pi * f * t + cmath.phase(p)) for p in phasors])


def load(fs, n, f, phi_deg, *, h2=0.0, h3=0.0, h3_deg=0.0, t0=0.0, v_peak=325.0, i_peak=10.0):
    """Balanced voltages and currents lagging by phi, plus 2nd and 3rd current harmonics."""
    t = np.arange(n) / fs + t0
    v, i = [], []
    for k in range(3):
        th = 2 * np.pi * f * t - 2 * np.pi * k / 3
        v.append(v_peak * np.cos(th))
        i.append(
            i_peak
            * (
                np.cos(th - math.radians(phi_deg))
                + h2 * np.cos(2 * th)
                + h3 * np.cos(3 * th + math.radians(h3_deg))
            )
        )
    return np.stack(v), np.stack(i)


def feature(x, name):
    return x[:, FEATURE[name]]


# --- power: analytic truths -----------------------------------------------------------


@pytest.mark.parametrize("phi_deg", [0.0, 30.0, -45.0, 90.0, 150.0])
@pytest.mark.parametrize("f", [50.0, 49.7])
def test_balanced_power_is_3_v_i_cos_phi(phi_deg, f):
    fs, n = 15000.0, 15000
    v_rms, i_rms, phi = 230.0, 10.0, math.radians(phi_deg)
    v = from_sequences(fs, n, f, v_rms * math.sqrt(2))
    i = from_sequences(fs, n, f, i_rms * math.sqrt(2) * cmath.exp(-1j * phi))  # lags by φ
    res = power_quantities(v, i, fs, f)
    assert isinstance(res, PowerResult)
    s = 3 * v_rms * i_rms
    assert res.p == pytest.approx(s * math.cos(phi), abs=1e-6 * s)
    assert res.q == pytest.approx(s * math.sin(phi), abs=1e-6 * s)  # lagging: q > 0
    assert res.pf == pytest.approx(math.cos(phi), abs=1e-6)
    assert res.v1 == pytest.approx(v_rms, rel=1e-6)
    # Between bins the Hann window's leakage from -f reads as a negative sequence of about
    # 3e-7; on whole cycles there is none and Z2 is undefined.
    assert res.v2 < 1e-6 * v_rms and res.v2_v1 < 1e-6
    if f == 50.0:
        assert math.isnan(res.z2)


def test_negative_sequence_injection_gives_unbalance_and_z2():
    fs, n, f = 15000.0, 15000, 50.0
    v1 = 230.0 * math.sqrt(2)
    v2 = 0.02 * v1 * cmath.exp(1j * math.radians(40))
    z1 = 23.0 * cmath.exp(1j * math.radians(32))  # running motor: I1 lags V1 by 32°
    z2 = 2.5 * cmath.exp(1j * math.radians(70))  # locked-rotor-like: mostly reactive
    i1, i2 = v1 / z1, v2 / z2
    res = power_quantities(
        from_sequences(fs, n, f, v1, v2), from_sequences(fs, n, f, i1, i2), fs, f
    )
    assert res.v2_v1 == pytest.approx(0.02, rel=1e-6)
    assert res.v2 == pytest.approx(abs(v2) / math.sqrt(2), rel=1e-6)
    assert res.z2 == pytest.approx(2.5, rel=1e-6)
    # S = 3·(V1·conj(I1) + V2·conj(I2)) with rms phasors = 1.5·(...) with peak ones.
    s = 1.5 * (v1 * i1.conjugate() + v2 * i2.conjugate())
    assert res.p == pytest.approx(s.real, rel=1e-6)
    assert res.q == pytest.approx(s.imag, rel=1e-6)
    assert res.pf == pytest.approx(s.real / abs(s), rel=1e-6)


def test_true_power_equals_fundamental_power_plus_harmonic_power():
    fs, n, f = 15000.0, 15000, 50.0
    v, i = load(fs, n, f, 30.0)
    res = power_quantities(v, i, fs, f)
    assert true_power(v, i) == pytest.approx(res.p, rel=1e-9)
    # In-phase 5th harmonics of 3 % and 20 % peak add 3 · (0.03·325)(0.2·10)/2 W that the
    # fundamental power leaves out.
    t = np.arange(n) / fs
    h = np.stack([np.cos(5 * (2 * np.pi * f * t - 2 * np.pi * k / 3)) for k in range(3)])
    v5, i5 = v + 0.03 * 325.0 * h, i + 0.2 * 10.0 * h
    assert power_quantities(v5, i5, fs, f).p == pytest.approx(res.p, rel=1e-9)
    assert true_power(v5, i5) - res.p == pytest.approx(3 * 9.75 * 2.0 / 2, rel=1e-6)


# --- power: references, dtypes, bad input ----------------------------------------------


def test_power_matches_reference_on_noisy_unbalanced_input():
    fs, n, f = 4000.0, 1500, 50.3
    v = from_sequences(fs, n, f, 325.0, 9.0 * cmath.exp(0.4j)) + RNG.normal(scale=3.0, size=(3, n))
    i = from_sequences(fs, n, f, 12.0 * cmath.exp(-0.6j), 1.1 * cmath.exp(2.0j))
    i += RNG.normal(scale=0.2, size=(3, n))
    got = power_quantities(v, i, fs, f)
    np.testing.assert_allclose(got, naive.power_quantities(v, i, fs, f), rtol=1e-9)
    assert true_power(v, i) == pytest.approx(naive.true_power(v, i), rel=1e-12)


def test_power_accepts_float32_and_propagates_nan():
    fs, n, f = 15000.0, 3000, 50.0
    v, i = load(fs, n, f, 25.0)
    want = power_quantities(v, i, fs, f)
    got = power_quantities(v.astype(np.float32), i.astype(np.float32), fs, f)
    np.testing.assert_allclose(got[:6], want[:6], rtol=1e-5, atol=1e-4)
    assert true_power(v.astype(np.float32), i.astype(np.float32)) == pytest.approx(
        true_power(v, i), rel=1e-5
    )
    v[1, 17] = np.nan
    assert all(math.isnan(x) for x in power_quantities(v, i, fs, f))
    assert math.isnan(true_power(v, i))


def test_power_validates_arguments():
    v, i = load(1000.0, 1000, 50.0, 10.0)
    with pytest.raises(ValueError, match="v must have shape"):
        power_quantities(v[:2], i[:2], 1000.0, 50.0)
    with pytest.raises(ValueError, match="i must have the shape"):
        power_quantities(v, i[:, :-1], 1000.0, 50.0)
    with pytest.raises(ValueError, match="fs"):
        power_quantities(v, i, 0.0, 50.0)
    with pytest.raises(ValueError, match="between 0 and fs/2"):
        power_quantities(v, i, 1000.0, 600.0)
    with pytest.raises(ValueError, match="i must have the shape"):
        true_power(v, i[:2])


# --- V-I trajectory: analytic truths ---------------------------------------------------


def test_resistive_load_is_a_straight_line():
    fs, n, f = 15000.0, 3000, 50.0
    x = vi_features(*load(fs, n, f, 0.0), fs, f)
    for name in ("area", "asymmetry", "looping", "curvature", "area_left", "area_right"):
        np.testing.assert_allclose(feature(x, name), 0.0, atol=1e-6, err_msg=name)
    np.testing.assert_array_equal(feature(x, "intersections"), 0.0)
    np.testing.assert_allclose(feature(x, "slope_mid"), 1.0, atol=1e-6)
    assert np.all(feature(x, "peak_mid") < 0.1)  # |i| = |v| < 0.1 in the middle band


@pytest.mark.parametrize(("phi_deg", "sense"), [(90.0, 1.0), (-90.0, -1.0)])
def test_reactive_load_is_the_unit_circle(phi_deg, sense):
    # Inductive (current lagging) loops counter-clockwise in the (v, i) plane, capacitive
    # clockwise. The 64-gon inscribed in the circle has area 32·sin(2π/64), 0.16 % below π.
    fs, n, f = 15000.0, 3000, 50.0
    x = vi_features(*load(fs, n, f, phi_deg), fs, f)
    np.testing.assert_allclose(feature(x, "area"), math.pi, rtol=2e-3)
    np.testing.assert_allclose(feature(x, "area"), 32 * math.sin(2 * math.pi / 64), rtol=1e-4)
    np.testing.assert_array_equal(feature(x, "looping"), sense)
    np.testing.assert_allclose(feature(x, "area_left"), feature(x, "area") / 2, rtol=1e-6)
    np.testing.assert_allclose(feature(x, "area_right"), feature(x, "area") / 2, rtol=1e-6)
    np.testing.assert_allclose(feature(x, "asymmetry"), 0.0, atol=1e-9)
    np.testing.assert_allclose(feature(x, "curvature"), 0.0, atol=1e-6)
    np.testing.assert_allclose(feature(x, "slope_mid"), 0.0, atol=1e-6)
    np.testing.assert_allclose(feature(x, "peak_mid"), 1.0, atol=1e-3)
    np.testing.assert_array_equal(feature(x, "intersections"), 0.0)


def test_motor_at_power_factor_0_8_is_an_ellipse():
    fs, n, f = 15000.0, 3000, 50.0
    phi = math.acos(0.8)
    x = vi_features(*load(fs, n, f, math.degrees(phi)), fs, f)
    # x = cos θ, y ∝ cos(θ - φ): area π·sin φ, mean line y = x·cos φ, i at v = 0 is sin φ.
    np.testing.assert_allclose(feature(x, "area"), math.pi * 0.6, rtol=3e-3)
    np.testing.assert_allclose(feature(x, "slope_mid"), 0.8, rtol=3e-3)
    assert np.all((feature(x, "peak_mid") > 0.6) & (feature(x, "peak_mid") < 0.6 + 0.1 * 0.8))
    np.testing.assert_array_equal(feature(x, "looping"), 1.0)
    np.testing.assert_allclose(feature(x, "curvature"), 0.0, atol=1e-6)


def test_third_harmonic_bends_and_crosses_the_trajectory():
    fs, n, f = 15000.0, 3000, 50.0
    x = vi_features(*load(fs, n, f, 30.0, h3=0.4, h3_deg=60.0), fs, f)
    # Two small loops where the 3rd harmonic turns the current back: two crossings.
    np.testing.assert_array_equal(feature(x, "intersections"), 2.0)
    assert np.all(feature(x, "curvature") > 0.05)
    # Odd harmonics keep half-wave symmetry.
    np.testing.assert_allclose(feature(x, "asymmetry"), 0.0, atol=1e-9)
    # Mean line bent by a 3rd harmonic in phase with the voltage (a saturating core).
    bent = vi_features(*load(fs, n, f, 0.0, h3=0.3), fs, f)
    assert np.all(feature(bent, "curvature") > 0.1)
    np.testing.assert_array_equal(feature(bent, "intersections"), 0.0)


def test_even_harmonic_breaks_half_wave_symmetry():
    fs, n, f = 15000.0, 3000, 50.0
    sym = vi_features(*load(fs, n, f, 20.0), fs, f)
    asym = vi_features(*load(fs, n, f, 20.0, h2=0.3), fs, f)
    np.testing.assert_allclose(feature(sym, "asymmetry"), 0.0, atol=1e-9)
    assert np.all(feature(asym, "asymmetry") > 0.05)


@pytest.mark.parametrize("f", [50.0, 49.7])
def test_features_do_not_depend_on_where_the_window_starts(f):
    # fs / f = 301.8 samples at 49.7 Hz: cycles are cut between samples.
    fs, n = 15000.0, 3000
    kw = dict(h2=0.1, h3=0.3, h3_deg=60.0)
    x0 = vi_features(*load(fs, n, f, 35.0, **kw), fs, f)
    for shift in (0.25, 0.6):
        x1 = vi_features(*load(fs, n, f, 35.0, t0=shift / f, **kw), fs, f)
        np.testing.assert_allclose(x1, x0, rtol=2e-3, atol=2e-3)
    # The three phases of a balanced set trace the same trajectory.
    np.testing.assert_allclose(x0[1:], x0[[0, 0]], rtol=2e-3, atol=2e-3)


def test_vi_non_integer_samples_per_cycle_whole_second():
    fs, n, f = 15000.0, 15000, 49.7  # 49 whole cycles of 301.8 samples
    x = vi_features(*load(fs, n, f, 40.0), fs, f)
    np.testing.assert_allclose(feature(x, "area"), math.pi * math.sin(math.radians(40)), rtol=3e-3)
    np.testing.assert_allclose(feature(x, "slope_mid"), math.cos(math.radians(40)), rtol=3e-3)


@pytest.mark.parametrize("phi_deg", [math.degrees(math.acos(0.8)), 10.0])
def test_noise_averages_out_of_the_trajectory(phi_deg):
    # White noise of 2 % of the current's peak. Features taken cycle by cycle and averaged
    # counted 0.15 crossings a cycle for the 10° load and put the 0.8 power-factor motor's
    # area 2 % low; the mean trajectory over 50 cycles keeps a seventh of the noise.
    fs, n, f = 15000.0, 15000, 50.0
    v, i = load(fs, n, f, phi_deg)
    clean = vi_features(v, i, fs, f)
    rng = np.random.default_rng(5)
    noisy = vi_features(v, i + rng.normal(scale=0.02 * 10.0, size=i.shape), fs, f)
    np.testing.assert_array_equal(feature(noisy, "intersections"), 0.0)
    np.testing.assert_allclose(feature(noisy, "area"), feature(clean, "area"), rtol=0.02)


# --- V-I trajectory: references, dtypes, bad input -------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("fs", "n", "f"),
    [
        (4000.0, 330, 50.3),  # 4 whole cycles of 79.5 samples
        (4000.0, 1000, 50.3),  # 12 cycles: the kernel's blocks of four and the rest
        (4000.0, 800, 50.0),  # exactly 10 cycles: the last may reach past the end
    ],
)
def test_vi_matches_reference_on_noisy_distorted_input(seed, fs, n, f):
    rng = np.random.default_rng(seed)
    v, i = load(
        fs, n, f, rng.uniform(-80, 80), h2=rng.uniform(0, 0.3), h3=rng.uniform(0, 0.5),
        h3_deg=rng.uniform(-180, 180), t0=rng.uniform(0, 0.02),
    )  # fmt: skip
    v += rng.normal(scale=5.0, size=v.shape)
    i += rng.normal(scale=rng.uniform(0.01, 1.0), size=i.shape)
    for points in (64, 16):
        x = vi_features(v, i, fs, f, points)
        np.testing.assert_allclose(x, naive.vi_features(v, i, fs, f, points), rtol=1e-9, atol=1e-12)
        # Not checking finite samples changes nothing for finite ones, bit for bit.
        np.testing.assert_array_equal(vi_features(v, i, fs, f, points, check_finite=False), x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_vi_non_finite_samples_spoil_their_phase_only(bad):
    fs, n, f = 4000.0, 330, 50.3
    v, i = load(fs, n, f, 30.0)
    v[1, 100] = bad
    i[2, 5] = bad
    x = vi_features(v, i, fs, f)
    assert np.all(np.isfinite(x[0]))
    assert np.all(np.isnan(x[1:]))
    np.testing.assert_array_equal(np.isnan(naive.vi_features(v, i, fs, f)), np.isnan(x))


# Without the JIT (NUMBA_DISABLE_JIT=1) numpy warns as it computes with inf, as it should.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_vi_unchecked_non_finite_voltage_gives_nan_and_leaves_the_other_phases(bad):
    """check_finite=False is for samples known to be finite. Given others anyway, the
    features of their phase are undefined; a voltage whose reference phase cannot be found
    gives NaN before any sample position is formed from it, and the other phases are right."""
    fs, n, f = 4000.0, 330, 50.3
    v, i = load(fs, n, f, 30.0)
    checked = vi_features(v, i, fs, f)
    v[1, :] = bad  # the reference phase of phase b cannot be found
    i[2, 5] = bad
    x = vi_features(v, i, fs, f, check_finite=False)
    assert np.all(np.isnan(x[1]))
    np.testing.assert_array_equal(x[0], checked[0])


def test_vi_zero_current_gives_nan_and_float32_is_accepted():
    fs, n, f = 15000.0, 3000, 50.0
    v, i = load(fs, n, f, 30.0, h3=0.2)
    i[2] = 0.0
    x = vi_features(v, i, fs, f)
    assert np.all(np.isnan(x[2])) and np.all(np.isfinite(x[:2]))
    x32 = vi_features(v.astype(np.float32), i.astype(np.float32), fs, f)
    np.testing.assert_allclose(x32[:2], x[:2], rtol=1e-5, atol=1e-5)


def test_vi_validates_arguments():
    v, i = load(1000.0, 100, 50.0, 10.0)
    assert vi_features(v, i, 1000.0, 50.0).shape == (3, len(VI_FEATURE_NAMES))
    with pytest.raises(ValueError, match="need at least 2"):
        vi_features(v[:, :39], i[:, :39], 1000.0, 50.0)
    with pytest.raises(ValueError, match="points"):
        vi_features(v, i, 1000.0, 50.0, points=63)
    with pytest.raises(ValueError, match="points"):
        vi_features(v, i, 1000.0, 50.0, points=6)
    with pytest.raises(ValueError, match="v must have shape"):
        vi_features(v[0], i[0], 1000.0, 50.0)
    with pytest.raises(ValueError, match="i must have the shape"):
        vi_features(v, i[:, 1:], 1000.0, 50.0)
    with pytest.raises(ValueError, match="between 0 and fs/2"):
        vi_features(v, i, 1000.0, 500.0)
    with pytest.raises(ValueError, match="fs"):
        vi_features(v, i, -1.0, 50.0)


# --- V-I trajectory: properties --------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    st.floats(5.0, 175.0),
    st.sampled_from([-1.0, 1.0]),
    st.floats(0.0, 0.3),
    st.floats(0.0, 0.5),
    st.floats(-180.0, 180.0),
    st.floats(0.0, 1.0),
    st.floats(1e-3, 1e3),
    st.floats(1e-3, 1e3),
)
def test_vi_property_ranges_and_scale_invariance(phi, sign, h2, h3, h3_deg, start, sv, si):
    fs, f = 3000.0, 50.0
    n = 190  # 3 whole cycles of 60 samples, resampled to 64 points
    v, i = load(fs, n, f, sign * phi, h2=h2, h3=h3, h3_deg=h3_deg, t0=start / f)
    x = vi_features(v, i, fs, f)
    assert np.all(np.isfinite(x))
    area, asym, loop, curv, cross, _slope, peak, left, right = x.T
    assert np.all((area >= 0) & (area <= 4))
    assert np.all((asym >= 0) & (asym <= 1))
    assert np.all(np.isin(loop, (-1.0, 0.0, 1.0)))
    assert np.all((curv >= 0) & (curv <= math.sqrt(2)))
    assert np.all(cross >= 0)
    np.testing.assert_array_equal(cross, np.round(cross))  # a count, of the mean trajectory
    assert np.all((peak >= 0) & (peak <= 1))
    assert np.all(left + right >= area - 1e-12)
    # Away from φ = 0 the loop's sense is that of the fundamental's displacement.
    np.testing.assert_array_equal(loop, sign)
    # atol: a straight mean line's curvature is √(rounding), about 1e-8.
    np.testing.assert_allclose(vi_features(v * sv, i, fs, f), x, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(vi_features(v, i * si, fs, f), x, rtol=1e-9, atol=1e-7)


def test_power_from_shared_phasors_equals_power_quantities():
    from edge_agent.kernels.engine import phasors
    from edge_agent.kernels.power import power_from_phasors

    fs, n = 5000.0, 5000
    t = np.arange(n) / fs
    rng = np.random.default_rng(7)
    v = np.stack(
        [325 * np.cos(2 * np.pi * 49.7 * t - 2 * np.pi * m / 3 + 0.1 * m) for m in range(3)]
    )
    i = np.stack([14 * np.cos(2 * np.pi * 49.7 * t - 2 * np.pi * m / 3 - 0.6) for m in range(3)])
    i += rng.normal(scale=0.1, size=i.shape)
    ph = phasors(np.concatenate([i, v]), fs, 49.7)
    got = power_from_phasors(ph[3:], ph[:3])
    want = power_quantities(v, i, fs, 49.7)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-9)
