"""Park's vector and the extended Park's vector approach (EPVA).

The Park's vector modulus of a balanced three-phase current is constant; a negative-
sequence component I2 makes it ripple at twice the supply frequency with relative amplitude
about ``|I2|/|I1|``, which is why its 2f line is a classic stator-fault indicator
(Cardoso et al., 1999). Broken bars make it ripple at 2sf and eccentricity at f_r.

The locus of the Park's vector is an ellipse: with positive- and negative-sequence phasors
I1 and I2 its semi-axes are ``|I1| + |I2|`` and ``| |I1| - |I2| |`` and its major axis
lies at ``(arg I1 - arg I2) / 2``; :func:`park_ellipse` reads both off the phasors.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
from edge_agent.kernels._flags import jit, jit_sum
from edge_agent.kernels.engine import _BLOCK, park_modulus_at
from edge_agent.kernels.spectrum import spectral_window, window_sum


@jit(inline="always")
def _park_at(x, i):
    """|Park's vector| (power-invariant) of the phases x[:, i]."""
    return park_modulus_at(x[0, i], x[1, i], x[2, i])


@jit
def _modulus(x, out):
    for i in range(x.shape[1]):
        out[i] = _park_at(x, i)
    return out


_SQRT3_INV = 1.0 / math.sqrt(3.0)


@jit(inline="always")
def clarke_at(a, b, c):
    """(i_α, i_β) of one sample of phases a, b, c: the amplitude-invariant Clarke transform."""
    return (2.0 / 3.0) * (a - 0.5 * (b + c)), (b - c) * _SQRT3_INV


@jit
def _clarke(x, out):
    for i in range(x.shape[1]):
        out[0, i], out[1, i] = clarke_at(x[0, i], x[1, i], x[2, i])
    return out


def clarke(x: np.ndarray) -> np.ndarray:
    """Amplitude-invariant Clarke transform of phases ``x`` (3, n): rows i_α and i_β.

    A balanced set of amplitude A gives i_α + j·i_β = A·e^{jωt}; the zero sequence drops out.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    return _clarke(x, np.empty((2, x.shape[1])))


def park_modulus(x: np.ndarray) -> np.ndarray:
    """Modulus of the (power-invariant) Park's vector of phases ``x`` (3, n), per sample."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    return _modulus(x, np.empty(x.shape[1]))


@jit_sum
def _weigh_park(x, w, wm):
    """wm[i] = w[i]·|Park's vector of x[:, i]|; returns Σ wm."""
    total = 0.0
    for i in range(x.shape[1]):
        wm[i] = w[i] * _park_at(x, i)
        total += wm[i]
    return total


@jit_sum
def _weigh_complex(z, w, wm):
    """wm[i] = w[i]·|z[i]|; returns Σ wm."""
    total = 0.0
    for i in range(z.shape[0]):
        re = z[i].real
        im = z[i].imag
        wm[i] = w[i] * math.sqrt(re * re + im * im)
        total += wm[i]
    return total


@jit_sum
def _weigh_real(m, w, wm):
    total = 0.0
    for i in range(m.shape[0]):
        wm[i] = w[i] * m[i]
        total += wm[i]
    return total


@jit_sum
def _lines(wm, w, wsum, dc, f_over_fs, amp):
    """amp[j] = |Σ w·(m - dc)·e^{-jω_j i}|·2/Σw from wm = w·m, with ω_j from f_over_fs:
    Σ wm·e^{-jωi} - dc·Σ w·e^{-jωi}. Rotations are built per block, as in
    engine._fundamental."""
    n = wm.shape[0]
    ir = np.empty(_BLOCK)
    ii = np.empty(_BLOCK)
    for j in range(f_over_fs.shape[0]):
        fo = f_over_fs[j]
        for k in range(_BLOCK):
            ang = -2.0 * math.pi * fo * k
            ir[k] = math.cos(ang)
            ii[k] = math.sin(ang)
        sr = si = tr = ti = 0.0
        for b0 in range(0, n, _BLOCK):
            ang = -2.0 * math.pi * fo * b0
            orr = math.cos(ang)
            oi = math.sin(ang)
            nb = min(_BLOCK, n - b0)
            wb = w[b0 : b0 + nb]
            mb = wm[b0 : b0 + nb]
            for k in range(nb):
                rr = orr * ir[k] - oi * ii[k]
                ri = orr * ii[k] + oi * ir[k]
                sr += mb[k] * rr
                si += mb[k] * ri
                tr += wb[k] * rr
                ti += wb[k] * ri
        amp[j] = math.hypot(sr - dc * tr, si - dc * ti) * 2.0 / wsum
    return amp


def _lines_db(weigh, src: np.ndarray, fs: float, freqs) -> list[float]:
    """Lines at ``freqs`` (Hz) of the modulus that ``weigh`` forms from ``src``, in dB re
    its Hann-weighted mean; NaN at or beyond fs/2 and for a zero mean; floor -300 dB."""
    n = src.shape[-1]
    w = spectral_window("hann", n)
    wsum = window_sum("hann", n)
    wm = np.empty(n)
    dc = weigh(src, w, wm) / wsum
    inside = [float(f) / fs for f in freqs if 0 < f < fs / 2]
    amp = _lines(wm, w, wsum, dc, np.array(inside), np.empty(len(inside)))
    out, j = [], 0
    for f in freqs:
        if 0 < f < fs / 2 and dc > 0:
            out.append(20.0 * math.log10(max(amp[j] / dc, 1e-15)))
        else:
            out.append(math.nan)
        j += 0 < f < fs / 2
    return out


def modulus_lines_db(modulus: np.ndarray, fs: float, freqs: np.ndarray) -> np.ndarray:
    """Lines of a modulus signal at ``freqs`` (Hz), in dB re its Hann-weighted mean.

    Each line is a Hann-windowed DFT of (modulus - mean) at the exact frequency, taken as
    Σ w·m·e^{-jωi} - mean·Σ w·e^{-jωi}, so the modulus is formed and weighted once for all
    lines. ``modulus`` may also be a complex signal (the space vector), whose modulus is
    then formed here. Lines at or beyond fs/2 are NaN; the floor is -300 dB.
    """
    m = np.ascontiguousarray(modulus)
    if m.ndim != 1:
        raise ValueError(f"modulus must be 1-D, got shape {m.shape}")
    if np.iscomplexobj(m):
        weigh = _weigh_complex
    else:
        m = m.astype(np.float64, copy=False)
        weigh = _weigh_real
    freqs = np.atleast_1d(np.asarray(freqs, dtype=np.float64))
    return np.array(_lines_db(weigh, m, fs, freqs.tolist()))


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Level of the line at ``f_line`` Hz in the Park's vector modulus, dB re its mean.

    ``x`` holds the three phase currents, shape (3, n). For the contract feature
    ``epva_2f_db`` pass ``f_line = 2 · supply_hz``. Floors at -300 dB for a perfectly
    balanced set. One pass forms and weighs the modulus, one more reads the line.
    """
    x = np.ascontiguousarray(x)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if not 0 < f_line < fs / 2:
        raise ValueError(f"{f_line=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    return _lines_db(_weigh_park, x, fs, [f_line])[0]


def park_ellipse(i1: complex, i2: complex) -> tuple[float, float]:
    """Ellipse of the Park's vector locus from the sequence phasors (peak or rms alike).

    Returns ``(ratio, axis_deg)``: minor over major semi-axis (1 = circle, healthy) and
    the major axis angle in degrees in [0, 180), 0° along phase a's axis. NaN when both
    phasors vanish.
    """
    i1, i2 = complex(i1), complex(i2)
    a1, a2 = abs(i1), abs(i2)
    if a1 + a2 == 0:
        return math.nan, math.nan
    ratio = abs(a1 - a2) / (a1 + a2)
    # cmath, not np.angle: two numpy scalar round trips cost more than the rest of a window's
    # Python.
    axis = math.degrees(0.5 * (cmath.phase(i1) - cmath.phase(i2))) % 180.0
    return ratio, axis
