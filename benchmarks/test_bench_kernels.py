"""Cost of each kernel on one window of the full workload, and of the FFTs alone.

The window is ``workloads.window(TIMED)``: 15 kS/s, 3 currents + 3 voltages, a 28-bar
rotor and a 6205 bearing, so that every kernel the pipeline calls has work to do. Short-
window kernels get the 1 s window (6, 15000) or one 0.5 s hop, long-window kernels the
16384-sample decimated space vector at 2142.86 Hz.

Kernels that have a plain numpy/scipy twin in :mod:`benchmarks.numpy_baseline` are
benchmarked beside it in the same group, after checking that both give the same answer,
so the report's ratio column is the speed-up for equal results. Groups whose name starts
with ``fft-only`` are the lower bound: just the FFTs one hop needs.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.fft
from edge_agent.kernels import fft
from edge_agent.kernels.engine import fft_length, fundamental, phase_spectra, phasors
from edge_agent.kernels.lines import (
    bearing_line_levels,
    eccentricity_sidebands,
    slip_from_eccentricity,
    slip_from_slot_harmonics,
)
from edge_agent.kernels.park import clarke, modulus_lines_db
from edge_agent.kernels.quality import detect_clipping
from edge_agent.kernels.spectrum import MAIN_LOBE_HALF_WIDTH, space_vector_power
from edge_agent.kernels.vi import vi_features
from edge_agent.kernels.waveform import waveform_stats

from benchmarks import numpy_baseline
from benchmarks import workloads as wl
from edge_agent import kernels
from edge_agent.features import MAX_HARMONIC, SUPPLY_BAND_HZ

HANN = MAIN_LOBE_HALF_WIDTH["hann"]
BH = MAIN_LOBE_HALF_WIDTH["blackmanharris"]


def timed(benchmark, fn, *args, **kwargs):
    """Call ``fn(*args, **kwargs)`` once untimed (numba compile or cache load, FFT plan,
    windows), then benchmark it; returns the result."""
    fn(*args, **kwargs)
    return benchmark(fn, *args, **kwargs)


@functools.cache
def short() -> tuple[np.ndarray, np.ndarray, float]:
    """Currents (3, n), voltages (3, n) and the supply frequency of the timed window."""
    w = wl.window(wl.TIMED)
    spec = phase_spectra(w.x, wl.FS)
    f = kernels.peak_frequency(spec.pos, spec.df, *SUPPLY_BAND_HZ)
    return w.x, w.v, f


@functools.cache
def long() -> tuple[np.ndarray, float, np.ndarray, float, float, float]:
    """``(z, fs_long, p, df, f, rotor_hz)`` of the timed window's long window."""
    w = wl.window(wl.TIMED)
    z = w.z
    p = space_vector_power(z)
    df = w.fs_long / z.shape[0]
    f = kernels.peak_frequency(p, df, 49.0, 51.0)
    slip = w.config.motor.rated_slip
    return z, w.fs_long, p, df, f, (1 - slip) * f / w.config.motor.pole_pairs


# --- short window ---------------------------------------------------------------------


@pytest.mark.benchmark(group="phase_spectra (3, 15000): two FFTs, split to 4.8 kHz")
@pytest.mark.parametrize("backend", fft.BACKENDS)
def test_phase_spectra(benchmark, backend):
    x, _, _ = short()
    spec = timed(benchmark, phase_spectra, x, wl.FS, fmax=MAX_HARMONIC * 120.0, backend=backend)
    ref = phase_spectra(x, wl.FS, fmax=MAX_HARMONIC * 120.0, backend="scipy")
    np.testing.assert_allclose(spec.phase, ref.phase, atol=1e-6 * ref.phase.max())


@pytest.mark.benchmark(group="phasors (6, 15000) at f")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_phasors(benchmark, impl):
    x, v, f = short()
    ch = np.concatenate([x, v])
    fn = phasors if impl == "kernels" else numpy_baseline.dft_phasors
    ph = timed(benchmark, fn, ch, wl.FS, f)
    np.testing.assert_allclose(ph, kernels.dft_phasors(ch, wl.FS, f), rtol=1e-9)


def numpy_fundamental(x, fs, f, v):
    """What :func:`fundamental` gives, in numpy: phasors, rms, the EPVA line at 2f."""
    ch = np.concatenate([x, v])
    return (
        numpy_baseline.dft_phasors(ch, fs, f),
        numpy_baseline.rms(ch),
        numpy_baseline.epva_line_db(x, fs, 2 * f),
    )


@pytest.mark.benchmark(group="fundamental (3 I + 3 V, 15000): phasors, rms, EPVA 2f line")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_fundamental(benchmark, impl):
    """The one pass at f that the short window makes, against its numpy twins."""
    x, v, f = short()
    fn = fundamental if impl == "kernels" else numpy_fundamental
    ph, rms, epva = timed(benchmark, fn, x, wl.FS, f, v)
    ch = np.concatenate([x, v])
    np.testing.assert_allclose(ph, kernels.dft_phasors(ch, wl.FS, f), rtol=1e-9)
    np.testing.assert_allclose(rms, numpy_baseline.rms(ch), rtol=1e-12)
    assert epva == pytest.approx(kernels.epva_line_db(x, wl.FS, 2 * f), abs=1e-6)


@pytest.mark.benchmark(group="waveform_stats (3, 15000)")
def test_waveform_stats(benchmark):
    x, _, _ = short()
    s = timed(benchmark, waveform_stats, x)
    np.testing.assert_allclose(s[:, 0], numpy_baseline.rms(x), rtol=1e-12)


@pytest.mark.benchmark(group="rms (3, 15000) voltages")
@pytest.mark.parametrize("impl", [kernels, numpy_baseline], ids=["kernels", "numpy"])
def test_rms(benchmark, impl):
    _, v, _ = short()
    r = timed(benchmark, impl.rms, v)
    np.testing.assert_allclose(r, numpy_baseline.rms(v), rtol=1e-12)


@pytest.mark.benchmark(group="thd (3 phases, 40 harmonics)")
@pytest.mark.parametrize("impl", [kernels, numpy_baseline], ids=["kernels", "numpy"])
def test_thd(benchmark, impl):
    x, _, f = short()
    spec = phase_spectra(x, wl.FS)
    t = timed(benchmark, impl.thd, spec.phase, spec.df, f, MAX_HARMONIC)
    np.testing.assert_allclose(t, kernels.thd(spec.phase, spec.df, f, MAX_HARMONIC), rtol=1e-9)


@pytest.mark.benchmark(group="epva_line_db (3, 15000) at 2f")
@pytest.mark.parametrize("impl", [kernels, numpy_baseline], ids=["kernels", "numpy"])
def test_epva_line_db(benchmark, impl):
    x, _, f = short()
    level = timed(benchmark, impl.epva_line_db, x, wl.FS, 2 * f)
    assert level == pytest.approx(kernels.epva_line_db(x, wl.FS, 2 * f), abs=1e-6)


@pytest.mark.benchmark(group="vi_features (3, 15000), 50 cycles")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_vi_features(benchmark, impl):
    x, v, f = short()
    fn = vi_features if impl == "kernels" else numpy_baseline._vi_features
    out = timed(benchmark, fn, v, x, wl.FS, f)
    np.testing.assert_allclose(out, vi_features(v, x, wl.FS, f), rtol=1e-6, atol=1e-9)


@pytest.mark.benchmark(group="detect_clipping, one hop (6, 7500)")
def test_detect_clipping(benchmark):
    """As the pipeline checks a hop: the newest columns of its float32 window, in place
    (here with the extremes found by the call)."""
    x, v, _ = short()
    window = np.concatenate([x, v]).astype(np.float32)
    start = window.shape[1] - wl.HOP
    counts = timed(benchmark, detect_clipping, window, start=start)
    assert not counts.any()


@pytest.mark.benchmark(group="slip_from_slot_harmonics (short spectrum)")
def test_slip_from_slot_harmonics(benchmark):
    x, _, f = short()
    motor = wl.window(wl.TIMED).config.motor
    spec = phase_spectra(x, wl.FS)
    args = (spec.pos, spec.df, f, motor.rotor_bars, motor.pole_pairs, 0.002, 0.06, HANN)
    s, _ = timed(benchmark, slip_from_slot_harmonics, *args)
    assert 0.002 <= s <= 0.06


# --- long window ----------------------------------------------------------------------


@pytest.mark.benchmark(group="long window: space vector of one hop (3, 7500), decimated by 7")
@pytest.mark.parametrize("how", ["SpaceVectorDecimator", "clarke+FirDecimator"])
def test_space_vector_decimation(benchmark, how):
    """The fused pass the pipeline uses, beside the two steps it replaced."""
    x, _, _ = short()
    hop = np.ascontiguousarray(x[:, : wl.HOP])
    if how == "SpaceVectorDecimator":
        dec = kernels.SpaceVectorDecimator(wl.FS, wl.DECIMATION)
        step = dec.process
    else:
        dec = kernels.FirDecimator(wl.FS, wl.DECIMATION, 2)

        def step(hop):
            ab = dec.process(clarke(hop))
            return ab[0] + 1j * ab[1]

    # Each call carries the filter state on, as the pipeline's does; the cost is the same.
    out = timed(benchmark, step, hop)
    assert out.dtype == np.complex128 and abs(out.shape[0] - wl.HOP / wl.DECIMATION) <= 1


@pytest.mark.benchmark(group="long window: space_vector_power (16384,)")
@pytest.mark.parametrize("backend", fft.BACKENDS)
def test_space_vector_power(benchmark, backend):
    z, *_ = long()
    p = timed(benchmark, space_vector_power, z, backend=backend)
    ref = np.abs(scipy.fft.fft(z * kernels.spectral_window("blackmanharris", z.size))) ** 2
    ref = ref[: z.size // 2 + 1] / kernels.spectral_window("blackmanharris", z.size).sum() ** 2
    np.testing.assert_allclose(p, ref, atol=1e-6 * ref.max())


@pytest.mark.benchmark(group="long window: modulus_lines_db at 2sf and f_r")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_modulus_lines_db(benchmark, impl):
    z, fs_long, _, _, f, rotor_hz = long()
    freqs = [2 * 0.04 * f, rotor_hz]
    if impl == "kernels":
        lines = timed(benchmark, modulus_lines_db, z, fs_long, freqs)
    else:
        lines = timed(benchmark, numpy_baseline._modulus_lines_db, np.abs(z), fs_long, freqs)
    np.testing.assert_allclose(lines, modulus_lines_db(z, fs_long, freqs), atol=1e-6)


@pytest.mark.benchmark(group="long window: line searches")
def test_brb_sidebands(benchmark):
    _, _, p, df, f, _ = long()
    s_lo = (2 * BH + 1.5) * df / (2 * f)  # as FeatureExtractor.long: clear of the main lobe
    brb = timed(benchmark, kernels.brb_sidebands, p, df, f, s_lo, 0.06, BH)
    assert brb.lsb_db < -60  # a healthy rotor: no sideband pair above the noise


@pytest.mark.benchmark(group="long window: line searches")
def test_slip_from_eccentricity(benchmark):
    _, _, p, df, f, _ = long()
    s_lo = (2 * BH + 1.5) * df / (2 * f)
    s, _ = timed(benchmark, slip_from_eccentricity, p, df, f, 2, s_lo, 0.06, BH)
    assert math.isnan(s) or s_lo <= s <= 0.06


@pytest.mark.benchmark(group="long window: line searches")
def test_eccentricity_sidebands(benchmark):
    _, _, p, df, f, rotor_hz = long()
    levels = timed(benchmark, eccentricity_sidebands, p, df, f, rotor_hz, BH)
    assert len(levels) == 4


@pytest.mark.benchmark(group="long window: line searches")
def test_bearing_line_levels(benchmark):
    _, _, p, df, f, rotor_hz = long()
    orders = wl.window(wl.TIMED).extractor.bearing
    levels, floors = timed(benchmark, bearing_line_levels, p, df, f, rotor_hz, orders, 2, BH, 32)
    assert levels.shape == floors.shape == (4,)


# --- the FFT-only lower bound ---------------------------------------------------------


def _fft_calls(backend: str, n_short: int, n_long: int):
    """The FFTs one hop needs, as edge-agent does them: a complex FFT of i_a + j·i_b and a
    real FFT of i_c at the padded short length, and a complex FFT of the long window."""
    plans = [fft.plan(n_short, "c2c", backend), fft.plan(n_short, "r2c", backend)]
    plans.append(fft.plan(n_long, "c2c", backend))
    for p in plans:
        p.input[:] = 1.0

    def run():
        for p in plans:
            p()

    return run


@pytest.mark.benchmark(group="fft: one transform of a default window")
@pytest.mark.parametrize("way", ["fftw", "scipy", "scipy-one-call"])
@pytest.mark.parametrize("n, kind", [(15360, "c2c"), (15360, "r2c"), (16384, "c2c")])
def test_fft_transform(benchmark, n, kind, way):
    """Each transform of the default windows alone: FFTW, scipy as edge-agent calls it (four
    quarter-length transforms in one call, then a radix-4 pass: kernels.fft), and scipy's
    one call of length n, the same transform."""
    plan = fft.plan(n, kind, way.removesuffix("-one-call"))
    plan.input[:] = np.random.default_rng(5).normal(size=n)
    ref = np.fft.fft(plan.input.astype(np.complex128))[: n if kind == "c2c" else n // 2 + 1]
    if way == "scipy-one-call":
        one = scipy.fft.fft if kind == "c2c" else scipy.fft.rfft
        run = functools.partial(one, plan.input, workers=1)
    else:
        run = plan
    # Checked before the timing: FFTW may overwrite its input at each call.
    assert np.abs(run() - ref).max() < 5e-7 * np.abs(ref).max()
    timed(benchmark, run)


@pytest.mark.benchmark(group="fft-only: the FFTs of one hop")
@pytest.mark.parametrize("backend", fft.BACKENDS)
def test_fft_only_lower_bound(benchmark, backend):
    z, *_ = long()
    timed(benchmark, _fft_calls(backend, fft_length(wl.LENGTH), z.shape[0]))
    if benchmark.stats is not None:
        benchmark.extra_info["realtime_factor"] = round(wl.HOP_S / benchmark.stats.stats.mean, 1)


@pytest.mark.benchmark(group="fft-only: the FFTs of one hop")
def test_fft_only_one_real_fft_per_channel(benchmark):
    """The issue's yardstick: six float64 15000-point real FFTs (3 I + 3 V) and one complex
    FFT of a 8 s long window at 2142.86 Hz (17143 points), with scipy."""
    x, v, _ = short()
    ch = np.concatenate([x, v])
    zl = np.ones(round(8.0 * wl.FS / wl.DECIMATION), dtype=np.complex128)

    def run():
        scipy.fft.rfft(ch, axis=-1)
        scipy.fft.fft(zl)

    timed(benchmark, run)
    if benchmark.stats is not None:
        benchmark.extra_info["realtime_factor"] = round(wl.HOP_S / benchmark.stats.stats.mean, 1)
