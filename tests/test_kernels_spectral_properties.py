"""Property tests of the kernels that read a power spectrum, against tests/naive.py.

Spectra of any length, in float32 or float64: white noise under a fundamental, the same
with strong random lines, a constant (flat) spectrum, and noise with a NaN bin anywhere.
Each kernel must give what its slow reference gives (NaN where it gives NaN), and never
crash. The pipeline passes float64 spectra; float32 ones (a spectrum kept to save memory)
must read the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from edge_agent.kernels.bearing import bearing_orders
from edge_agent.kernels.lines import bearing_line_levels, eccentricity_sidebands
from edge_agent.kernels.sidebands import brb_sidebands
from edge_agent.kernels.spectrum import (
    band_power,
    peak_frequency,
    spectral_window,
    thd,
    window_sum,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests import naive

DF = 15000 / 7 / 16384  # the long window's bin, Hz
F = 50.0
F_R = 24.25  # 4-pole, slip 0.03
ORDERS = bearing_orders(9, 7.94, 39.04, 0.0)  # a 6205
S_BAND = (0.0124, 0.06)
KINDS = ("noise", "lines", "constant", "nan")
MAIN_LOBE = np.array([0.01, 0.1, 0.4, 0.8, 1.0, 0.8, 0.4, 0.1, 0.01])


@st.composite
def spectra(draw):
    n = draw(st.integers(1100, 4000))  # from just past the upper broken-bar line
    kind = draw(st.sampled_from(KINDS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "constant":
        p = np.full(n, draw(st.floats(1e-12, 1e3)))
    else:
        p = rng.exponential(size=n) * 1e-9
        k0 = round(F / DF)
        p[k0 - 4 : k0 + 5] += MAIN_LOBE
        if kind == "lines":
            for k in rng.integers(0, n, 20):
                p[k] += 10 ** rng.uniform(-6, -2)
        if kind == "nan":
            p[rng.integers(0, n)] = np.nan
    return p.astype(dtype), kind


@settings(max_examples=60, deadline=None)
@given(spectra())
def test_spectrum_kernels_equal_their_references_on_any_spectrum(case):
    p, kind = case
    q = p.astype(np.float64)  # exact: the references see the same numbers
    n_harm = min(40, int((p.shape[0] - 3) * DF / F))
    checks = {
        "peak_frequency": (peak_frequency(p, DF, 45, 55), naive.peak_frequency(q, DF, 45, 55)),
        "band_power": (band_power(p, DF, F, 4), naive.band_power(q, DF, F, 4)),
        "thd": (thd(p, DF, F, n_harm, 2), naive.thd(q, DF, F, n_harm, 2)),
        "brb_sidebands": (
            tuple(brb_sidebands(p, DF, F, *S_BAND, 4)),
            naive.brb_sidebands(q, DF, F, *S_BAND, 4),
        ),
        "eccentricity_sidebands": (
            tuple(eccentricity_sidebands(p, DF, F, F_R, 4)),
            naive.line_levels(q, DF, F, [-F_R, F_R, -2 * F_R, 2 * F_R])[0],
        ),
        "bearing_line_levels": (
            np.concatenate(bearing_line_levels(p, DF, F, F_R, ORDERS, 2, 4, 32)),
            np.concatenate(naive.bearing_line_levels(q, DF, F, F_R, ORDERS, 2, 4, 32)),
        ),
    }
    wrong = {k: v for k, v in checks.items() if not naive.agrees(*v, rtol=1e-9, atol=1e-9)}
    assert not wrong, f"{kind}, {p.dtype}, n={p.shape[0]}: {wrong}"
    if kind != "nan":
        assert np.isfinite(checks["peak_frequency"][0])
        assert np.all(np.isfinite(checks["thd"][0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_peak_frequency_passes_over_nan_bins(dtype):
    """A NaN bin (a spectrum of a window with a hole) is never taken for the peak, and next
    to the peak it counts as empty; a band of NaN only has no peak."""
    p = np.full(200, 1e-6, dtype=dtype)
    p[99:102] = (0.5, 1.0, 0.25)
    p[60] = np.nan
    assert peak_frequency(p, 1.0, 50, 150) == pytest.approx(naive.peak_frequency(p, 1.0, 50, 150))
    both = peak_frequency(p, 1.0, 50, 150)
    assert 99.5 < both < 100.0  # towards the stronger neighbour
    p[101] = np.nan
    assert 99.5 <= peak_frequency(p, 1.0, 50, 150) < both  # as if bin 101 were empty
    p[:] = np.nan
    assert np.isnan(peak_frequency(p, 1.0, 50, 150))


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["hann", "blackmanharris"]),
    fmin=st.floats(3.0, 100.0),
    width=st.floats(2.0, 60.0),
    where=st.floats(0.0, 1.0),
)
@example(name="hann", fmin=3.25, width=10.0, where=0.0)  # largest bin 3, below the band
@example(name="blackmanharris", fmin=40.0, width=9.7, where=1.0)  # largest bin 50, above
def test_peak_frequency_finds_a_line_anywhere_in_its_band_edges_included(name, fmin, width, where):
    """A line at any frequency of [fmin, fmax], the very edges included, is read within 0.02
    bins (Hann) or 0.05 bins (Blackman-Harris), though its largest bin may lie outside the
    band: the search runs from the bin nearest fmin to the bin nearest fmax."""
    n, fs = 1024, 1024.0  # bins of 1 Hz
    f = fmin + where * width
    i = np.arange(n)
    x = np.cos(2 * np.pi * f * i / fs) * naive.window(name, n)
    p = np.abs(np.fft.rfft(x)) ** 2
    got = peak_frequency(p, 1.0, fmin, fmin + width)
    assert got == pytest.approx(naive.peak_frequency(p, 1.0, fmin, fmin + width), abs=1e-9)
    assert got == pytest.approx(f, abs=0.02 if name == "hann" else 0.05)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(["hann", "blackmanharris"]), n=st.integers(4, 40_000))
def test_spectral_window_property_any_length(name, n):
    w = spectral_window(name, n)
    assert w.shape == (n,) and not w.flags.writeable  # shared: cached per (name, n)
    assert naive.agrees(w, naive.window(name, n), rtol=0, atol=1e-12)
    # Periodic ("DFT-even"): w[k] = w[n - k], the form whose DFT has only the window's few
    # lines, and whose sum is its first coefficient times n.
    np.testing.assert_allclose(w[1:], w[:0:-1], rtol=0, atol=1e-12)
    a0 = 0.5 if name == "hann" else 0.35875
    assert window_sum(name, n) == pytest.approx(a0 * n, rel=1e-12)
    assert window_sum(name, n) == pytest.approx(w.sum(), rel=1e-12)
    assert w.min() >= -1e-15 and w.max() <= 1.0 + 1e-15
