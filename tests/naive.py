"""Slow, obviously-correct references for every kernel, to compare the fast ones with.

Plain loops and numpy, written from the textbook definitions, no cleverness.
"""

from __future__ import annotations

import cmath
import math

import numpy as np


def window(name: str, n: int) -> np.ndarray:
    if name == "hann":
        return np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / n) for i in range(n)])
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    return np.array(
        [
            a[0]
            - a[1] * math.cos(2 * math.pi * i / n)
            + a[2] * math.cos(4 * math.pi * i / n)
            - a[3] * math.cos(6 * math.pi * i / n)
            for i in range(n)
        ]
    )


def power_spectrum(x: np.ndarray, fs: float, window_name: str = "hann") -> np.ndarray:
    """|DFT|² scaled so a sine of amplitude A on a bin reads A², by the DFT definition."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    w = window(window_name, n)
    k = np.arange(n // 2 + 1)[:, None]
    basis = np.exp(-2j * np.pi * k * np.arange(n)[None, :] / n)
    spec = (x * w) @ basis.T
    return np.abs(spec) ** 2 * (2.0 / w.sum()) ** 2


def peak_frequency(p: np.ndarray, df: float, fmin: float, fmax: float) -> float:
    lo = max(1, math.ceil(fmin / df))
    hi = min(len(p) - 1, math.floor(fmax / df) + 1)
    k = lo + int(np.argmax(p[lo:hi]))
    a, b, c = (math.log(max(v, 1e-300)) for v in p[k - 1 : k + 2])
    den = a - 2 * b + c
    delta = 0.0 if den >= 0 else min(0.5, max(-0.5, 0.5 * (a - c) / den))
    return (k + delta) * df


def band_power(p: np.ndarray, df: float, f: float, half_width: int) -> float:
    k0 = round(f / df)
    return float(
        sum(p[k] for k in range(max(0, k0 - half_width), min(len(p) - 1, k0 + half_width) + 1))
    )


def thd(p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2) -> np.ndarray:
    p = np.atleast_2d(p)
    out = []
    for row in p:
        fund = band_power(row, df, f, half_width)
        harm = sum(band_power(row, df, h * f, half_width) for h in range(2, n_harmonics + 1))
        out.append(math.sqrt(harm / fund))
    return np.array(out)


def dft_phasors(x: np.ndarray, fs: float, f: float) -> np.ndarray:
    x = np.atleast_2d(x)
    n = x.shape[1]
    w = window("hann", n)
    out = []
    for row in x:
        acc = sum(w[i] * row[i] * cmath.exp(-2j * math.pi * f * i / fs) for i in range(n))
        out.append(acc * 2 / w.sum())
    return np.array(out)


def sequence_components(ph: np.ndarray) -> tuple[complex, complex, complex]:
    a = cmath.exp(2j * math.pi / 3)
    m = np.array([[1, 1, 1], [1, a, a * a], [1, a * a, a]]) / 3
    i0, i1, i2 = m @ np.asarray(ph)
    return complex(i0), complex(i1), complex(i2)


def rms(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    return np.array([math.sqrt(sum(v * v for v in row) / len(row)) for row in x])


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Park's vector modulus, its windowed mean, and its line at f_line, by definition."""
    ia, ib, ic = np.asarray(x, dtype=np.float64)
    i_d = math.sqrt(2 / 3) * ia - ib / math.sqrt(6) - ic / math.sqrt(6)
    i_q = (ib - ic) / math.sqrt(2)
    m = np.hypot(i_d, i_q)
    w = window("hann", len(m))
    dc = float(np.sum(w * m) / w.sum())
    t = np.arange(len(m)) / fs
    amp = abs(np.sum(w * (m - dc) * np.exp(-2j * np.pi * f_line * t))) * 2 / w.sum()
    return 20 * math.log10(max(amp / dc, 1e-15))


def brb_sidebands(p, df, f, s_lo, s_hi, half_width=4):
    """Exhaustive pair search, as the docstring of kernels.sidebands describes."""
    kf = f / df
    fund = band_power(p, df, f, half_width)
    lo = max(1, math.ceil(f * (1 - 2 * s_hi) / df))
    hi = math.floor(f * (1 - 2 * s_lo) / df)
    scores = {}
    for k in range(lo, hi + 1):
        mirror = round(2 * kf - k)
        if mirror < len(p) and p[k] > p[k - 1] and p[k] >= p[k + 1]:
            scores[k] = p[k] + p[mirror]
    if not scores:
        scores = {k: p[k] + p[round(2 * kf - k)] for k in range(lo, hi + 1)}
    best = max(scores, key=lambda k: (scores[k], -k))
    k_lsb = peak_frequency(p, 1.0, max(best - 1, 1), min(best + 1, len(p) - 2))
    slip = (kf - k_lsb) / (2 * kf)
    lsb = band_power(p, df, k_lsb * df, half_width)
    usb = band_power(p, df, f * (1 + 2 * slip), half_width)
    floor = (
        float(np.median(p[lo : hi + 1]))
        if (hi - lo) % 2 == 0
        else float(np.sort(p[lo : hi + 1])[(hi - lo + 1) // 2])
    )
    floor *= 2 * half_width + 1
    return (
        slip,
        10 * math.log10(lsb / fund),
        10 * math.log10(usb / fund),
        10 * math.log10(lsb / floor),
    )


def fir_decimate(x: np.ndarray, taps: np.ndarray, factor: int) -> np.ndarray:
    """Full convolution from zero initial state, every factor-th output from the first."""
    x = np.atleast_2d(x)
    return np.array([np.convolve(row, taps)[: row.shape[0]][::factor] for row in x])


def space_vector_spectrum(x: np.ndarray, fs: float, window_name: str = "blackmanharris"):
    """Clarke transform sample by sample, then the DFT by definition at bins 0 .. n//2."""
    ia, ib, ic = np.asarray(x, dtype=np.float64)
    z = np.array(
        [
            complex(2 / 3 * (a - (b + c) / 2), (b - c) / math.sqrt(3))
            for a, b, c in zip(ia, ib, ic, strict=True)
        ]
    )
    n = len(z)
    w = window(window_name, n)
    out = []
    for k in range(n // 2 + 1):
        acc = sum(w[i] * z[i] * cmath.exp(-2j * math.pi * k * i / n) for i in range(n))
        out.append(abs(acc) ** 2 / w.sum() ** 2)
    return np.array(out)
