"""Waveform statistics and data-quality kernels against naive.py and analytic truths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from edge_agent.kernels.quality import DEFAULT_MIN_RUN, detect_clipping, fill_gaps, remove_dc
from edge_agent.kernels.waveform import WAVEFORM_STAT_NAMES, waveform_stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests import naive

RNG = np.random.default_rng(20240611)
FS = 15000.0
RMS, PEAK, CREST, SKEW, KURT, DC = range(6)


def sine(amp, n, f=50.0, phase=0.0, fs=FS):
    return amp * np.sin(2 * np.pi * f * np.arange(n) / fs + phase)


def adc_codes(amp_fraction, n, f=50.0, phase=0.0, bits=12):
    """A sine of amp_fraction × full scale through an ideal ADC: rounded, held at the rails."""
    fs_code = 2 ** (bits - 1)
    codes = np.round(sine(amp_fraction * fs_code, n, f, phase))
    return np.clip(codes, -fs_code, fs_code - 1)


def assert_stats_close(got, want, rtol=1e-9):
    """Compare stat columns; skew (near 0 for most data) absolutely, the rest relatively."""
    for col in (RMS, PEAK, CREST, KURT):
        np.testing.assert_allclose(got[:, col], want[:, col], rtol=rtol, err_msg=str(col))
    np.testing.assert_allclose(got[:, DC], want[:, DC], rtol=rtol, atol=1e-12 * want[:, PEAK].max())
    np.testing.assert_allclose(got[:, SKEW], want[:, SKEW], rtol=rtol, atol=1e-9)


# --- waveform_stats ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 7, 255, 256, 257, 2000])
def test_waveform_stats_match_reference(dtype, n):
    x = RNG.normal(size=(4, n)) * [[1.0], [5.0], [0.1], [300.0]] + [[0.0], [3.0], [-100.0], [1.0]]
    x[3] = RNG.exponential(size=n) * 300.0  # skewed, heavy-tailed
    x = x.astype(dtype)
    got = waveform_stats(x)
    assert got.shape == (4, 6) and got.dtype == np.float64
    want = naive.waveform_stats(x.astype(np.float64))
    if n == 1:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        got, want = np.nan_to_num(got), np.nan_to_num(want)
    assert_stats_close(got, want)


def test_waveform_stats_match_scipy_definitions():
    x = RNG.gamma(2.0, size=(3, 5000)) - 1.0
    got = waveform_stats(x)
    np.testing.assert_allclose(got[:, SKEW], scipy.stats.skew(x, axis=1, bias=True), rtol=1e-10)
    np.testing.assert_allclose(
        got[:, KURT], scipy.stats.kurtosis(x, axis=1, fisher=False, bias=True), rtol=1e-10
    )
    np.testing.assert_allclose(got[:, DC], x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got[:, RMS], np.sqrt(np.mean(x * x, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(got[:, PEAK], np.abs(x).max(axis=1), rtol=0)
    assert WAVEFORM_STAT_NAMES == ("rms", "peak", "crest", "skew", "kurtosis", "dc")


@pytest.mark.parametrize("phase", [0.0, 0.7, math.pi / 2])
def test_sine_of_amplitude_a(phase):
    a = 3.0
    s = waveform_stats(sine(a, 3000, phase=phase))[0]  # 10 whole cycles
    assert s[RMS] == pytest.approx(a / math.sqrt(2), rel=1e-12)
    # The highest sample lies within half a sample (π/300 rad) of the crest: 1 - cos < 6e-5.
    assert s[PEAK] == pytest.approx(a, rel=6e-5) and s[PEAK] <= a
    assert s[CREST] == pytest.approx(math.sqrt(2), rel=6e-5)
    assert s[SKEW] == pytest.approx(0.0, abs=1e-12)
    assert s[KURT] == pytest.approx(1.5, rel=1e-12)
    assert s[DC] == pytest.approx(0.0, abs=1e-14)


def test_gaussian_noise_has_kurtosis_three():
    s = waveform_stats(RNG.normal(loc=0.5, scale=2.0, size=50_000))[0]
    # Sample kurtosis has standard deviation sqrt(24/n) ≈ 0.022, skew sqrt(6/n) ≈ 0.011.
    assert s[KURT] == pytest.approx(3.0, abs=0.1)
    assert s[SKEW] == pytest.approx(0.0, abs=0.05)
    assert s[DC] == pytest.approx(0.5, abs=0.05)


def test_square_wave_has_crest_and_kurtosis_one():
    x = np.where(np.arange(3000) % 300 < 150, 4.0, -4.0)
    s = waveform_stats(x)[0]
    assert s[RMS] == 4.0 and s[PEAK] == 4.0 and s[CREST] == 1.0
    assert s[KURT] == pytest.approx(1.0, rel=1e-14)
    assert s[SKEW] == pytest.approx(0.0, abs=1e-14)


@pytest.mark.parametrize("phase", [0.0, math.pi / 2, 2.0])  # first sample (the shift) varies
def test_dc_offset_recovered_under_a_large_sine(phase):
    x = sine(10.0, 15000, phase=phase) + 0.01  # 1 s: 50 whole cycles
    s = waveform_stats(x)[0]
    assert s[DC] == pytest.approx(0.01, rel=1e-9)
    assert s[RMS] == pytest.approx(math.sqrt(50.0 + 1e-4), rel=1e-12)
    assert s[KURT] == pytest.approx(1.5, rel=1e-9)


@pytest.mark.parametrize("c", [2.5, -7.0, 1e-3, 0.0])
def test_constant_input(c):
    s = waveform_stats(np.full((2, 500), c))
    assert np.all(s[:, RMS] == abs(c)) and np.all(s[:, PEAK] == abs(c))
    assert np.all(s[:, DC] == c)
    if c == 0.0:
        assert np.all(np.isnan(s[:, CREST]))  # 0 / 0, documented
    else:
        assert np.all(s[:, CREST] == 1.0)
    assert np.all(np.isnan(s[:, SKEW])) and np.all(np.isnan(s[:, KURT]))


def test_non_finite_channel_is_nan_and_others_are_untouched():
    x = RNG.normal(size=(3, 400))
    want = waveform_stats(x)
    x[1, 17] = np.nan
    x[2, 399] = np.inf
    got = waveform_stats(x)
    assert np.all(np.isnan(got[1:])) and np.array_equal(got[0], want[0])


def test_integer_adc_counts_accepted():
    codes = adc_codes(0.5, 3000).astype(np.int16)
    np.testing.assert_allclose(
        waveform_stats(codes), naive.waveform_stats(codes.astype(np.float64)), rtol=1e-9
    )


def test_waveform_stats_validates_x():
    with pytest.raises(ValueError, match="no samples"):
        waveform_stats(np.ones((3, 0)))
    with pytest.raises(ValueError, match="x must have shape"):
        waveform_stats(np.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="x must be real"):
        waveform_stats(np.ones(8, dtype=complex))


# --- fill_gaps --------------------------------------------------------------------------


def test_short_gaps_in_a_ramp_are_filled_exactly():
    ramp = np.arange(100.0)
    x = ramp.copy()
    x[10] = np.nan
    x[40:45] = np.nan
    filled, n_filled, long_gap = fill_gaps(x, 5)
    np.testing.assert_array_equal(filled, ramp)
    assert (n_filled, long_gap) == (6, False)
    assert filled.shape == x.shape and np.isnan(x[10])  # the input is not modified
    # A sloped ramp with a fractional step: exact to rounding.
    ramp = 0.37 * np.arange(100.0) - 4.0
    x = ramp.copy()
    x[50:53] = np.nan
    np.testing.assert_allclose(fill_gaps(x, 5)[0], ramp, rtol=1e-15, atol=1e-14)


def test_gap_longer_than_max_gap_stays_nan_and_is_flagged():
    x = np.arange(60.0)
    x[20:26] = np.nan  # 6 samples
    x[40] = np.inf  # ±inf is a gap too
    filled, n_filled, long_gap = fill_gaps(x, 5)
    assert np.all(np.isnan(filled[20:26])) and long_gap
    assert n_filled == 1 and filled[40] == 40.0
    assert np.array_equal(filled[:20], x[:20]) and np.array_equal(filled[26:], np.arange(26.0, 60))


def test_edge_gaps_hold_the_nearest_value():
    x = np.array([[np.nan, np.nan, np.nan, 4.0, 5.0, 6.0, np.nan, np.nan]])
    filled, n_filled, long_gap = fill_gaps(x, 3)
    np.testing.assert_array_equal(filled, [[4.0, 4.0, 4.0, 4.0, 5.0, 6.0, 6.0, 6.0]])
    assert (n_filled, long_gap) == (5, False)


def test_all_nan_channel_cannot_be_filled():
    x = np.ones((2, 10))
    x[1] = np.nan
    filled, n_filled, long_gap = fill_gaps(x, 20)
    assert np.all(np.isnan(filled[1])) and np.all(filled[0] == 1.0)
    assert (n_filled, long_gap) == (0, True)


@pytest.mark.parametrize("max_gap", [0, 1, 3, 15])
def test_fill_gaps_matches_reference(max_gap):
    x = RNG.normal(size=(3, 3000)).cumsum(axis=1)
    for c in range(3):  # gaps of every length 1 .. 20 at random places
        for length in range(1, 21):
            s = RNG.integers(0, 3000 - length)
            x[c, s : s + length] = np.nan
    x[0, :4] = np.nan
    x[2, -7:] = np.nan
    filled, n_filled, long_gap = fill_gaps(x, max_gap)
    want, n_want, long_want = naive.fill_gaps(x, max_gap)
    np.testing.assert_allclose(filled, want, rtol=1e-12, atol=1e-12)
    assert (n_filled, long_gap) == (n_want, long_want)


def test_fill_gaps_validates_arguments():
    with pytest.raises(ValueError, match="max_gap"):
        fill_gaps(np.ones(10), -1)
    with pytest.raises(TypeError, match="max_gap"):
        fill_gaps(np.ones(10), 1.5)
    with pytest.raises(ValueError, match="x must have shape"):
        fill_gaps(np.ones((2, 2, 2)), 1)
    with pytest.raises(ValueError, match="no samples"):
        fill_gaps(np.ones((2, 0)), 1)


# --- detect_clipping --------------------------------------------------------------------


@pytest.mark.parametrize("f", [50.0, 49.7])
@pytest.mark.parametrize("phase", [0.0, 0.01, 0.0105, 0.02, 1.0])
def test_quantised_80_percent_sine_is_not_clipping(f, phase):
    # 12 bits, 15 kS/s: 300 samples per cycle; crests sit 3 or 4 samples in the top code.
    codes = adc_codes(0.8, 3000, f=f, phase=phase)
    assert detect_clipping(codes)[0] == 0
    assert detect_clipping(codes, rails=(-2048, 2047))[0] == 0


@pytest.mark.parametrize("f", [50.0, 49.7])
@pytest.mark.parametrize("phase", [0.0, 0.0105, 1.0])
def test_quantised_120_percent_sine_clipped_at_the_rails_is_flagged(f, phase):
    codes = adc_codes(1.2, 3000, f=f, phase=phase)
    at_rails = int(np.sum((codes == 2047) | (codes == -2048)))
    assert at_rails > 1000  # ≈ 56 samples on each of 20 crests
    assert detect_clipping(codes)[0] == at_rails
    assert detect_clipping(codes, rails=(-2048, 2047))[0] == at_rails


def test_default_min_run_spares_unclipped_sines_down_to_ten_percent_of_full_scale():
    assert DEFAULT_MIN_RUN == 10
    for frac in (0.105, 0.14, 0.2, 0.37, 0.55, 0.8, 0.9999):
        for phase in np.linspace(0, 2 * np.pi / 300, 6, endpoint=False):
            assert detect_clipping(adc_codes(frac, 900, phase=phase))[0] == 0, (frac, phase)
    for over in (1.006, 1.01, 1.05):
        for phase in np.linspace(0, 2 * np.pi / 300, 6, endpoint=False):
            assert detect_clipping(adc_codes(over, 900, phase=phase))[0] > 0, (over, phase)


def test_one_flat_spot_is_not_clipping_but_flat_crests_are():
    x = sine(8.0, 3000)
    x[1000:1030] = 9.0  # a stuck value above every crest, once
    assert detect_clipping(x)[0] == 0
    x[2000:2030] = 9.0  # twice: indistinguishable from a flattened crest
    assert detect_clipping(x)[0] == 60
    assert detect_clipping(np.full(1000, 3.0))[0] == 0  # constant: no waveform to clip


def test_rails_per_channel_tolerance_and_nan():
    x = np.stack([np.clip(sine(12.0, 3000), -10.0, 10.0), np.clip(sine(1.2, 3000), -1.0, 1.0)])
    x[0][x[0] == 10.0] = 10.0 * (1 - 1e-12)  # within 1e-9 of the rail
    x[1, 70:80] = np.nan  # splits the run on the first crest (samples 47 .. 103) in two
    got = detect_clipping(x, rails=np.array([[-10.0, 10.0], [-1.0, 1.0]]))
    want = naive.detect_clipping(x, rails=np.array([[-10.0, 10.0], [-1.0, 1.0]]))
    np.testing.assert_array_equal(got, want)
    assert got[0] == np.sum(np.abs(np.clip(sine(12.0, 3000), -10, 10)) >= 10.0)
    assert got[1] == np.sum(np.abs(x[1]) >= 1.0)
    assert detect_clipping(x, rails=(-20.0, 20.0)).tolist() == [0, 0]


@pytest.mark.parametrize("min_run", [1, 3, 10, 40])
def test_detect_clipping_matches_reference(min_run):
    x = np.stack(
        [
            adc_codes(1.0 + 0.1 * k, 1500, f=50.0 + 3 * k, phase=k) + RNG.integers(-1, 2, size=1500)
            for k in range(4)
        ]
    )
    x[1, 300:320] = np.nan
    np.testing.assert_array_equal(
        detect_clipping(x, min_run=min_run), naive.detect_clipping(x, min_run=min_run)
    )
    rails = np.array([[-2000, 2000], [-2048, 2047], [-1500, 1900], [0, 1]], dtype=float)
    np.testing.assert_array_equal(
        detect_clipping(x, rails=rails, min_run=min_run),
        naive.detect_clipping(x, rails=rails, min_run=min_run),
    )
    np.testing.assert_array_equal(
        detect_clipping(x.astype(np.float32), min_run=min_run),
        naive.detect_clipping(x, min_run=min_run),
    )


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 300),
    runs=st.lists(st.tuples(st.integers(0, 299), st.integers(1, 40), st.booleans()), max_size=8),
    min_run=st.integers(1, 12),
    f32=st.booleans(),
)
def test_detect_clipping_property_runs_anywhere(n, runs, min_run, f32):
    # Runs at either extreme, of any length, anywhere: across the kernel's blocks, at their
    # ends, several short ones in one block. The counts are the reference's, with the
    # channel's own extremes and with rails there.
    x = np.sin(np.arange(n) * 0.37) * 0.5
    for start, length, top in runs:
        x[start : start + length] = 1.0 if top else -1.0
    x = x.astype(np.float32 if f32 else np.float64)
    assert (
        detect_clipping(x, min_run=min_run).tolist()
        == naive.detect_clipping(x, min_run=min_run).tolist()
    )
    rails = (-1.0, 1.0)
    assert (
        detect_clipping(x, rails=rails, min_run=min_run).tolist()
        == naive.detect_clipping(x, rails=rails, min_run=min_run).tolist()
    )
    # The newest columns of a wider window (C order, read in place) count as those columns
    # alone: runs at the rail value before them do not carry over.
    row = np.concatenate([np.full(37, 1.0, dtype=x.dtype), x])
    both = np.stack([row, -row])
    start = 37
    for r in (None, rails):
        assert (
            detect_clipping(both, start=start, rails=r, min_run=min_run).tolist()
            == naive.detect_clipping(np.stack([x, -x]), rails=r, min_run=min_run).tolist()
        )
    hi, lo = both[:, start:].max(axis=1), both[:, start:].min(axis=1)
    assert (
        detect_clipping(both, start=start, extremes=(hi, lo), min_run=min_run).tolist()
        == naive.detect_clipping(np.stack([x, -x]), min_run=min_run).tolist()
    )


def test_detect_clipping_with_known_extremes_gives_the_same_counts():
    x = np.stack([adc_codes(1.2, 3000, phase=k) for k in range(3)]).astype(np.float32)
    x[1, 100:200] = np.nan  # the kernel then finds the extremes of the rest itself
    want = naive.detect_clipping(x)
    assert want.min() > 1000
    for hi, lo in ((x.max(axis=1), x.min(axis=1)), (np.nanmax(x, axis=1), np.nanmin(x, axis=1))):
        np.testing.assert_array_equal(detect_clipping(x, extremes=(hi, lo)), want)
    with pytest.raises(ValueError, match="extremes"):
        detect_clipping(x, extremes=(np.ones(2), np.ones(2)))


def test_detect_clipping_validates_arguments():
    with pytest.raises(ValueError, match="rails"):
        detect_clipping(np.ones((2, 10)), rails=np.ones((3, 2)))
    with pytest.raises(ValueError, match="rails"):
        detect_clipping(np.ones((2, 10)), rails=(1.0, -1.0))
    with pytest.raises(ValueError, match="min_run"):
        detect_clipping(np.ones((2, 10)), min_run=0)
    with pytest.raises(TypeError, match="min_run"):
        detect_clipping(np.ones((2, 10)), min_run=2.5)
    with pytest.raises(ValueError, match="start=11"):
        detect_clipping(np.ones((2, 10)), start=11)
    with pytest.raises(TypeError, match="start"):
        detect_clipping(np.ones((2, 10)), start=1.0)
    assert detect_clipping(np.ones((2, 10)), start=10).tolist() == [0, 0]


# --- remove_dc --------------------------------------------------------------------------


def test_remove_dc():
    x = sine(10.0, 3000) + np.array([[0.01], [-3.0]])
    got = remove_dc(x)
    np.testing.assert_allclose(got, naive.remove_dc(x), rtol=0, atol=1e-13)
    np.testing.assert_allclose(got, np.stack([sine(10.0, 3000)] * 2), atol=1e-12)
    assert remove_dc(np.arange(5)).tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="no samples"):
        remove_dc(np.ones((2, 0)))


# --- properties -------------------------------------------------------------------------

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False)
# 4th powers of deviations below ~1e-75 underflow (documented); keep skew/kurt data above it.
moderate = finite.filter(lambda v: v == 0.0 or abs(v) > 1e-30)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 300)), elements=moderate),
    st.sampled_from([np.float64, np.float32]),
)
def test_waveform_stats_property_matches_reference(x, dtype):
    x = x.astype(dtype).astype(np.float64) if dtype == np.float32 else x
    got = waveform_stats(x.astype(dtype))
    want = naive.waveform_stats(x)
    for col in (RMS, PEAK, CREST):
        np.testing.assert_allclose(got[:, col], want[:, col], rtol=1e-9, equal_nan=True)
    peak = want[:, PEAK]
    np.testing.assert_allclose(got[:, DC], want[:, DC], rtol=1e-9, atol=1e-12 * peak.max())
    std = np.array([np.std(r) for r in x])
    for c in range(x.shape[0]):
        if np.all(x[c] == x[c, 0]):
            assert np.isnan(got[c, SKEW]) and np.isnan(got[c, KURT])
            continue
        # Pearson's inequality holds for any data: kurtosis >= skew² + 1.
        assert got[c, KURT] >= got[c, SKEW] ** 2 + 1 - 1e-6
        if std[c] > 1e-2 * peak[c]:  # well conditioned: both sides good to many digits
            assert got[c, SKEW] == pytest.approx(want[c, SKEW], rel=1e-7, abs=1e-7)
            assert got[c, KURT] == pytest.approx(want[c, KURT], rel=1e-7)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 120)), elements=finite),
    st.data(),
    st.integers(0, 6),
)
def test_fill_gaps_property(x, data, max_gap):
    mask = data.draw(hnp.arrays(np.bool_, x.shape))
    x = np.where(mask, np.nan, x)
    filled, n_filled, long_gap = fill_gaps(x, max_gap)
    ok = ~mask
    assert np.array_equal(filled[ok], x[ok])  # finite samples are never altered
    want, n_want, long_want = naive.fill_gaps(x, max_gap)
    np.testing.assert_allclose(filled, want, rtol=1e-12, atol=1e-6, equal_nan=True)
    assert (n_filled, long_gap) == (n_want, long_want)
    for c in range(x.shape[0]):  # every gap of <= max_gap in a row with data is filled
        if ok[c].any():
            runs = np.diff(np.flatnonzero(np.diff(np.r_[0, mask[c].astype(int), 0])))[::2]
            if np.all(runs <= max_gap):
                assert np.all(np.isfinite(filled[c]))
    assert n_filled == int(np.sum(mask & ~np.isnan(filled)))
    assert long_gap == bool(np.isnan(filled).any())


@settings(max_examples=40, deadline=None)
@given(finite, st.integers(1, 3), st.integers(1, 400))
def test_constant_input_never_crashes(c, channels, n):
    x = np.full((channels, n), c)
    s = waveform_stats(x)
    np.testing.assert_array_equal(s[:, RMS], abs(c))
    np.testing.assert_array_equal(s[:, DC], c)
    assert np.all(np.isnan(s[:, SKEW:DC]))
    assert np.all(s[:, CREST] == 1.0) if c != 0 else np.all(np.isnan(s[:, CREST]))
    assert np.all(detect_clipping(x) == 0)
    filled, n_filled, long_gap = fill_gaps(x, 3)
    assert np.array_equal(filled, x) and n_filled == 0 and not long_gap
    np.testing.assert_allclose(remove_dc(x), 0.0, atol=1e-15 * abs(c))
