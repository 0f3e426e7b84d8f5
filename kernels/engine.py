"""Shared spectra of a three-phase window, computed with as few FFTs as possible.

Three real phase currents need no three real FFTs: one complex FFT of ``a + j·b`` holds
the spectra of a and b (split by conjugate symmetry), and one real FFT gives c. From the
three phase spectra a single pass forms everything the features read:

- per-phase power spectra (THD, harmonics),
- the positive-sequence spectrum, i.e. the space vector i_α + j·i_β at +f, and
- the negative-sequence spectrum, the space vector at -f.

Lengths are padded to a fast FFT size (15000 → 15360) and transforms run in single
precision: float32 keeps the spectral floor near -140 dB re the fundamental, far below
any line of interest, at about half the cost of float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft
from edge_agent.kernels import fft
from edge_agent.kernels._flags import jit, jit_sum
from edge_agent.kernels.spectrum import spectral_window, window_sum


class PhaseSpectra(NamedTuple):
    """Power spectra on bins 0 .. nfft//2 of spacing ``df`` Hz, in the A² scaling of
    :func:`~edge_agent.kernels.spectrum.power_spectrum` (a sine of amplitude A on a bin
    reads A²; a balanced set of amplitude A reads A² in ``pos``)."""

    phase: np.ndarray  # (3, nb) per phase a, b, c
    pos: np.ndarray  # (nb,) positive sequence (forward-rotating)
    neg: np.ndarray  # (nb,) negative sequence (backward-rotating)
    df: float


@jit
def _split(yf, yb, cf, scale, p0, p1, p2, pos, neg):
    # yf, yb, cf: float32 views of Y[k], Y[-k] (= Y[n-k]) and C[k] for k < nb, all read
    # forwards so the loop vectorises. Double precision from the first operation: numba's
    # float() of a float32 stays float32.
    h = math.sqrt(3.0) / 2.0
    s9 = scale / 9.0
    for k in range(p0.shape[0]):
        yr = np.float64(yf[2 * k])
        yi = np.float64(yf[2 * k + 1])
        mr = np.float64(yb[2 * k])
        mi = -np.float64(yb[2 * k + 1])  # conj(Y[-k])
        ar = 0.5 * (yr + mr)  # A = (Y[k] + conj Y[-k]) / 2
        ai = 0.5 * (yi + mi)
        br = 0.5 * (yi - mi)  # B = (Y[k] - conj Y[-k]) / 2j
        bi = -0.5 * (yr - mr)
        cr = np.float64(cf[2 * k])
        ci = np.float64(cf[2 * k + 1])
        p0[k] = (ar * ar + ai * ai) * scale
        p1[k] = (br * br + bi * bi) * scale
        p2[k] = (cr * cr + ci * ci) * scale
        # Z+ = (2/3)(A + a·B + a²·C), Z- = (2/3)(A* + a·B* + a²·C*), a = -1/2 + j·√3/2.
        # |Z|²/4 reads A² for a balanced set of amplitude A.
        pr = ar - 0.5 * (br + cr) - h * (bi - ci)
        pi_ = ai - 0.5 * (bi + ci) + h * (br - cr)
        nr = ar - 0.5 * (br + cr) + h * (bi - ci)
        ni = -ai + 0.5 * (bi + ci) + h * (br - cr)
        pos[k] = (pr * pr + pi_ * pi_) * s9
        neg[k] = (nr * nr + ni * ni) * s9


def fft_length(n: int) -> int:
    """A fast FFT length at or above ``n``: a multiple of 512 with only factors 2, 3, 5.

    scipy counts 15000 (2³·3·5⁴) as fast, yet 15360 (2¹⁰·3·5) is 25 % quicker here.
    """
    return scipy.fft.next_fast_len(-(-int(n) // 512) * 512, real=False)


@jit
def _pack_phases(x, w, ab, c):
    # ab = (a + j·b)·w and c·w in single precision, zero-padded: the FFT inputs, rewritten
    # whole each time (FFTW may overwrite its input).
    n = x.shape[1]
    for i in range(n):
        wi = w[i]
        ab[i] = complex(x[0, i] * wi, x[1, i] * wi)
        c[i] = x[2, i] * wi
    for i in range(n, ab.shape[0]):
        ab[i] = 0.0
        c[i] = 0.0


def phase_spectra(
    x: np.ndarray,
    fs: float,
    *,
    window: str = "hann",
    fmax: float | None = None,
    backend: str | None = None,
) -> PhaseSpectra:
    """Per-phase and sequence power spectra of three phase signals ``x`` (shape (3, n)).

    ``x`` in amperes (or volts); ``fs`` in Hz. The FFT length is :func:`fft_length` of
    ``n`` (zero-padded), so ``df = fs / nfft``. Two FFTs instead of three. ``fmax`` (Hz)
    limits the bins returned, and with them the work of splitting the spectra. ``backend``
    names the FFT library (:mod:`~edge_agent.kernels.fft`; default from ``EDGE_AGENT_FFT``).
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    if fs <= 0:
        raise ValueError(f"{fs=} must be positive")
    if fmax is not None and fmax <= 0:
        raise ValueError(f"{fmax=} must be positive")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    n = x.shape[1]
    nfft = fft_length(n)
    ab_plan = fft.plan(nfft, "c2c", backend)
    c_plan = fft.plan(nfft, "r2c", backend)
    _pack_phases(x, spectral_window(window, n), ab_plan.input, c_plan.input)
    y = ab_plan()
    c = c_plan()
    nb = nfft // 2 + 1
    if fmax is not None:
        nb = min(nb, int(math.ceil(fmax * nfft / fs)) + 1)
    phase = np.empty((3, nb))
    pos = np.empty(nb)
    neg = np.empty(nb)
    scale = (2.0 / window_sum(window, n)) ** 2
    y_neg = np.empty(nb, dtype=np.complex64)  # Y[-k] = Y[nfft - k]
    y_neg[0] = y[0]
    y_neg[1:] = y[nfft - 1 : nfft - nb : -1]
    _split(
        y[:nb].view(np.float32), y_neg.view(np.float32), c[:nb].view(np.float32), scale,
        phase[0], phase[1], phase[2], pos, neg,
    )  # fmt: skip
    return PhaseSpectra(phase, pos, neg, fs / nfft)


# Rotations e^{-j2πfi/fs} are built in blocks of this many samples: each entry is the
# product of two exponentials computed directly (block start, offset in the block), so no
# rounding builds up and no sample waits on the one before, as in a running product.
_BLOCK = 128


@jit
def _rotation_table(n, f_over_fs, w, table):
    """table[0] + j·table[1] = w[i]·e^{-j2π(f/fs)i}, i < n."""
    ir = np.empty(_BLOCK)
    ii = np.empty(_BLOCK)
    for k in range(_BLOCK):
        ang = -2.0 * math.pi * f_over_fs * k
        ir[k] = math.cos(ang)
        ii[k] = math.sin(ang)
    for b0 in range(0, n, _BLOCK):
        ang = -2.0 * math.pi * f_over_fs * b0
        orr = math.cos(ang)
        oi = math.sin(ang)
        m = min(_BLOCK, n - b0)
        # Slices, not 2-D indexing: the loop then vectorises.
        wb = w[b0 : b0 + m]
        re = table[0, b0 : b0 + m]
        im = table[1, b0 : b0 + m]
        for k in range(m):
            re[k] = wb[k] * (orr * ir[k] - oi * ii[k])
            im[k] = wb[k] * (orr * ii[k] + oi * ir[k])
    return table


def rotation_table(n: int, f_over_fs: float, window: str = "hann") -> np.ndarray:
    """Windowed complex exponential of ``n`` samples at ``f_over_fs`` cycles per sample.

    Shape (2, n): real and imaginary parts of ``w[i]·exp(-j2π·f_over_fs·i)``, the table
    that :func:`phasors` and the Park's vector lines take dot products with.
    """
    w = spectral_window(window, n)
    return _rotation_table(int(n), float(f_over_fs), w, np.empty((2, int(n))))


@jit_sum
def _dots(x, table, wsum, out):
    n = x.shape[1]
    tr = table[0]
    ti = table[1]
    for ch in range(x.shape[0]):
        row = x[ch]
        re = 0.0
        im = 0.0
        for i in range(n):
            re += row[i] * tr[i]
            im += row[i] * ti[i]
        out[ch] = complex(re, im) * (2.0 / wsum)
    return out


def phasors(
    x: np.ndarray,
    fs: float,
    f: float,
    *,
    window: str = "hann",
    table: np.ndarray | None = None,
) -> np.ndarray:
    """Complex peak phasors of every row of ``x`` (channels, n) at ``f`` Hz.

    Same result as :func:`~edge_agent.kernels.sequence.dft_phasors`, but the windowed
    complex exponential is built once and shared by all channels. ``table`` is that
    exponential from :func:`rotation_table` (``n``, ``f / fs``, ``window``), to share it
    between calls too (currents and voltages).
    """
    x = np.atleast_2d(np.asarray(x))
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if not 0 < f < fs / 2:
        raise ValueError(f"{f=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    n = x.shape[1]
    if table is None:
        table = rotation_table(n, f / fs, window)
    elif table.shape != (2, n):
        raise ValueError(f"table has shape {table.shape}; expected (2, {n})")
    return _dots(x, table, window_sum(window, n), np.empty(x.shape[0], dtype=np.complex128))
