"""Cost of each kernel on the default workload (15 kS/s, 1 s short window, 3 currents).

Kernels that have a plain numpy/scipy twin in :mod:`benchmarks.numpy_baseline` are
benchmarked beside it in the same group, after checking that both give the same answer,
so the report's ratio column is the speed-up of the kernel for equal results.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import numpy_baseline
from benchmarks import workloads as wl
from edge_agent import kernels
from edge_agent.features import short_features

IMPLS = [pytest.param(kernels, id="kernels"), pytest.param(numpy_baseline, id="numpy")]


def timed(benchmark, fn, *args):
    """Call ``fn(*args)`` once untimed (numba compile or cache load, FFT plan, windows),
    then benchmark it; returns the result."""
    fn(*args)
    return benchmark(fn, *args)


@pytest.mark.benchmark(group="power_spectrum (3, 15000) hann")
@pytest.mark.parametrize("impl", IMPLS)
def test_power_spectrum(benchmark, impl):
    x = wl.short_window()
    _, p = timed(benchmark, impl.power_spectrum, x, wl.FS)
    np.testing.assert_allclose(p, kernels.power_spectrum(x, wl.FS)[1], rtol=1e-9, atol=1e-18)


@pytest.mark.benchmark(group="dft_phasors (3, 15000) at f")
@pytest.mark.parametrize("impl", IMPLS)
def test_dft_phasors(benchmark, impl):
    x = wl.short_window()
    _, _, f, _ = wl.short_params()
    ph = timed(benchmark, impl.dft_phasors, x, wl.FS, f)
    np.testing.assert_allclose(ph, kernels.dft_phasors(x, wl.FS, f), rtol=1e-9)


@pytest.mark.benchmark(group="thd (3, 7501) 40 harmonics")
@pytest.mark.parametrize("impl", IMPLS)
def test_thd(benchmark, impl):
    p, df, f, n_harm = wl.short_params()
    t = timed(benchmark, impl.thd, p, df, f, n_harm)
    np.testing.assert_allclose(t, kernels.thd(p, df, f, n_harm), rtol=1e-9)


@pytest.mark.benchmark(group="epva_line_db (3, 15000) at 2f")
@pytest.mark.parametrize("impl", IMPLS)
def test_epva_line_db(benchmark, impl):
    x = wl.short_window()
    _, _, f, _ = wl.short_params()
    level = timed(benchmark, impl.epva_line_db, x, wl.FS, 2 * f)
    assert level == pytest.approx(kernels.epva_line_db(x, wl.FS, 2 * f), abs=1e-6)


@pytest.mark.benchmark(group="rms (3, 15000)")
@pytest.mark.parametrize("impl", IMPLS)
def test_rms(benchmark, impl):
    x = wl.short_window()
    r = timed(benchmark, impl.rms, x)
    np.testing.assert_allclose(r, kernels.rms(x), rtol=1e-12)


@pytest.mark.benchmark(group="short-window features (3, 15000)")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_short_features(benchmark, impl):
    """Everything read off one short window: the sum the per-kernel groups add up to."""
    x = wl.short_window()
    if impl == "kernels":
        feats = timed(benchmark, short_features, x, wl.FS, wl.CONFIG.motor)
    else:
        feats = timed(benchmark, numpy_baseline.short_features, x, wl.FS)
    expected = short_features(x, wl.FS, wl.CONFIG.motor)
    assert feats == pytest.approx({k: expected[k] for k in feats}, rel=1e-9, abs=1e-9)


@pytest.mark.benchmark(group="long window (3, 17143) at 2142.86 Hz")
def test_space_vector_spectrum(benchmark):
    x, fs_long = wl.long_window()
    _, p = timed(benchmark, kernels.space_vector_spectrum, x, fs_long)
    assert p.shape == (x.shape[1] // 2 + 1,)


@pytest.mark.benchmark(group="long window (3, 17143) at 2142.86 Hz")
def test_brb_sidebands(benchmark):
    p_sum, df, f, s_lo, s_hi, hw = wl.brb_params()
    brb = timed(benchmark, kernels.brb_sidebands, p_sum, df, f, s_lo, s_hi, hw)
    assert brb.lsb_db < -60  # a healthy rotor: no sideband pair above the noise


@pytest.mark.benchmark(group="FirDecimator.process, one hop (3, 7500) by 7")
def test_fir_decimator(benchmark):
    dec = kernels.FirDecimator(wl.FS, wl.DECIMATION, 3)
    hop = np.ascontiguousarray(wl.hops()[0].T)
    # Each call carries the filter state on, as the pipeline's does; the cost is the same.
    out = timed(benchmark, dec.process, hop)
    assert out.shape[0] == 3 and abs(out.shape[1] - wl.HOP / wl.DECIMATION) <= 1
