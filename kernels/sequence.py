"""Fundamental phasors by a windowed single-frequency DFT, and symmetrical components.

A phasor needs one DFT bin at the exact supply frequency, not a whole FFT: a Hann-windowed
sum at ``f`` costs one complex multiply-add per sample and has no scalloping loss because
the frequency need not fall on a bin.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.spectrum import spectral_window

_A = cmath.exp(2j * math.pi / 3)


@jit
def _dft_phasors(x, w, f_over_fs, out):
    n = x.shape[1]
    step = complex(math.cos(2 * math.pi * f_over_fs), -math.sin(2 * math.pi * f_over_fs))
    wsum = 0.0
    for i in range(n):
        wsum += w[i]
    for c in range(x.shape[0]):
        acc = 0j
        rot = 1.0 + 0j
        for i in range(n):
            acc += w[i] * x[c, i] * rot
            rot *= step
            if (i & 1023) == 1023:
                # Re-anchor the rotator so rounding cannot build up over long windows.
                ang = -2 * math.pi * f_over_fs * (i + 1)
                rot = complex(math.cos(ang), math.sin(ang))
        out[c] = acc * (2.0 / wsum)
    return out


def dft_phasors(x: np.ndarray, fs: float, f: float, *, window: str = "hann") -> np.ndarray:
    """Complex peak-amplitude phasor of each row of ``x`` at ``f`` Hz.

    ``x`` has shape (channels, n). For ``x[c] = A·cos(2π f t + φ)`` the result is
    ``A·e^{jφ}`` (t = 0 at the first sample). Divide the magnitude by √2 for rms.
    """
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
    if not 0 < f < fs / 2:
        raise ValueError(f"{f=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    w = spectral_window(window, x.shape[1])
    return _dft_phasors(x, w, f / fs, np.empty(x.shape[0], dtype=np.complex128))


@jit
def _sequence(pa, pb, pc, a):
    a2 = a * a
    i0 = (pa + pb + pc) / 3.0
    i1 = (pa + a * pb + a2 * pc) / 3.0
    i2 = (pa + a2 * pb + a * pc) / 3.0
    return i0, i1, i2


def sequence_components(phasors: np.ndarray) -> tuple[complex, complex, complex]:
    """Zero-, positive- and negative-sequence components (Fortescue) of phasors (a, b, c).

    A balanced set ``1∠0°, 1∠-120°, 1∠+120°`` gives ``(0, 1, 0)``; swapping b and c gives
    ``(0, 0, 1)``.
    """
    ph = np.asarray(phasors, dtype=np.complex128).ravel()
    if ph.shape != (3,):
        raise ValueError(f"phasors must hold 3 values (a, b, c), got shape {np.shape(phasors)}")
    return _sequence(ph[0], ph[1], ph[2], _A)
