"""Waveform statistics per channel."""

from __future__ import annotations

import math

import numpy as np
from edge_agent.kernels._flags import jit_sum


@jit_sum
def _rms(x, out):
    for c in range(x.shape[0]):
        row = x[c]
        acc = 0.0
        for i in range(x.shape[1]):
            v = np.float64(row[i])
            acc += v * v
        out[c] = math.sqrt(acc / x.shape[1])
    return out


def rms(x: np.ndarray) -> np.ndarray:
    """True rms of each row of ``x`` (shape (channels, n)), DC included, in x's unit."""
    x = np.ascontiguousarray(np.atleast_2d(x))
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if x.shape[1] == 0:
        raise ValueError("x has no samples")
    return _rms(x, np.empty(x.shape[0]))
