"""Every kernel against its slow reference in naive.py, and against analytic truths."""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_agent import kernels
from tests import naive

RNG = np.random.default_rng(1234)


def three_phase(fs, n, f=50.0, amp=(10.0, 10.0, 10.0), phase_shift=(0.0, -120.0, 120.0)):
    t = np.arange(n) / fs
    return np.stack(
        [
            a * np.cos(2 * np.pi * f * t + math.radians(p))
            for a, p in zip(amp, phase_shift, strict=True)
        ]
    )


# --- compared with the references ----------------------------------------------------


@pytest.mark.parametrize("window", ["hann", "blackmanharris"])
def test_power_spectrum_matches_dft_definition(window):
    x = RNG.normal(size=(3, 300))
    _, p = kernels.power_spectrum(x, 1000.0, window=window)
    np.testing.assert_allclose(p, naive.power_spectrum(x, 1000.0, window), rtol=1e-9, atol=1e-12)


def test_space_vector_spectrum_matches_reference_and_separates_sequences():
    x = RNG.normal(size=(3, 256))
    _, p = kernels.space_vector_spectrum(x, 1000.0)
    # The transform runs in single precision: float32 rounding of the largest bin.
    ref = naive.space_vector_spectrum(x, 1000.0)
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6 * ref.max())
    # 10 A positive sequence at 50 Hz reads 100 A²; a negative-sequence set reads nothing at +f.
    # To single precision: x86's FFTW happened to round within 1e-9 here, arm64's by 2.7e-8.
    fs, n = 1000.0, 1000
    _, p = kernels.space_vector_spectrum(three_phase(fs, n), fs, window="hann")
    assert kernels.band_power(p, 1.0, 50.0, 2) / 1.5 == pytest.approx(100.0, rel=1e-6)
    neg = three_phase(fs, n, phase_shift=(0.0, 120.0, -120.0))
    _, p = kernels.space_vector_spectrum(neg, fs, window="hann")
    assert kernels.band_power(p, 1.0, 50.0, 2) < 100.0 * 1e-13  # 130 dB down: float32 rounding


def test_peak_frequency_and_band_power_match_reference():
    x = three_phase(1000.0, 1000, f=50.37)[0] + RNG.normal(scale=0.1, size=1000)
    _, p = kernels.power_spectrum(x, 1000.0)
    assert kernels.peak_frequency(p, 1.0, 5, 120) == pytest.approx(
        naive.peak_frequency(p, 1.0, 5, 120), abs=1e-12
    )
    assert kernels.band_power(p, 1.0, 50.37, 2) == pytest.approx(
        naive.band_power(p, 1.0, 50.37, 2), rel=1e-12
    )


def test_thd_matches_reference():
    x = RNG.normal(size=(3, 2000)) + three_phase(2000.0, 2000)
    _, p = kernels.power_spectrum(x, 2000.0)
    np.testing.assert_allclose(
        kernels.thd(p, 1.0, 50.0, 15), naive.thd(p, 1.0, 50.0, 15), rtol=1e-12
    )


def test_phasors_and_sequence_match_reference():
    x = three_phase(1000.0, 700, f=49.3, amp=(10, 9, 11), phase_shift=(5, -110, 130))
    x += RNG.normal(scale=0.2, size=x.shape)
    ph = kernels.dft_phasors(x, 1000.0, 49.3)
    np.testing.assert_allclose(ph, naive.dft_phasors(x, 1000.0, 49.3), rtol=1e-10)
    for got, want in zip(
        kernels.sequence_components(ph), naive.sequence_components(ph), strict=True
    ):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_rms_and_epva_match_reference():
    x = three_phase(1000.0, 1000, amp=(10, 9, 10)) + RNG.normal(scale=0.1, size=(3, 1000))
    np.testing.assert_allclose(kernels.rms(x), naive.rms(x), rtol=1e-12)
    assert kernels.epva_line_db(x, 1000.0, 100.0) == pytest.approx(
        naive.epva_line_db(x, 1000.0, 100.0), abs=1e-9
    )


def test_brb_search_matches_reference():
    fs, n = 500.0, 4000
    t = np.arange(n) / fs
    x = np.cos(2 * np.pi * 50 * t) + 0.01 * np.cos(2 * np.pi * 46.8 * t + 1)
    x += 0.008 * np.cos(2 * np.pi * 53.2 * t) + RNG.normal(scale=1e-4, size=n)
    _, p = kernels.power_spectrum(x, fs, window="blackmanharris")
    got = kernels.brb_sidebands(p, fs / n, 50.0, 0.012, 0.06)
    np.testing.assert_allclose(got, naive.brb_sidebands(p, fs / n, 50.0, 0.012, 0.06), rtol=1e-9)


@pytest.mark.parametrize("factor", [1, 3, 7])
def test_decimator_streaming_equals_one_shot_reference(factor):
    x = RNG.normal(size=(3, 5000))
    dec = kernels.FirDecimator(15000.0, factor, 3)
    pieces, i = [], 0
    for size in [1, 17, 500, 999, 1, 3482]:
        pieces.append(dec.process(x[:, i : i + size]))
        i += size
    got = np.concatenate(pieces, axis=1)
    np.testing.assert_allclose(got, naive.fir_decimate(x, dec.taps, factor), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("factor", [1, 7])
@pytest.mark.parametrize("layout", ["C", "frames", "slice", "float32"])
def test_space_vector_decimator_streaming_equals_one_shot_reference(factor, layout):
    x = RNG.normal(size=(3, 3000))
    # As the pipeline hands hops over: a transposed block of frames, a slice of one, or
    # (after gap filling) a contiguous array; and single precision.
    src = {
        "C": x,
        "frames": np.ascontiguousarray(x.T).T,
        "slice": np.hstack([x, x])[:, : x.shape[1]],
        "float32": x.astype(np.float32),
    }[layout]
    dec = kernels.SpaceVectorDecimator(15000.0, factor)
    pieces, i = [], 0
    for size in [1, 17, 500, 999, 1, 1482]:
        pieces.append(dec.process(src[:, i : i + size]))
        i += size
    got = np.concatenate(pieces)
    assert got.dtype == np.complex128
    want = naive.space_vector_decimate(src, dec.taps, factor)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_space_vector_decimator_turns_a_balanced_set_into_a_rotating_vector():
    fs, factor = 15000.0, 7
    x = three_phase(fs, 30000, f=50.0)
    dec = kernels.SpaceVectorDecimator(fs, factor)
    z = dec.process(x)[100:]  # past the filter's start-up from zero history
    np.testing.assert_allclose(np.abs(z), 10.0, rtol=1e-3)
    # Forward rotation at 50 Hz: the phase advances by 2π·50·factor/fs per sample.
    step = np.angle(z[1:] / z[:-1])
    np.testing.assert_allclose(step, 2 * np.pi * 50 * factor / fs, atol=1e-6)
    dec.reset()
    fresh = kernels.SpaceVectorDecimator(fs, factor)
    np.testing.assert_array_equal(dec.process(x), fresh.process(x))
    with pytest.raises(ValueError, match=r"shape \(3, n\)"):
        dec.process(np.ones((2, 10)))


# --- analytic truths ------------------------------------------------------------------


def test_sine_of_amplitude_a_reads_a_squared_on_its_bin():
    fs, n = 1000.0, 1000
    _, p = kernels.power_spectrum(3.0 * np.sin(2 * np.pi * 50 * np.arange(n) / fs), fs)
    assert p[50] == pytest.approx(9.0, rel=1e-9)


@pytest.mark.parametrize("f", [49.5, 50.0, 50.25, 59.87, 60.0])
def test_supply_frequency_between_bins(f):
    x = three_phase(1000.0, 1000, f=f)
    _, p = kernels.power_spectrum(x, 1000.0)
    assert kernels.peak_frequency(p.sum(0), 1.0, 5, 120) == pytest.approx(f, abs=0.06)


def test_balanced_set_has_no_negative_sequence_and_known_unbalance_is_recovered():
    fs, n = 15000.0, 15000
    i0, i1, i2 = kernels.sequence_components(kernels.dft_phasors(three_phase(fs, n), fs, 50.0))
    assert abs(i1) == pytest.approx(10.0, rel=1e-9)
    assert abs(i2) < 1e-8 and abs(i0) < 1e-8
    # Positive sequence 10 A plus negative sequence 1.5 A at 30°, built phase by phase.
    a = cmath.exp(2j * math.pi / 3)
    want1, want2 = 10.0, 1.5 * cmath.exp(1j * math.radians(30))
    ph = [want1 + want2, a * a * want1 + a * want2, a * want1 + a * a * want2]
    x = three_phase(
        fs, n, amp=[abs(p) for p in ph], phase_shift=[math.degrees(cmath.phase(p)) for p in ph]
    )
    _, j1, j2 = kernels.sequence_components(kernels.dft_phasors(x, fs, 50.0))
    assert j1 == pytest.approx(want1, abs=1e-8)
    assert j2 == pytest.approx(want2, abs=1e-8)


def test_thd_of_known_harmonics():
    fs, n = 15000.0, 15000
    t = np.arange(n) / fs
    x = (
        np.cos(2 * np.pi * 50 * t)
        + 0.03 * np.cos(2 * np.pi * 250 * t)
        + 0.04 * np.cos(2 * np.pi * 350 * t)
    )
    _, p = kernels.power_spectrum(x, fs)
    assert kernels.thd(p, 1.0, 50.0, 40)[0] == pytest.approx(0.05, rel=1e-6)


def test_epva_2f_line_tracks_negative_sequence():
    # |i| = |I1 + I2·e^{-2jωt}| ripples at 2f with relative amplitude I2/I1 for small I2.
    fs, n = 15000.0, 15000
    a = cmath.exp(2j * math.pi / 3)
    ph = [1 + 0.05, a * a + a * 0.05, a + a * a * 0.05]
    x = three_phase(
        fs, n, amp=[abs(p) for p in ph], phase_shift=[math.degrees(cmath.phase(p)) for p in ph]
    )
    assert kernels.epva_line_db(x, fs, 100.0) == pytest.approx(20 * math.log10(0.05), abs=0.05)
    assert kernels.epva_line_db(three_phase(fs, n), fs, 100.0) < -150


@pytest.mark.parametrize("level_db", [-30.0, -40.0, -50.0, -60.0])
@pytest.mark.parametrize("slip", [0.02, 0.035])
def test_brb_sidebands_come_back_at_their_level_and_slip(level_db, slip):
    fs, n, f = 2000.0, 16000, 50.0
    t = np.arange(n) / fs
    g = 10 ** (level_db / 20)
    x = np.cos(2 * np.pi * f * t) + g * np.cos(2 * np.pi * f * (1 - 2 * slip) * t + 0.3)
    x += g * np.cos(2 * np.pi * f * (1 + 2 * slip) * t + 1.1) + RNG.normal(scale=1e-5, size=n)
    _, p = kernels.power_spectrum(x, fs, window="blackmanharris")
    res = kernels.brb_sidebands(p, fs / n, f, 0.012, 0.06)
    assert res.lsb_db == pytest.approx(level_db, abs=0.5)
    assert res.usb_db == pytest.approx(level_db, abs=0.5)
    assert res.slip == pytest.approx(slip, abs=2e-4)
    assert res.prominence_db > 20


def test_kernels_validate_arguments():
    with pytest.raises(ValueError, match="window="):
        kernels.power_spectrum(np.ones(10), 100.0, window="kaiser")
    with pytest.raises(ValueError, match="fs"):
        kernels.power_spectrum(np.ones(10), -1.0)
    with pytest.raises(ValueError, match="shape"):
        kernels.epva_line_db(np.ones((2, 10)), 100.0, 10.0)
    with pytest.raises(ValueError, match="3 values"):
        kernels.sequence_components(np.ones(2))
    with pytest.raises(ValueError, match="between 0 and fs/2"):
        kernels.dft_phasors(np.ones((3, 10)), 100.0, 60.0)
    with pytest.raises(ValueError, match="main lobe"):
        kernels.brb_sidebands(np.ones(1000), 0.5, 50.0, 0.02, 0.05)


# --- properties -------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.just(3), st.integers(64, 400)),
        elements=st.floats(-1e4, 1e4, allow_nan=False),
    ),
    st.sampled_from([np.float32, np.float64]),
)
def test_rms_property_matches_reference_for_any_input_and_dtype(x, dtype):
    x = x.astype(dtype)
    np.testing.assert_allclose(
        kernels.rms(x), naive.rms(x.astype(np.float64)), rtol=1e-6, atol=1e-9
    )


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.1, 100.0),
    st.floats(-180, 180),
    st.floats(0.0, 0.5),
    st.floats(-180, 180),
    st.sampled_from([1000.0, 4000.0, 15000.0]),
    st.floats(45.0, 65.0),
)
def test_sequence_property_any_positive_plus_negative_set(i1, a1, ratio, a2, fs, f):
    n = int(fs)  # 1 s: the window holds whole cycles only by chance
    a = cmath.exp(2j * math.pi / 3)
    p1 = i1 * cmath.exp(1j * math.radians(a1))
    p2 = ratio * i1 * cmath.exp(1j * math.radians(a2))
    ph = [p1 + p2, a * a * p1 + a * p2, a * p1 + a * a * p2]
    x = three_phase(
        fs, n, f=f, amp=[abs(p) for p in ph], phase_shift=[math.degrees(cmath.phase(p)) for p in ph]
    )
    _, j1, j2 = kernels.sequence_components(kernels.dft_phasors(x, fs, f))
    assert abs(j2) / abs(j1) == pytest.approx(ratio, abs=1e-3)
    assert abs(j1) == pytest.approx(i1, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 12),
    st.lists(st.integers(1, 400), min_size=1, max_size=12),
    st.sampled_from(["pattern", "float32", "constant", "clipped", "nan"]),
    st.integers(0, 2**32 - 1),
)
def test_decimator_property_any_chunking(factor, sizes, kind, seed):
    """Any chunking, float32 or float64, constant, clipped or with a NaN sample (which
    spoils exactly the outputs whose taps reach it, as in the one-shot reference)."""
    rng = np.random.default_rng(seed)
    x = np.arange(sum(sizes) * 3, dtype=np.float64).reshape(3, -1) % 17.0
    if kind == "float32":
        x = rng.normal(size=x.shape).astype(np.float32)
    elif kind == "constant":
        x[:] = rng.uniform(-5, 5)
    elif kind == "clipped":
        x = np.clip(x, 3.0, 12.0)
    elif kind == "nan":
        x[rng.integers(0, 3), rng.integers(0, x.shape[1])] = np.nan
    dec = kernels.FirDecimator(12000.0, factor, 3)
    out, i = [], 0
    for s in sizes:
        out.append(dec.process(x[:, i : i + s]))
        i += s
    got = np.concatenate(out, axis=1)
    want = naive.fir_decimate(x, dec.taps, factor)
    np.testing.assert_allclose(got, want, rtol=1e-6 if kind == "float32" else 1e-9, atol=1e-9)
    sv = kernels.SpaceVectorDecimator(12000.0, factor)
    got = np.concatenate([sv.process(p) for p in np.split(x, np.cumsum(sizes)[:-1], axis=1)])
    want = naive.space_vector_decimate(x, sv.taps, factor)
    np.testing.assert_allclose(got, want, rtol=1e-6 if kind == "float32" else 1e-9, atol=1e-9)


def test_constant_input_gives_finite_or_nan_never_crashes():
    x = np.ones((3, 1000))
    _, p = kernels.power_spectrum(x, 1000.0)
    assert np.all(np.isfinite(kernels.rms(x)))
    thd = kernels.thd(p, 1.0, 50.0, 5)
    assert np.all(np.isnan(thd) | np.isfinite(thd))
