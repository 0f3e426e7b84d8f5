"""Park's vector and the extended Park's vector approach (EPVA).

The Park's vector modulus of a balanced three-phase current is constant; a negative-
sequence component I2 makes it ripple at twice the supply frequency with relative amplitude
about ``|I2|/|I1|``, which is why its 2f line is a classic stator-fault indicator
(Cardoso et al., 1999).
"""

from __future__ import annotations

import math

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.spectrum import spectral_window

_K1 = math.sqrt(2.0 / 3.0)
_K2 = 1.0 / math.sqrt(6.0)
_K3 = 1.0 / math.sqrt(2.0)


@jit
def _epva_line(x, w, f_over_fs):
    n = x.shape[1]
    m = np.empty(n)
    wsum = 0.0
    dc = 0.0
    for i in range(n):
        d = _K1 * x[0, i] - _K2 * x[1, i] - _K2 * x[2, i]
        q = _K3 * (x[1, i] - x[2, i])
        m[i] = math.sqrt(d * d + q * q)
        wsum += w[i]
        dc += w[i] * m[i]
    dc /= wsum
    acc = 0j
    for i in range(n):
        ang = -2 * math.pi * f_over_fs * i
        acc += w[i] * (m[i] - dc) * complex(math.cos(ang), math.sin(ang))
    amp = abs(acc) * 2.0 / wsum
    if dc <= 0.0:
        return math.nan
    return 20.0 * math.log10(max(amp / dc, 1e-15))


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Level of the line at ``f_line`` Hz in the Park's vector modulus, dB re its mean.

    ``x`` holds the three phase currents, shape (3, n). For the contract feature
    ``epva_2f_db`` pass ``f_line = 2 · supply_hz``. Floors at -300 dB for a perfectly
    balanced set.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 3:
        raise ValueError(f"x must have shape (3, n), got {x.shape}")
    if not 0 < f_line < fs / 2:
        raise ValueError(f"{f_line=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    return float(_epva_line(x, spectral_window("hann", x.shape[1]), f_line / fs))
