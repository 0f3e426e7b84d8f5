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

What is read at the supply frequency itself (the phasors of every channel, the voltages'
rms, the Park's vector line at 2f) needs no spectrum: :func:`fundamental` takes it from
one pass over the window, with the windowed exponential built block by block as it goes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft
from edge_agent.kernels import fft
from edge_agent.kernels._flags import jit, jit_sum
from edge_agent.kernels.spectrum import spectral_window, window_sum
from edge_agent.kernels.waveform import _as_channels


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

    scipy counts 15000 (2³·3·5⁴) as fast, yet 15360 (2¹⁰·3·5) is quicker here: with
    scipy, as :mod:`~edge_agent.kernels.fft` runs it, 59 against 63 µs complex and 39
    against 41 real (25 % quicker in one call of length n). A multiple of 512 is also a
    multiple of 4, which the scipy backend's four-step transform needs.
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

# Power-invariant Park's vector: i_d = K1·a - K2·(b + c), i_q = K3·(b - c).
_K1 = math.sqrt(2.0 / 3.0)
_K2 = 1.0 / math.sqrt(6.0)
_K3 = 1.0 / math.sqrt(2.0)


@jit(inline="always")
def park_modulus_at(a, b, c):
    """|Park's vector| (power-invariant) of one sample of phases a, b, c, in float64 from
    the first operation (so b - c of float32 samples loses nothing)."""
    a = np.float64(a)
    b = np.float64(b)
    c = np.float64(c)
    d = _K1 * a - _K2 * (b + c)
    e = _K3 * (b - c)
    return math.sqrt(d * d + e * e)


@jit
def _block_rotation(f_over_fs, ur, ui):
    """ur + j·ui = e^{-j2π(f/fs)k}, k < _BLOCK: the offsets within a block."""
    for k in range(_BLOCK):
        ang = -2.0 * math.pi * f_over_fs * k
        ur[k] = math.cos(ang)
        ui[k] = math.sin(ang)


@jit_sum
def _dot_rows(row, wr, wi, acc):
    """acc += (Σ row·wr, Σ row·wi, Σ row²) over the block ``row``."""
    a = 0.0
    b = 0.0
    q = 0.0
    for k in range(row.shape[0]):
        s = np.float64(row[k])  # float() would keep float32 under numba
        a += s * wr[k]
        b += s * wi[k]
        q += s * s
    acc[0] += a
    acc[1] += b
    acc[2] += q


@jit_sum
def _fundamental(x, park, y, w, f_over_fs, sums, lines):
    """One pass over the rows of x, then y, block by block.

    sums[r] = (Σ w·s·cos θ, Σ w·s·sin θ, Σ s²) for each row s, θ = -2π(f/fs)i: the
    windowed DFT at f and the sum of squares. With ``park``, rows 0-2 of x are phases a, b,
    c, and lines = (Σ w·m, Re and Im of Σ w·m·e^{2jθ}, Re and Im of Σ w·e^{2jθ}), m their
    Park's vector modulus: the modulus' mean and its line at 2f, as park._lines forms them.
    The block's rotation (and its square, the rotation at 2f) stays in L1 cache; the table
    of a whole window would be 240 kB to write and read back per set of channels.
    """
    n = x.shape[1]
    nx = x.shape[0]
    ur = np.empty(_BLOCK)
    ui = np.empty(_BLOCK)
    _block_rotation(f_over_fs, ur, ui)
    wr = np.empty(_BLOCK)
    wi = np.empty(_BLOCK)
    r2 = np.empty(_BLOCK)
    i2 = np.empty(_BLOCK)
    sums[:] = 0.0
    s_wm = s_mr = s_mi = s_wr = s_wi = 0.0
    for b0 in range(0, n, _BLOCK):
        ang = -2.0 * math.pi * f_over_fs * b0
        orr = math.cos(ang)
        oi = math.sin(ang)
        m = min(_BLOCK, n - b0)
        wb = w[b0 : b0 + m]
        for k in range(m):
            re = orr * ur[k] - oi * ui[k]
            im = orr * ui[k] + oi * ur[k]
            wr[k] = wb[k] * re
            wi[k] = wb[k] * im
            r2[k] = re * re - im * im
            i2[k] = 2.0 * re * im
        for r in range(nx):
            _dot_rows(x[r, b0 : b0 + m], wr, wi, sums[r])
        for r in range(y.shape[0]):
            _dot_rows(y[r, b0 : b0 + m], wr, wi, sums[nx + r])
        if park:
            xa = x[0, b0 : b0 + m]
            xb = x[1, b0 : b0 + m]
            xc = x[2, b0 : b0 + m]
            t0 = t1 = t2 = t3 = t4 = 0.0
            for k in range(m):
                wm = wb[k] * park_modulus_at(xa[k], xb[k], xc[k])
                t0 += wm
                t1 += wm * r2[k]
                t2 += wm * i2[k]
                t3 += wb[k] * r2[k]
                t4 += wb[k] * i2[k]
            s_wm += t0
            s_mr += t1
            s_mi += t2
            s_wr += t3
            s_wi += t4
    lines[0] = s_wm
    lines[1] = s_mr
    lines[2] = s_mi
    lines[3] = s_wr
    lines[4] = s_wi


class Fundamental(NamedTuple):
    """What one pass over a window at the supply frequency gives (:func:`fundamental`)."""

    phasors: np.ndarray  # complex (rows,): peak phasors at f, rows of x then of others
    rms: np.ndarray  # (rows,): true rms, DC included, same order
    epva_db: float  # the 2f line of x's Park's vector modulus, dB re its mean (NaN: none)


def _rows(a: np.ndarray, name: str) -> np.ndarray:
    a = _as_channels(a)
    if a.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 samples per row, got shape {a.shape}")
    return a


def fundamental(
    x: np.ndarray,
    fs: float,
    f: float,
    others: np.ndarray | None = None,
    *,
    park: bool = True,
    window: str = "hann",
) -> Fundamental:
    """Phasors at ``f`` Hz, rms, and the Park's vector line at 2f, in one pass over a window.

    ``x`` holds the phase currents a, b, c (shape (3, n)); ``others`` (shape (rows, n)),
    e.g. the phase voltages, get phasors and rms too. Phasors are complex peak amplitudes
    by a ``window``-weighted DFT at exactly ``f`` (as
    :func:`~edge_agent.kernels.sequence.dft_phasors`); rms is the true rms (as
    :func:`~edge_agent.kernels.stats.rms`); ``epva_db`` is
    :func:`~edge_agent.kernels.park.epva_line_db` at 2f of x: NaN when 2f is at or beyond
    fs/2, when the modulus is all zero, or with ``park=False`` (then x may have any number of
    rows). The windowed exponential is built block by block as the samples are read and
    shared by every row, so the window is read once.
    """
    x = _rows(x, "x")
    n = x.shape[1]
    y = np.empty((0, n), dtype=x.dtype) if others is None else _rows(others, "others")
    if y.shape[1] != n:
        raise ValueError(f"others has {y.shape[1]} samples per row; x has {n}")
    if y.dtype != x.dtype:
        y = y.astype(np.float64)
        x = x.astype(np.float64)
    if park and x.shape[0] != 3:
        raise ValueError(f"x must hold the phases a, b, c, shape (3, n); got {x.shape}")
    if fs <= 0:
        raise ValueError(f"{fs=} must be positive")
    if not 0 < f < fs / 2:
        raise ValueError(f"{f=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    w = spectral_window(window, n)
    wsum = window_sum(window, n)
    sums = np.empty((x.shape[0] + y.shape[0], 3))
    lines = np.zeros(5)
    _fundamental(x, bool(park), y, w, float(f) / fs, sums, lines)
    ph = (sums[:, 0] + 1j * sums[:, 1]) * (2.0 / wsum)
    rms = np.sqrt(sums[:, 2] / n)
    epva = math.nan
    dc = lines[0] / wsum
    if park and 2 * f < fs / 2 and dc > 0:
        amp = math.hypot(lines[1] - dc * lines[3], lines[2] - dc * lines[4]) * 2.0 / wsum
        epva = 20.0 * math.log10(max(amp / dc, 1e-15))
    return Fundamental(ph, rms, epva)


def phasors(x: np.ndarray, fs: float, f: float, *, window: str = "hann") -> np.ndarray:
    """Complex peak phasors of every row of ``x`` (channels, n) at ``f`` Hz.

    Same result as :func:`~edge_agent.kernels.sequence.dft_phasors`, but the windowed
    complex exponential is built once, block by block, and shared by all channels
    (:func:`fundamental` without the Park's vector).
    """
    return fundamental(x, fs, f, park=False, window=window).phasors
