"""The compiled core: pure functions on numpy arrays, jitted with numba.

Installed as ``edge_agent.kernels``. No I/O, no config objects, no logging, and never an
import of ``edge_agent``: everything a kernel needs arrives as an argument. Each public
function validates its arguments in plain Python and calls an ``@njit`` twin that does the
arithmetic; ``tests/naive.py`` holds a slow reference for each.
"""

from __future__ import annotations

from edge_agent.kernels.decimate import FirDecimator
from edge_agent.kernels.engine import phase_spectra, phasors
from edge_agent.kernels.park import epva_line_db
from edge_agent.kernels.power import power_quantities
from edge_agent.kernels.quality import detect_clipping, fill_gaps
from edge_agent.kernels.sequence import dft_phasors, sequence_components
from edge_agent.kernels.sidebands import BrbResult, brb_sidebands
from edge_agent.kernels.spectrum import (
    band_power,
    peak_frequency,
    power_spectrum,
    space_vector_spectrum,
    spectral_window,
    thd,
)
from edge_agent.kernels.stats import rms
from edge_agent.kernels.vi import vi_features
from edge_agent.kernels.waveform import waveform_stats

__all__ = [
    "BrbResult",
    "FirDecimator",
    "band_power",
    "brb_sidebands",
    "detect_clipping",
    "dft_phasors",
    "epva_line_db",
    "fill_gaps",
    "peak_frequency",
    "phase_spectra",
    "phasors",
    "power_quantities",
    "power_spectrum",
    "rms",
    "sequence_components",
    "space_vector_spectrum",
    "spectral_window",
    "thd",
    "vi_features",
    "warm_up",
    "waveform_stats",
]


def warm_up() -> None:
    """Compile (or load from the cache) every kernel for float64 input.

    Call before taking live data so that the first window is not late by a compile.
    """
    import numpy as np

    fs, n = 1000.0, 1000
    t = np.arange(n) / fs
    x = np.stack([np.sin(2 * np.pi * 50 * t + k) for k in range(3)])
    _freqs, p = power_spectrum(x, fs)
    f = peak_frequency(p.sum(axis=0), fs / n, 10.0, 100.0)
    rms(x)
    thd(p, fs / n, f, 5)
    sequence_components(dft_phasors(x, fs, f))
    epva_line_db(x, fs, 2 * f)
    brb_sidebands(p.sum(axis=0), fs / n, f, 0.1, 0.2)
    FirDecimator(fs, 2, 3).process(x)
    phase_spectra(x, fs)
    phasors(x, fs, f)
    waveform_stats(x)
    fill_gaps(x, 2)
    detect_clipping(x)
    power_quantities(x, x, fs, f)
    vi_features(x, x, fs, f)
