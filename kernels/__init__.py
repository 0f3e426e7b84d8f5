"""The compiled core: pure functions on numpy arrays, jitted with numba.

Installed as ``edge_agent.kernels``. No I/O, no config objects, no logging, and never an
import of ``edge_agent``: everything a kernel needs arrives as an argument. Each public
function validates its arguments in plain Python and calls an ``@njit`` twin that does the
arithmetic; ``tests/naive.py`` holds a slow reference for each.
"""

from __future__ import annotations

from edge_agent.kernels.decimate import FirDecimator, SpaceVectorDecimator
from edge_agent.kernels.engine import fundamental, phase_spectra, phasors
from edge_agent.kernels.park import epva_line_db
from edge_agent.kernels.power import power_quantities
from edge_agent.kernels.quality import detect_clipping, fill_gaps
from edge_agent.kernels.sequence import dft_phasors, sequence_components
from edge_agent.kernels.sidebands import BrbResult, brb_sidebands
from edge_agent.kernels.spectrum import (
    band_power,
    harmonics,
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
    "SpaceVectorDecimator",
    "band_power",
    "brb_sidebands",
    "detect_clipping",
    "dft_phasors",
    "epva_line_db",
    "fill_gaps",
    "fundamental",
    "harmonics",
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
    """Compile (or load from the cache) every kernel the pipeline calls, for float32 and float64.

    Call before taking live data so that the first window is not late by a compile. Also
    plans the FFTs of these small test lengths (the real lengths plan in microseconds).
    """
    import numpy as np
    from edge_agent.kernels.bearing import bearing_orders
    from edge_agent.kernels.lines import (
        bearing_line_levels,
        eccentricity_sidebands,
        slip_from_eccentricity,
        slip_from_slot_harmonics,
    )
    from edge_agent.kernels.park import clarke, modulus_lines_db, park_modulus
    from edge_agent.kernels.power import power_from_phasors
    from edge_agent.kernels.spectrum import space_vector_power

    # Long enough (8000 samples, spectra of 8192) for the scipy backend's four-step FFT
    # (at least fft.FOUR_STEP_MIN points), so its join compiles here too.
    fs, n = 2000.0, 8000
    t = np.arange(n) / fs
    x64 = np.stack([np.sin(2 * np.pi * 50 * t - k * 2 * np.pi / 3) for k in range(3)])
    x64 = x64 + 0.01 * np.cos(2 * np.pi * 97 * t)
    df = fs / n
    x = x64
    _freqs, p = power_spectrum(x, fs)
    f = peak_frequency(p.sum(axis=0), df, 10.0, 100.0)
    thd(p, df, f, 5)
    sequence_components(dft_phasors(x, fs, f))
    ph = phasors(x, fs, f)
    power_from_phasors(ph, ph)
    fill_gaps(x, 2)
    detect_clipping(x)
    # The pipeline checks each hop for clipping where it lies in its float32 window (the
    # last columns), and decimates the space vector of a hop of frames (transposed: F
    # order; a slice of a block; or, after gap filling, C order).
    window = np.empty((3, 2 * n), dtype=np.float32)
    window[:, n:] = x
    tail = window[:, n:]
    detect_clipping(window, start=n, extremes=(tail.max(axis=1), tail.min(axis=1)))
    frames = np.ascontiguousarray(x.T)
    for hop in (frames.T, np.ascontiguousarray(frames.T)[:, : n // 2], x):
        SpaceVectorDecimator(fs, 2).process(hop)
    power_quantities(x, x, fs, f)
    modulus_lines_db(park_modulus(x), fs, [3.0])
    # The pipeline holds its short window in float32: the kernels that read it compile
    # for float32 too, here rather than at the first window.
    for x in (x64, x64.astype(np.float32)):
        spec = phase_spectra(x, fs)
        fundamental(x, fs, f, x)  # (voltages or none: the same signature)
        rms(x)
        waveform_stats(x)
        epva_line_db(x, fs, 2 * f)
        vi_features(x, x, fs, f)
        slip_from_slot_harmonics(spec.pos, spec.df, f, 28, 2, 0.002, 0.06, 2)
    x = x64
    ab = clarke(x)
    z = ab[0] + 1j * ab[1]
    pz = space_vector_power(z)
    modulus_lines_db(z, fs, [3.0, 24.0])
    brb_sidebands(pz, df, f, 0.05, 0.1, 4)
    slip_from_eccentricity(pz, df, f, 2, 0.05, 0.1, 4)
    eccentricity_sidebands(pz, df, f, 24.0, 4)
    bearing_line_levels(pz, df, f, 24.0, bearing_orders(9, 7.9, 34.5, 0.0), 2, 4, 32)
