"""Deterministic, seeded workloads, built once per session and shared by the benchmarks.

Everything comes from :mod:`edge_agent.simulate` with a fixed seed and the default
configuration: the default nameplate (4-pole, 1440 rpm at 50 Hz, 10 A) at 80 % load,
sampled at 15 kS/s, windows of 1 s every 0.5 s and an 8 s long window decimated by 7.
CT gains are drawn within ±1 %, as ``edge-agent simulate`` does by default: with
perfectly matched CTs the Park's vector 2f line falls to the -80 dB floor, which the
bundled model has never seen, and every window would score as anomalous.
"""

from __future__ import annotations

import functools

import numpy as np

from edge_agent import kernels
from edge_agent.config import Config
from edge_agent.features import MAX_HARMONIC, SUPPLY_BAND_HZ
from edge_agent.simulate import SimulationSpec, simulate

FS = 15000.0
SEED = 0
CT_MISMATCH = 0.01
SIGNAL_S = 30.0  # a whole number of supply cycles, so cycling through its hops is seamless
REPLAY_S = 60.0
CONFIG = Config()
HOP_S = CONFIG.windows.hop_s
LENGTH = round(CONFIG.windows.length_s * FS)
HOP = round(HOP_S * FS)
DECIMATION = max(1, int(FS // CONFIG.windows.long_fs))


def spec(duration_s: float) -> SimulationSpec:
    return SimulationSpec(fs=FS, duration_s=duration_s, ct_mismatch=CT_MISMATCH, seed=SEED)


@functools.cache
def samples() -> np.ndarray:
    """``SIGNAL_S`` of currents, shape (n, 3) in A, as a recording delivers them."""
    _, x = simulate(spec(SIGNAL_S), CONFIG.motor)
    return x


@functools.cache
def hops() -> tuple[np.ndarray, ...]:
    """``samples()`` cut into consecutive hops of shape (HOP, 3), for ``Pipeline.update``."""
    x = samples()
    return tuple(np.ascontiguousarray(x[i : i + HOP]) for i in range(0, x.shape[0], HOP))


@functools.cache
def short_window() -> np.ndarray:
    """One short window, shape (3, LENGTH), C-contiguous like the pipeline's."""
    return np.ascontiguousarray(samples()[:LENGTH].T)


@functools.cache
def short_params() -> tuple[np.ndarray, float, float, int]:
    """``(p, df, f, n_harmonics)`` of the short window, as ``short_features`` derives them."""
    x = short_window()
    df = FS / x.shape[1]
    _, p = kernels.power_spectrum(x, FS)
    f = kernels.peak_frequency(p.sum(0), df, SUPPLY_BAND_HZ[0], min(SUPPLY_BAND_HZ[1], FS / 2.5))
    hw = kernels.spectrum.MAIN_LOBE_HALF_WIDTH["hann"]
    n_harm = min(MAX_HARMONIC, int((p.shape[1] - 1 - hw) * df / f))
    return p, df, f, n_harm


@functools.cache
def long_window() -> tuple[np.ndarray, float]:
    """The full long window ``(x, fs_long)``: x has shape (3, ~17143) at 2142.86 Hz."""
    dec = kernels.FirDecimator(FS, DECIMATION, 3)
    x = dec.process(np.ascontiguousarray(samples().T))
    n = round(CONFIG.windows.long_length_s * dec.fs_out)
    return np.ascontiguousarray(x[:, -n:]), dec.fs_out


@functools.cache
def brb_params() -> tuple[np.ndarray, float, float, float, float, int]:
    """``(p_sum, df, f, s_lo, s_hi, half_width)`` for the sideband search, as in
    ``edge_agent.features.rotor_features``."""
    x, fs_long = long_window()
    hw = kernels.spectrum.MAIN_LOBE_HALF_WIDTH["blackmanharris"]
    df = fs_long / x.shape[1]
    _, p_sum = kernels.space_vector_spectrum(x, fs_long, window="blackmanharris")
    _, _, f0, _ = short_params()
    f = kernels.peak_frequency(p_sum, df, f0 - 1.0, f0 + 1.0)
    slip = CONFIG.motor.rated_slip
    s_hi = min(0.25, 1.5 * slip)
    s_lo = max(0.05 * slip, (2 * hw + 1.5) * df / (2 * f))
    return p_sum, df, f, s_lo, s_hi, hw
