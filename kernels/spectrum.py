"""Windowed power spectra and what is read off them: peaks, band powers, THD.

Scaling: :func:`power_spectrum` returns ``|X_k|² · (2 / Σw)²``, so a sine of amplitude A
exactly on a bin shows ``A²`` in that bin, and the sum over a line's main lobe is
``A² · ENBW`` (in bins) wherever the line falls between bins. Levels here are therefore
band powers over the main lobe: free of scalloping loss, and ratios of two lines measured
with the same window need no ENBW correction at all.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
from edge_agent.kernels import fft
from edge_agent.kernels._flags import jit

# Half-width of the main lobe, in bins, of each window (Hann ±2, 4-term Blackman-Harris ±4).
MAIN_LOBE_HALF_WIDTH = {"hann": 2, "blackmanharris": 4}


@functools.lru_cache(maxsize=32)
def _window(name: str, n: int) -> np.ndarray:
    k = np.arange(n) / n  # periodic ("DFT-even") windows, the right kind for spectra
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * k)
    elif name == "blackmanharris":
        a = (0.35875, 0.48829, 0.14128, 0.01168)
        w = a[0] - a[1] * np.cos(2 * np.pi * k) + a[2] * np.cos(4 * np.pi * k)
        w -= a[3] * np.cos(6 * np.pi * k)
    else:
        raise ValueError(f"window={name!r} is not one of {sorted(MAIN_LOBE_HALF_WIDTH)}")
    w.setflags(write=False)
    return w


def spectral_window(name: str, n: int) -> np.ndarray:
    """The periodic window ``name`` ('hann' or 'blackmanharris') of length ``n`` (read-only)."""
    if n < 2:
        raise ValueError(f"{n=} must be at least 2")
    return _window(name, int(n))


def power_spectrum(
    x: np.ndarray, fs: float, *, window: str = "hann", nfft: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectrum of ``x`` along its last axis.

    Parameters
    ----------
    x : array, shape (n,) or (channels, n)
    fs : sample rate, Hz
    window : 'hann' (default) or 'blackmanharris' (for lines within a few Hz of a strong one)
    nfft : FFT length (zero-padded); ``None`` means ``n``.

    Returns ``(freqs, p)``: bin frequencies in Hz and powers scaled so that a sine of
    amplitude A on a bin reads A². Example: a 10 A-peak 50 Hz current sampled 1 s at
    1 kHz gives ``p[50] == 100``.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if fs <= 0:
        raise ValueError(f"{fs=} must be positive")
    nfft = n if nfft is None else int(nfft)
    if nfft < n:
        raise ValueError(f"{nfft=} must be at least the window length {n}")
    w = spectral_window(window, n)
    spec = scipy.fft.rfft(x * w, n=nfft, axis=-1)
    p = spec.real**2 + spec.imag**2
    p *= (2.0 / w.sum()) ** 2
    return np.arange(p.shape[-1]) * (fs / nfft), p


@functools.lru_cache(maxsize=32)
def window_sum(name: str, n: int) -> float:
    """Σw of :func:`spectral_window` ``name`` of length ``n``."""
    return float(spectral_window(name, n).sum())


@jit
def _pack_windowed(z, w, buf):
    for i in range(z.shape[0]):
        buf[i] = complex(z[i].real * w[i], z[i].imag * w[i])


@jit
def _half_power(y, scale, out):
    for k in range(out.shape[0]):
        re = float(y[k].real)
        im = float(y[k].imag)
        out[k] = (re * re + im * im) * scale
    return out


def space_vector_power(
    z: np.ndarray, *, window: str = "blackmanharris", backend: str | None = None
) -> np.ndarray:
    """Power spectrum, bins 0 .. n//2 (positive frequencies), of a complex signal ``z``.

    For the space vector z = i_α + j·i_β of a balanced set of amplitude A the line at +f
    reads ``A²`` (a line of complex amplitude A reads ``A²``). One single-precision complex
    FFT (:mod:`~edge_agent.kernels.fft`, ``backend`` as there) of length n.
    """
    z = np.asarray(z)
    if z.ndim != 1 or not np.iscomplexobj(z):
        raise ValueError(f"z must be a 1-D complex array, got {z.dtype} of shape {z.shape}")
    n = z.shape[0]
    plan = fft.plan(n, "c2c", backend)
    _pack_windowed(z, spectral_window(window, n), plan.input)
    scale = (1.0 / window_sum(window, n)) ** 2
    return _half_power(plan(), scale, np.empty(n // 2 + 1))


def space_vector_spectrum(
    x: np.ndarray, fs: float, *, window: str = "blackmanharris", backend: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum, positive frequencies only, of the current space vector i_α + j·i_β.

    ``x`` holds phases a, b, c, shape (3, n). With the amplitude-invariant Clarke transform
    a balanced set of amplitude A reads ``A²`` at +f; negative-sequence components land at
    negative frequencies and are left out, so one complex FFT separates the sequences and
    rotor sidebands, which rotate forwards, are not smeared by a changing unbalance.
    Returns ``(freqs, p)`` for bins 0 .. n//2, from :func:`space_vector_power`.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    n = x.shape[1]
    alpha = (2.0 / 3.0) * (x[0] - 0.5 * (x[1] + x[2]))
    beta = (x[1] - x[2]) / np.sqrt(3.0)
    p = space_vector_power(alpha + 1j * beta, window=window, backend=backend)
    return np.arange(p.shape[0]) * (fs / n), p


@jit
def _peak_bin(p, lo, hi):
    """Fractional bin of the largest value in p[lo:hi], by a parabola through log powers.

    NaN bins are passed over, and a NaN neighbour counts as empty; NaN if all are NaN."""
    k = -1
    best = -math.inf
    for i in range(lo, hi):
        if p[i] > best:
            best = p[i]
            k = i
    if k < 0:
        return math.nan
    if k <= 0 or k >= p.shape[0] - 1 or best <= 0.0:
        return float(k)
    tiny = 1e-300
    a = math.log(p[k - 1]) if p[k - 1] > tiny else math.log(tiny)
    b = math.log(best)
    c = math.log(p[k + 1]) if p[k + 1] > tiny else math.log(tiny)
    den = a - 2.0 * b + c
    if den >= 0.0:
        return float(k)
    delta = 0.5 * (a - c) / den
    return k + min(0.5, max(-0.5, delta))


def peak_frequency(p: np.ndarray, df: float, fmin: float, fmax: float) -> float:
    """Frequency (Hz) of the strongest line of power spectrum ``p`` within [fmin, fmax].

    The bins searched run from the one nearest ``fmin`` to the one nearest ``fmax``: a
    line anywhere in the band has its largest bin among them, even at the band's very
    edge (the search reaches up to half a bin beyond it). Interpolated between bins on the
    logarithm of the power, which is exact for a Gaussian main lobe and within a few
    hundredths of a bin for Hann and Blackman-Harris.
    """
    p = np.ascontiguousarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {p.shape}")
    lo = max(1, int(math.floor(fmin / df + 0.5)))
    hi = min(p.shape[0] - 1, int(math.floor(fmax / df + 0.5)) + 1)
    if hi <= lo:
        raise ValueError(f"[{fmin=}, {fmax=}] Hz holds no bin of a spectrum with {df=} Hz")
    return _peak_bin(p, lo, hi) * df


@jit
def _band_power(p, center, half_width):
    k0 = int(round(center))
    lo = max(0, k0 - half_width)
    hi = min(p.shape[0] - 1, k0 + half_width)
    total = 0.0
    for k in range(lo, hi + 1):
        total += p[k]
    return total


def band_power(p: np.ndarray, df: float, f: float, half_width: int) -> float:
    """Sum of ``p`` over the bins within ``half_width`` of the bin nearest ``f`` Hz."""
    p = np.ascontiguousarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {p.shape}")
    return _band_power(p, f / df, int(half_width))


@jit
def _harmonics(p, df, f, n_harmonics, half_width, thd, ratios):
    for c in range(p.shape[0]):
        fund = _band_power(p[c], f / df, half_width)
        ok = fund > 0.0
        ratios[c, 0] = 1.0 if ok else math.nan
        harm = 0.0
        for h in range(2, n_harmonics + 1):
            ph = _band_power(p[c], h * f / df, half_width)
            harm += ph
            ratios[c, h - 1] = math.sqrt(ph / fund) if ok else math.nan
        thd[c] = math.sqrt(harm / fund) if ok else math.nan


def harmonics(
    p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """THD and each harmonic's amplitude ratio to the fundamental, per row of power spectra.

    Returns ``(thd, ratios)``: ``thd`` of shape (rows,) as :func:`thd`, and ``ratios`` of
    shape (rows, n_harmonics) with ``ratios[:, h - 1] = sqrt(P_h / P_1)`` (so column 0 is
    1), each ``P_h`` the band power over the main lobe (``half_width`` bins) at ``h·f``.
    NaN where the fundamental's band is empty. Harmonics must lie below the last bin.
    """
    p = np.ascontiguousarray(np.atleast_2d(p), dtype=np.float64)
    if n_harmonics < 2:
        raise ValueError(f"{n_harmonics=} must be at least 2")
    if (n_harmonics * f) / df + half_width >= p.shape[1]:
        raise ValueError(
            f"harmonic {n_harmonics} of {f:g} Hz lies beyond the spectrum ({p.shape[1]} bins of "
            f"{df:g} Hz)"
        )
    thd = np.empty(p.shape[0])
    ratios = np.empty((p.shape[0], int(n_harmonics)))
    _harmonics(p, float(df), float(f), int(n_harmonics), int(half_width), thd, ratios)
    return thd, ratios


def thd(p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2) -> np.ndarray:
    """Total harmonic distortion, as a ratio, of each row of power spectra ``p``.

    ``sqrt(Σ_{h=2..n_harmonics} P_h) / sqrt(P_1)`` with each ``P_h`` the band power over
    the main lobe (``half_width`` bins) at ``h·f``. Harmonics must lie below the last bin.
    """
    return harmonics(p, df, f, n_harmonics, half_width)[0]
