"""Fundamental active and reactive power, voltage unbalance and negative-sequence impedance.

Everything is read off the fundamental phasors of the three phase voltages and currents
(:func:`~edge_agent.kernels.sequence.dft_phasors`, Hann window at the exact supply
frequency), so harmonics and noise are left out. With rms phasors the complex power is

    S = Σ_k V_k·conj(I_k) = 3·(V0·conj(I0) + V1·conj(I1) + V2·conj(I2)),

P = Re S and Q = Im S. Phasors follow ``x = A·cos(2π f t + φ)  ↔  A·e^{jφ}``, so a load
whose current lags its voltage by φ (inductive, as a motor) has Q = |S|·sin φ > 0.

The negative-sequence impedance Z2 = |V2|/|I2| of an induction motor is close to its
locked-rotor impedance and nearly independent of load; a change in it, with the supply's
own unbalance divided out, points at the stator winding (Kohler, Sottile & Trutt, 2002).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.sequence import _A, _sequence, dft_phasors

# |I2| below this fraction of |I1| is taken as no negative-sequence current: Z2 is NaN.
I2_FLOOR = 1e-9


class PowerResult(NamedTuple):
    v1: float  # positive-sequence voltage, V rms
    v2: float  # negative-sequence voltage, V rms
    v2_v1: float  # voltage unbalance |V2|/|V1|, ratio
    p: float  # fundamental active power of all three phases, W
    q: float  # fundamental reactive power, var (> 0 when the current lags: inductive)
    pf: float  # displacement power factor P/|S|, signed like P
    z2: float  # negative-sequence impedance |V2|/|I2|, ohm; NaN when I2 is negligible


@jit
def _power(pv, pi, a):
    s = 0j
    for k in range(3):
        s += pv[k] * pi[k].conjugate()
    s *= 0.5  # peak phasors: V_rms·conj(I_rms) = V·conj(I) / 2
    _v0, v1, v2 = _sequence(pv[0], pv[1], pv[2], a)
    _i0, i1, i2 = _sequence(pi[0], pi[1], pi[2], a)
    av1 = abs(v1)
    av2 = abs(v2)
    ai2 = abs(i2)
    v2_v1 = av2 / av1 if av1 > 0.0 else math.nan
    s_abs = abs(s)
    pf = s.real / s_abs if s_abs > 0.0 else math.nan
    z2 = math.nan if ai2 <= I2_FLOOR * abs(i1) else av2 / ai2
    r2 = math.sqrt(2.0)
    return av1 / r2, av2 / r2, v2_v1, s.real, s.imag, pf, z2


def _check_pair(v: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.ascontiguousarray(v, dtype=np.float64)
    i = np.ascontiguousarray(i, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != 3:
        raise ValueError(f"v must have shape (3, n), got {v.shape}")
    if i.shape != v.shape:
        raise ValueError(f"i must have the shape of v {v.shape}, got {i.shape}")
    return v, i


def power_quantities(v: np.ndarray, i: np.ndarray, fs: float, f: float) -> PowerResult:
    """Fundamental power, voltage unbalance and Z2 of one window of a three-phase motor.

    Parameters
    ----------
    v : phase-to-neutral voltages a, b, c in V, shape (3, n)
    i : line currents a, b, c in A, shape (3, n), sampled with ``v``
    fs : sample rate, Hz
    f : supply frequency, Hz (measured, e.g. by ``peak_frequency``; need not fall on a bin)

    Example: 230 V rms per phase, 10 A rms lagging by 30° gives ``p ≈ 5975.6 W``,
    ``q ≈ 3450 var``, ``pf ≈ 0.866``. NaN in the input gives NaN out.
    """
    v, i = _check_pair(v, i)
    if fs <= 0:
        raise ValueError(f"{fs=} must be positive")
    if v.shape[1] < 2:
        raise ValueError(f"v and i need at least 2 samples, got {v.shape[1]}")
    return power_from_phasors(dft_phasors(v, fs, f), dft_phasors(i, fs, f))


def power_from_phasors(pv: np.ndarray, pi: np.ndarray) -> PowerResult:
    """:func:`power_quantities` from fundamental peak phasors (a, b, c) already computed,
    e.g. by :func:`~edge_agent.kernels.engine.phasors`, so a window's DFT is done once."""
    pv = np.asarray(pv, dtype=np.complex128).ravel()
    pi = np.asarray(pi, dtype=np.complex128).ravel()
    if pv.shape != (3,) or pi.shape != (3,):
        raise ValueError(f"pv and pi must hold 3 phasors each, got {pv.shape} and {pi.shape}")
    return PowerResult(*_power(pv, pi, _A))


@jit
def _true_power(v, i):
    acc = 0.0
    for c in range(v.shape[0]):
        for k in range(v.shape[1]):
            acc += v[c, k] * i[c, k]
    return acc / v.shape[1]


def true_power(v: np.ndarray, i: np.ndarray) -> float:
    """Mean instantaneous power Σ_k v_k·i_k over the window, in W, harmonics included.

    ``v`` and ``i`` have the same shape (channels, n). Over a whole number of cycles of
    sinusoidal v and i it equals ``power_quantities(...).p``; the difference is the power
    carried by harmonics (or by a window that cuts a cycle).
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    i = np.ascontiguousarray(i, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"v must have shape (channels, n), got {v.shape}")
    if i.shape != v.shape:
        raise ValueError(f"i must have the shape of v {v.shape}, got {i.shape}")
    if v.shape[1] == 0:
        raise ValueError("v and i have no samples")
    return float(_true_power(v, i))
