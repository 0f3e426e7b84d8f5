"""Data-quality repairs and checks on raw windows: gap filling, clipping, DC removal.

Run before the spectral kernels: a NaN poisons a whole FFT, and a clipped peak adds odd
harmonics that look like a fault.
"""

from __future__ import annotations

import math

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.waveform import _as_channels

# Samples per block of the quick scans. A block is first tested with a branch-free count,
# which vectorises, and walked sample by sample only when something in it needs attention.
_BLOCK = 32

# --- gap filling ----------------------------------------------------------------------


@jit
def _fill_run(row, s, e, max_gap):
    """Fill the gap row[s:e] if it is short enough and has a finite neighbour; True if so."""
    n = row.shape[0]
    length = e - s
    if length > max_gap or (s == 0 and e == n):
        for k in range(s, e):
            row[k] = math.nan  # ±inf too: one marker for "no data"
        return False
    if s == 0:
        for k in range(s, e):
            row[k] = row[e]
    elif e == n:
        for k in range(s, e):
            row[k] = row[s - 1]
    else:
        lo = row[s - 1]
        span = row[e] - lo
        for k in range(1, length + 1):
            # (span·k)/(length+1), not span·(k/(length+1)): exact on integer ramps.
            row[s - 1 + k] = lo + span * k / (length + 1)
    return True


@jit
def _fill_gaps(out, max_gap, block):
    """Fill, in place, runs of non-finite samples no longer than max_gap; see fill_gaps."""
    n = out.shape[1]
    n_filled = 0
    long_gap = False
    for c in range(out.shape[0]):
        row = out[c]
        s = -1  # start of the gap being walked, -1 when none
        i = 0
        while i < n:
            if s < 0 and i + block <= n:
                good = 0
                blk = row[i : i + block]  # a slice and a 0-based index: contiguous vector loads
                for j in range(block):
                    good += abs(blk[j]) < math.inf  # False for NaN and ±inf
                if good == block:
                    i += block
                    continue
                stop = i + block
            else:
                stop = i + 1
            while i < stop:
                bad = not abs(row[i]) < math.inf
                if bad and s < 0:
                    s = i
                elif not bad and s >= 0:
                    if _fill_run(row, s, i, max_gap):
                        n_filled += i - s
                    else:
                        long_gap = True
                    s = -1
                i += 1
        if s >= 0:
            if _fill_run(row, s, n, max_gap):
                n_filled += n - s
            else:
                long_gap = True
    return n_filled, long_gap


def fill_gaps(x: np.ndarray, max_gap: int) -> tuple[np.ndarray, int, bool]:
    """Interpolate short gaps in each row of ``x`` (shape (channels, n) or (n,)).

    A gap is a run of non-finite samples (NaN, ±inf: a lost or undecodable frame). A gap of
    at most ``max_gap`` samples is filled by straight-line interpolation between the finite
    samples either side of it; a gap touching the start or end of the window takes the
    nearest finite value. Longer gaps, and a row with no finite sample at all, are left NaN.
    The pipeline passes ``max_gap`` ≈ 1 ms of samples (15 at 15 kS/s): a line through 1 ms
    of a 50 Hz sine errs by at most ``A·(1 - cos(π·50·0.001)) ≈ 1.2 %`` of its amplitude.

    Returns ``(filled, n_filled, long_gap)``: a float64 copy of ``x`` with the same shape,
    the number of samples filled (all rows), and whether any gap was left unfilled.
    Finite samples are never changed.
    """
    if isinstance(max_gap, bool) or not isinstance(max_gap, (int, np.integer)):
        raise TypeError(f"max_gap must be an int (samples), got {max_gap!r}")
    if max_gap < 0:
        raise ValueError(f"{max_gap=} must be at least 0")
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise TypeError(f"x must be real, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (channels, n) or (n,), got {x.shape}")
    if x.shape[-1] == 0:
        raise ValueError("x has no samples")
    filled = np.array(x, dtype=np.float64, order="C", copy=True)
    n_filled, long_gap = _fill_gaps(filled.reshape(-1, filled.shape[-1]), int(max_gap), _BLOCK)
    return filled, int(n_filled), bool(long_gap)


# --- clipping -------------------------------------------------------------------------

DEFAULT_MIN_RUN = 10
"""Default shortest run, in samples, that counts as clipping (for 15 kS/s and 50 Hz).

Worked out for a 12-bit ADC (full scale FS = 2048 LSB) and 300 samples per 50 Hz cycle. Near
its crest a sine of amplitude A falls by ``A·θ²/2``, so samples stay in the top code for
about ``θ = ±sqrt(2·LSB/A)`` and a quantised, unclipped crest is a run of up to
``2·(300/2π)·sqrt(2·LSB/A) + 1`` equal samples. Simulated over all sampling phases:

=====================  ====  ====  ====  ====  ====  ====
crest above (% of FS)    54    36    24    18    14    10
longest run               4     5     6     7     8     9
=====================  ====  ====  ====  ====  ====  ====

A sine overdriven by a factor ``r`` sits on the rail for ``2·(300/2π)·acos(1/r)`` samples
per crest: 56 at 120 % of FS, 13 at 101 %, 10 at 100.5 %, 7 at 100.2 %. A run of 10
therefore flags any overdrive beyond about 0.5 % and never an unclipped quantised sine
above 10 % of FS (an 80 % sine has runs of 3 or 4). For other rates, scale by the samples
per supply cycle: ``min_run ≈ fs / f_supply / 30``.
"""


@jit
def _close(run, min_run, res, k):
    """End a run: count it in res[k] (runs) and res[k + 1] (samples) if long enough."""
    if run >= min_run:
        res[k] += 1
        res[k + 1] += run
    return 0


@jit
def _rail_runs(row, lo, hi, min_run, block, res):
    """Runs of >= min_run samples at or above hi, and at or below lo (NaN is neither).

    Writes ``res = (runs at hi, samples in them, runs at lo, samples in them)``.
    """
    n = row.shape[0]
    res[:] = 0
    top = 0
    bot = 0
    i = 0
    while i < n:
        stop = min(i + block, n)
        full = stop - i == block  # the last, partial block is always scanned
        hits = 0
        if full:
            blk = row[i:stop]  # a slice and a 0-based index: contiguous vector loads
            for j in range(block):
                hits += (blk[j] >= hi) + (blk[j] <= lo)
        # Nothing in this block is at either level, or too little to hold a run of its own
        # and nothing at its ends to carry one across: any run ends here, and none in it
        # counts. (A quantised sine touches its extreme code for a sample or two at many
        # crests; only a flat top is scanned sample by sample.)
        if full and (
            hits == 0
            or (
                hits < min_run
                and not (row[i] >= hi or row[i] <= lo or row[stop - 1] >= hi or row[stop - 1] <= lo)
            )
        ):
            if top + bot > 0:  # (calls only when needed: this is the hot path)
                top = _close(top, min_run, res, 0)
                bot = _close(bot, min_run, res, 2)
            i = stop
            continue
        for k in range(i, stop):
            v = row[k]
            if v >= hi:
                top += 1
            else:
                top = _close(top, min_run, res, 0)
            if v <= lo:
                bot += 1
            else:
                bot = _close(bot, min_run, res, 2)
        i = stop
    _close(top, min_run, res, 0)
    _close(bot, min_run, res, 2)
    return res


@jit
def _extremes(row, block, hi, lo):
    """(max, min) of row ignoring NaN, -inf/inf when there is none; hi, lo: scratch."""
    n = row.shape[0]
    nb = n // block
    hi[:] = -math.inf
    lo[:] = math.inf
    for b in range(nb):
        blk = row[b * block : (b + 1) * block]
        for j in range(block):  # independent lanes: vectorises without fastmath
            v = blk[j]
            h = hi[j]
            hi[j] = v if v > h else h
            l = lo[j]
            lo[j] = v if v < l else l
    mx = -math.inf
    mn = math.inf
    for j in range(block):
        if hi[j] > mx:
            mx = hi[j]
        if lo[j] < mn:
            mn = lo[j]
    for i in range(nb * block, n):
        v = row[i]
        if v > mx:
            mx = v
        if v < mn:
            mn = v
    return mx, mn


@jit
def _clipped(x, start, lo, hi, own_extremes, min_run, block, out):
    res = np.zeros(4, dtype=np.int64)
    hi_lanes = np.empty(block)
    lo_lanes = np.empty(block)
    for c in range(x.shape[0]):
        row = x[c][start:]  # a slice of a C row stays contiguous: vector loads
        if own_extremes:
            mx, mn = hi[c], lo[c]
            if not (mx == mx and mn == mn):  # NaN in the row: extremes of the rest
                mx, mn = _extremes(row, block, hi_lanes, lo_lanes)
            if not mx > mn:  # constant (or all NaN): one flat stretch, not a clipped wave
                out[c] = 0
                continue
            _rail_runs(row, mn, mx, min_run, block, res)
            # A saturated ADC flattens every crest: one flat run at an extreme is no proof.
            out[c] = (res[1] if res[0] >= 2 else 0) + (res[3] if res[2] >= 2 else 0)
        else:
            _rail_runs(row, lo[c], hi[c], min_run, block, res)
            out[c] = res[1] + res[3]
    return out


def detect_clipping(
    x: np.ndarray,
    *,
    rails: np.ndarray | None = None,
    min_run: int = DEFAULT_MIN_RUN,
    extremes: tuple[np.ndarray, np.ndarray] | None = None,
    start: int = 0,
) -> np.ndarray:
    """Number of clipped samples in each row of ``x[..., start:]`` (x of shape (channels,
    n) or (n,)).

    With ``rails`` (shape (channels, 2): the lowest and highest value each channel's ADC can
    report, in x's unit; or shape (2,) for all channels), a sample is at a rail when it is
    at or beyond it, to within ``1e-9·(hi - lo)``; it counts when it belongs to a run of at
    least ``min_run`` consecutive samples at the same rail.

    Without rails, a channel's own maximum and minimum stand in for them: runs of at least
    ``min_run`` samples exactly equal to the maximum (or minimum) count, but only if there
    are at least two such runs at that extreme. A saturated ADC flattens every crest in the
    window; one flat spot (a held sample, a stuck frame) does not make clipping, nor does a
    constant channel. Windows should hold two or more cycles.

    ``min_run`` (samples) defaults to :data:`DEFAULT_MIN_RUN` = 10, chosen for 15 kS/s and a
    50/60 Hz supply so that the short flat crests of a quantised, unclipped sine are not
    counted (see that constant for the numbers). NaN samples are never clipped and break
    runs. ``extremes`` = (max, min) of each row's samples from ``start`` on, when the caller
    has them already, saves a pass. ``start`` (a column) limits the check to the newest
    samples of a window, e.g. its last hop, without copying them out. Returns an int64 array
    of shape (channels,); 0 means no clipping.
    """
    x = _as_channels(x)
    if isinstance(min_run, bool) or not isinstance(min_run, (int, np.integer)):
        raise TypeError(f"min_run must be an int (samples), got {min_run!r}")
    if min_run < 1:
        raise ValueError(f"{min_run=} must be at least 1")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise TypeError(f"start must be an int (a column), got {start!r}")
    if not 0 <= start <= x.shape[1]:
        raise ValueError(f"{start=} must lie between 0 and the {x.shape[1]} columns of x")
    start = int(start)
    out = np.empty(x.shape[0], dtype=np.int64)
    if rails is None:
        if x.shape[1] == start:
            out[:] = 0
            return out
        if extremes is not None:
            hi, lo = (np.asarray(e, dtype=np.float64) for e in extremes)
            if hi.shape != (x.shape[0],) or lo.shape != (x.shape[0],):
                raise ValueError(f"extremes must be two arrays of shape ({x.shape[0]},)")
        else:
            # numpy's max and min are vectorised; a row holding NaN gives NaN, and the
            # kernel then finds the extremes of its other samples itself.
            xs = x[:, start:]
            hi, lo = xs.max(axis=1).astype(np.float64), xs.min(axis=1).astype(np.float64)
        return _clipped(x, start, lo, hi, True, int(min_run), _BLOCK, out)
    r = np.asarray(rails, dtype=np.float64)
    if r.shape == (2,):
        r = np.broadcast_to(r, (x.shape[0], 2))
    if r.shape != (x.shape[0], 2):
        raise ValueError(f"rails must have shape ({x.shape[0]}, 2) or (2,), got {r.shape}")
    lo, hi = r[:, 0], r[:, 1]
    if not (np.all(np.isfinite(r)) and np.all(lo < hi)):
        raise ValueError(f"rails must be finite (lo, hi) pairs with lo < hi, got {r.tolist()}")
    tol = 1e-9 * (hi - lo)
    lo_t = np.ascontiguousarray(lo + tol)
    hi_t = np.ascontiguousarray(hi - tol)
    return _clipped(x, start, lo_t, hi_t, False, int(min_run), _BLOCK, out)


# --- DC -------------------------------------------------------------------------------


def remove_dc(x: np.ndarray) -> np.ndarray:
    """``x`` minus the mean of each row (shape (channels, n) or (n,)), as float64.

    Plain numpy rather than a jitted twin: one vectorised mean (pairwise summation, so
    accurate to a few ulp) and one subtraction, which numba could not do faster. A row
    holding NaN becomes all NaN; fill gaps first.
    """
    x = np.asarray(x)
    if np.iscomplexobj(x):
        raise TypeError(f"x must be real, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have shape (channels, n) or (n,), got {x.shape}")
    if x.shape[-1] == 0:
        raise ValueError("x has no samples")
    x = x.astype(np.float64, copy=False)
    return x - x.mean(axis=-1, keepdims=True)
