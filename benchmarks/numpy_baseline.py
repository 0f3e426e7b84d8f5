"""The short-window features in plain numpy/scipy: the baseline the numba kernels must beat.

What a careful numpy user would write, with the kernels' signatures and scaling so the
benchmarks can swap one module for the other and check that the answers agree. Windows
are cached as the kernels cache theirs, so the comparison is of the arithmetic alone.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft

from edge_agent.features import EPVA_FLOOR_DB, MAX_HARMONIC, SUPPLY_BAND_HZ

_A = np.exp(2j * np.pi / 3)
_FORTESCUE = np.array([[1, 1, 1], [1, _A, _A * _A], [1, _A * _A, _A]]) / 3.0


@functools.cache
def hann(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n``."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def power_spectrum(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed one-sided power spectrum, one ``scipy.fft.rfft`` per phase."""
    n = x.shape[-1]
    w = hann(n)
    scale = (2.0 / w.sum()) ** 2
    p = np.stack([np.abs(scipy.fft.rfft(row * w)) ** 2 * scale for row in x])
    return np.arange(n // 2 + 1) * (fs / n), p


def rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(x**2, axis=-1))


def dft_phasors(x: np.ndarray, fs: float, f: float) -> np.ndarray:
    """Peak-amplitude phasors at ``f`` Hz by a Hann-windowed DFT against ``np.exp``."""
    n = x.shape[-1]
    w = hann(n)
    return (x * w) @ np.exp(-2j * np.pi * (f / fs) * np.arange(n)) * (2.0 / w.sum())


def sequence_components(phasors: np.ndarray) -> tuple[complex, complex, complex]:
    i0, i1, i2 = _FORTESCUE @ phasors
    return complex(i0), complex(i1), complex(i2)


def thd(p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2) -> np.ndarray:
    """THD of each row of ``p`` from band sums over the main lobes at 1..n_harmonics · f."""
    k0 = np.rint(np.arange(1, n_harmonics + 1) * (f / df)).astype(np.intp)
    bins = np.clip(k0[:, None] + np.arange(-half_width, half_width + 1), 0, p.shape[-1] - 1)
    bands = p[:, bins].sum(axis=-1)  # (rows, harmonics)
    return np.sqrt(bands[:, 1:].sum(axis=-1) / bands[:, 0])


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Line at ``f_line`` in the Park's vector modulus, dB re its Hann-weighted mean."""
    n = x.shape[-1]
    w = hann(n)
    d = math.sqrt(2 / 3) * x[0] - (x[1] + x[2]) / math.sqrt(6)
    q = (x[1] - x[2]) / math.sqrt(2)
    m = np.hypot(d, q)
    wsum = w.sum()
    dc = np.dot(w, m) / wsum
    amp = abs(np.dot(w * (m - dc), np.exp(-2j * np.pi * (f_line / fs) * np.arange(n))))
    return 20.0 * math.log10(max(2.0 * amp / wsum / dc, 1e-15))


def peak_frequency(p: np.ndarray, df: float, fmin: float, fmax: float) -> float:
    lo = max(1, math.ceil(fmin / df))
    hi = min(p.shape[0] - 1, math.floor(fmax / df) + 1)
    k = lo + int(np.argmax(p[lo:hi]))
    a, b, c = np.log(np.maximum(p[k - 1 : k + 2], 1e-300))
    den = a - 2 * b + c
    delta = 0.0 if den >= 0 else min(0.5, max(-0.5, 0.5 * (a - c) / den))
    return (k + delta) * df


def short_features(x: np.ndarray, fs: float) -> dict[str, float | None]:
    """The short-window features of ``edge_agent.features.short_features`` (supply
    frequency detected), for a window ``x`` of shape (3, n) in A."""
    df = fs / x.shape[-1]
    _, p = power_spectrum(x, fs)
    f = peak_frequency(p.sum(0), df, SUPPLY_BAND_HZ[0], min(SUPPLY_BAND_HZ[1], fs / 2.5))
    r = rms(x)
    _, i1, i2 = sequence_components(dft_phasors(x, fs, f))
    n_harm = min(MAX_HARMONIC, int((p.shape[1] - 3) * df / f))
    t = thd(p, df, f, n_harm)
    return {
        "supply_hz": f,
        "rms_a": float(r[0]),
        "rms_b": float(r[1]),
        "rms_c": float(r[2]),
        "i1": abs(i1) / math.sqrt(2),
        "i2": abs(i2) / math.sqrt(2),
        "i2_i1": abs(i2) / abs(i1),
        "thd_a": float(t[0]),
        "thd_b": float(t[1]),
        "thd_c": float(t[2]),
        "epva_2f_db": max(EPVA_FLOOR_DB, epva_line_db(x, fs, 2 * f)),
    }
