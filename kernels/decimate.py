"""Streaming FIR decimation for the long window.

Rotor sidebands sit within a few Hz of the supply and need 0.1 Hz resolution, i.e. 8-16 s
of signal; at 15 kS/s that is a needlessly long FFT. Low-pass filtering and keeping every
D-th sample first (only the kept outputs are computed) shrinks it D-fold.

:class:`SpaceVectorDecimator` does it for the long window's one signal, the current space
vector i_α + j·i_β: the Clarke transform, the filter and the complex output in one pass.
"""

from __future__ import annotations

import numpy as np
import scipy.signal
from edge_agent.kernels._flags import jit_sum
from edge_agent.kernels.park import clarke_at


@jit_sum
def _fir_decimate(xext, taps_rev, first, step, out):
    # xext = [history of len(taps)-1 | new chunk]; out[:, j] = Σ_k taps[k]·xext[:, i - k]
    # at i = len(taps) - 1 + first + j·step, i.e. the reversed taps against the segment
    # that starts at first + j·step: a dot product over contiguous samples, which jit_sum
    # vectorises.
    m = taps_rev.shape[0]
    for c in range(xext.shape[0]):
        row = xext[c]
        for j in range(out.shape[1]):
            seg = row[first + j * step : first + j * step + m]
            acc = 0.0
            for k in range(m):
                acc += taps_rev[k] * seg[k]
            out[c, j] = acc
    return out


class FirDecimator:
    """Low-pass and keep every ``factor``-th sample, chunk by chunk, for ``channels`` rows.

    ``process(chunk)`` takes shape (channels, n) and returns the decimated samples that
    chunk completes; concatenated outputs equal filtering the whole signal at once. The
    filter is a Blackman-windowed FIR of 16·factor + 1 taps with its cutoff at 80 % of the
    new Nyquist frequency, unity gain at DC.
    """

    def __init__(self, fs: float, factor: int, channels: int) -> None:
        if factor < 1:
            raise ValueError(f"{factor=} must be at least 1")
        self.fs = float(fs)
        self.factor = int(factor)
        self.fs_out = self.fs / self.factor
        if self.factor == 1:
            self.taps = np.ones(1)
        else:
            self.taps = scipy.signal.firwin(
                16 * self.factor + 1, 0.8 * self.fs_out / 2, window="blackman", fs=self.fs
            )
        self._taps_rev = np.ascontiguousarray(self.taps[::-1])
        self._hist = np.zeros((channels, self.taps.size - 1))
        self._first = 0  # index, in the next chunk, of the next sample to keep

    def reset(self) -> None:
        """Forget the history, as after a gap in the signal."""
        self._hist[:] = 0.0
        self._first = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.ascontiguousarray(np.atleast_2d(chunk), dtype=np.float64)
        if chunk.shape[0] != self._hist.shape[0]:
            raise ValueError(f"chunk has {chunk.shape[0]} rows, expected {self._hist.shape[0]}")
        n = chunk.shape[1]
        if self.factor == 1:
            return chunk.copy()
        xext = np.concatenate([self._hist, chunk], axis=1)
        count = 0 if self._first >= n else (n - 1 - self._first) // self.factor + 1
        out = _fir_decimate(
            xext, self._taps_rev, self._first, self.factor, np.empty((chunk.shape[0], count))
        )
        self._first = self._first + count * self.factor - n
        self._hist = xext[:, xext.shape[1] - self._hist.shape[1] :].copy()
        return out


@jit_sum
def _space_vector_decimate(x, hist, taps_rev, first, step, out):
    # ext = [hist | i_α, i_β of x], filtered as _fir_decimate filters it, but both rows in
    # one loop: each tap is loaded once for the real and the imaginary part (calling
    # _fir_decimate on ext, then pairing its rows, took 8 µs more a hop). The last
    # len(taps) - 1 columns of ext become hist.
    h = hist.shape[1]
    n = x.shape[1]
    m = taps_rev.shape[0]
    ext = np.empty((2, h + n))
    ext[:, :h] = hist
    for i in range(n):
        a = np.float64(x[0, i])  # float() would keep float32 under numba
        ext[0, h + i], ext[1, h + i] = clarke_at(a, np.float64(x[1, i]), np.float64(x[2, i]))
    alpha = ext[0]
    beta = ext[1]
    for j in range(out.shape[0]):
        s = first + j * step
        sa = alpha[s : s + m]
        sb = beta[s : s + m]
        re = 0.0
        im = 0.0
        for t in range(m):
            re += taps_rev[t] * sa[t]
            im += taps_rev[t] * sb[t]
        out[j] = complex(re, im)
    hist[:, :] = ext[:, n:]
    return out


class SpaceVectorDecimator(FirDecimator):
    """The space vector i_α + j·i_β of three phases, low-passed and decimated, in one pass.

    ``process(phases)`` takes the phase currents a, b, c, shape (3, n) in any layout, and
    returns the complex decimated samples that chunk completes: the amplitude-invariant
    Clarke transform (:func:`~edge_agent.kernels.park.clarke`) of the chunk filtered as
    :class:`FirDecimator` filters it, with i_α and i_β as real and imaginary parts. The
    transform, the filter and the complex samples need no arrays in between.
    """

    def __init__(self, fs: float, factor: int) -> None:
        super().__init__(fs, factor, 2)

    def process(self, chunk: np.ndarray) -> np.ndarray:
        x = np.asarray(chunk)
        if x.ndim != 2 or x.shape[0] != 3:
            raise ValueError(f"phases must have shape (3, n), got {x.shape}")
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        n = x.shape[1]
        count = 0 if self._first >= n else (n - 1 - self._first) // self.factor + 1
        out = np.empty(count, dtype=np.complex128)
        _space_vector_decimate(x, self._hist, self._taps_rev, self._first, self.factor, out)
        self._first = self._first + count * self.factor - n
        return out
