"""Property tests of the kernels that read samples, against tests/naive.py.

Three-phase windows of any length at 2, 5 or 15 kS/s, in float32 or float64: noisy
unbalanced sines with DC offsets, the same clipped at 80 % of their peaks (a saturated
ADC), a constant on each channel (a dead sensor), and noisy sines with one NaN sample.
Every kernel must give what its slow reference gives: NaN where it gives NaN, the same
ValueError for a window too short for it, and no crash.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from edge_agent.kernels.engine import fundamental, phasors
from edge_agent.kernels.park import clarke, epva_line_db, modulus_lines_db, park_modulus
from edge_agent.kernels.power import power_quantities
from edge_agent.kernels.quality import detect_clipping, remove_dc
from edge_agent.kernels.sequence import dft_phasors
from edge_agent.kernels.spectrum import power_spectrum, space_vector_spectrum
from edge_agent.kernels.stats import rms
from edge_agent.kernels.vi import vi_features
from edge_agent.kernels.waveform import waveform_stats
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import naive

F = 50.0
KINDS = ("sines", "clipped", "constant", "nan")


@st.composite
def windows(draw, scale: float = 1.0):
    """(x, kind, fs): a (3, n) window as the docstring above describes."""
    fs = draw(st.sampled_from([2000.0, 5000.0, 15000.0]))
    n = draw(st.integers(160, 900))
    kind = draw(st.sampled_from(KINDS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "constant":
        x = np.repeat(rng.uniform(-5, 5, (3, 1)), n, axis=1)
    else:
        t = np.arange(n) / fs
        amp = rng.uniform(0.5, 20, (3, 1))
        phase = rng.uniform(0, 2 * np.pi, (3, 1)) - 2 * np.pi * np.arange(3)[:, None] / 3
        x = amp * np.cos(2 * np.pi * F * t + phase) + rng.uniform(-0.1, 0.1, (3, 1))
        x += rng.normal(scale=0.01, size=(3, n))
        if kind == "clipped":
            x = np.clip(x, -0.8 * amp, 0.8 * amp)
        if kind == "nan":
            x[rng.integers(0, 3), rng.integers(0, n)] = np.nan
    return (scale * x).astype(dtype), kind, fs


@settings(max_examples=60, deadline=None)
@given(windows())
def test_signal_kernels_equal_their_references_on_any_window(case):
    x, kind, fs = case
    q = x.astype(np.float64)  # exact: the references see the same numbers
    rtol = 1e-4 if x.dtype == np.float32 else 1e-6
    # Park's vector lines are ratios of a line (down to -100 dB) to the mean: in dB.
    epva = naive.epva_line_db(q, fs, 2 * F)
    fund = fundamental(x, fs, F)
    sv = naive.space_vector(q)
    checks = {
        "power_spectrum": (power_spectrum(x[0], fs)[1], naive.power_spectrum(q[0], fs)[0], rtol),
        "space_vector_spectrum": (
            space_vector_spectrum(x, fs)[1],
            naive.space_vector_spectrum(q, fs),
            rtol,
        ),
        "dft_phasors": (dft_phasors(x, fs, F), naive.dft_phasors(q, fs, F), rtol),
        "phasors": (phasors(x, fs, F), naive.dft_phasors(q, fs, F), rtol),
        "fundamental phasors": (fund.phasors, naive.dft_phasors(q, fs, F), rtol),
        "fundamental rms": (fund.rms, naive.rms(q), rtol),
        "rms": (rms(x), naive.rms(q), rtol),
        "clarke": (clarke(x), np.stack([sv.real, sv.imag]), rtol),
        "park_modulus": (park_modulus(x), math.sqrt(1.5) * np.abs(sv), rtol),
        "waveform_stats": (waveform_stats(x), naive.waveform_stats(q), rtol),
        "remove_dc": (remove_dc(x), naive.remove_dc(q), rtol),
        "detect_clipping": (detect_clipping(x), naive.detect_clipping(x), 0.0),
    }
    wrong = [k for k, (got, want, tol) in checks.items() if not naive.agrees(got, want, tol)]
    dbs = {
        "epva_line_db": epva_line_db(x, fs, 2 * F),
        "fundamental epva_db": fund.epva_db,
        "modulus_lines_db": modulus_lines_db(park_modulus(x), fs, [2 * F])[0],
    }
    if kind == "constant":  # no line: the level is rounding, -200 dB or less, or the floor
        wrong += [k for k, db in {**dbs, "naive": epva}.items() if not db <= -200]
    else:
        wrong += [k for k, db in dbs.items() if not naive.agrees(db, epva, 0.0, atol=0.01)]
    assert not wrong, f"{kind}, {x.dtype}, n={x.shape[1]}, fs={fs}: {wrong}"
    if kind != "nan":
        assert np.all(np.isfinite(checks["waveform_stats"][0][:, [0, 1, 5]]))  # rms, peak, dc


@settings(max_examples=40, deadline=None)
@given(windows(scale=20.0), windows())
def test_power_and_vi_kernels_equal_their_references_on_any_window(voltages, currents):
    v, v_kind, fs = voltages
    i, i_kind, _ = currents
    kinds = {v_kind, i_kind}
    n = min(v.shape[1], i.shape[1])
    v, i = v[:, :n], i[:, :n]
    rtol = 1e-4 if np.float32 in (v.dtype, i.dtype) else 1e-6

    got = power_quantities(v, i, fs, F)
    want = naive.power_quantities(v.astype(np.float64), i.astype(np.float64), fs, F)
    if "constant" in kinds:
        # No fundamental voltage or current: the ratios are 0/0; the powers must still be 0.
        assert naive.agrees(tuple(got)[3:5], want[3:5], 0.0, atol=1e-6)
    else:
        # z2 = |V2|/|I2| divides by a negative sequence down to rounding: compared apart.
        assert naive.agrees(tuple(got)[:6], want[:6], rtol, atol=1e-6)

    cycles = n * F / fs
    if cycles < 2:
        with pytest.raises(ValueError, match="need at least 2"):
            vi_features(v, i, fs, F)
    elif cycles >= 3 and kinds == {"sines"}:
        got = vi_features(v, i, fs, F)
        want = naive.vi_features(v.astype(np.float64), i.astype(np.float64), fs, F)
        assert naive.agrees(got, want, 1e-3 if rtol > 1e-6 else 1e-6, atol=1e-4)
    else:
        got = vi_features(v, i, fs, F)  # clipped, constant, NaN: any values, no crash
        assert got.shape == (3, 9)
        bad = ~np.isfinite(v).all(axis=1) | ~np.isfinite(i).all(axis=1)
        assert np.isnan(got[bad]).all()  # a phase with a NaN sample: NaN features


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dead_channel_has_no_skew_or_kurtosis(dtype):
    """A constant channel (a sensor that has gone quiet) has rms, peak and dc, but its
    skew and kurtosis are undefined (NaN, recorded as null), however its mean rounds."""
    x = np.full((3, 1001), 0.1, dtype=dtype)
    x[1] = -2.6347851
    x[2] = 7.3
    stats = waveform_stats(x)
    assert np.all(np.isnan(stats[:, 3:5]))
    assert stats[:, 0] == pytest.approx(np.abs(x[:, 0]), rel=1e-6)
    assert stats[:, 5] == pytest.approx(x[:, 0], rel=1e-6)
