"""V-I trajectory shape features per phase, after Lam, Fung & Lee (2007).

The V-I trajectory is the closed curve (v(t), i(t)) traced over one supply cycle. Its shape
tells a resistive load (a straight line through the origin) from an inductive one (an
ellipse), a rectifier (flat in the middle, steep at the ends) or a saturating core (a bent
line), whatever the load's size. Reference: H. Y. Lam, G. S. K. Fung, W. K. Lee, "A novel method to
construct taxonomy of electrical appliances based on load signatures", IEEE Trans.
Consumer Electronics 53(2):653-660, 2007. Lam et al. describe the features in words; the
definitions below are this module's, chosen to be exact, cheap and independent of where
the window starts.

Mean trajectory
---------------
With L = fs/f samples per cycle, the window holds C = floor(n/L + 1e-9) whole cycles (at
least 2; the 1e-9 forgives rounding in fs/f), cycle c covering sample positions
[c·L, (c + 1)·L). A signal is read at a fractional position by linear interpolation between
the samples either side (the last cycle may reach up to one sample past the final one,
which is extrapolated linearly). Per phase:

1. Reference phase, one for the whole window: every cycle is resampled at the M =
   ``points`` instants c·L + k·L/M, k = 0..M-1, and the C resamplings are averaged point
   by point into a mean voltage cycle. With θ the phase of its DFT bin 1, u0 = (−θ/2π)
   mod 1, in [0, 1), is where the positive peak of the fundamental voltage falls within a
   cycle.
2. Every cycle of v and i is resampled at the instants c·L + ((u0 + k/M) mod 1)·L and the
   C resamplings are averaged point by point: the mean trajectory (x̄_k, ȳ_k). Point 0 is
   on the voltage peak, point M/4 near the falling and 3M/4 near the rising voltage zero.
3. It is normalised, x_k = x̄_k / max|x̄|, y_k = ȳ_k / max|ȳ| (so every feature is
   dimensionless and unchanged by scaling v or i), and the points p_k = (x_k, y_k),
   k = 0..M-1, form a closed polygon with indices taken modulo M.
4. The nine features below are computed once, on this polygon.

Why the trajectory is averaged rather than the features: noise that is not locked to the
supply averages out of the mean trajectory, its rms falling as 1/√C, while features taken
cycle by cycle keep all of it. A noisy cycle's polygon crosses itself wherever its two
branches run closer than the noise (a load at 10° displacement, white noise of 2 % of the
current's peak, 1 s at 15 kS/s: 0.15 spurious crossings per cycle, none on the mean
trajectory), and such counts never average away; the noise also inflates the cycle's
max|i|, which biases every normalised feature (the same noise put a 0.8 power-factor
motor's per-cycle area 2 % low, the mean trajectory's less than 1 %). And averaging first
is cheap: O(n) for the samples plus one feature pass per phase, instead of C of them.

Features (in the order of :data:`VI_FEATURE_NAMES`)
---------------------------------------------------
area
    |A| with A = ∮ x dy = ½ Σ_k (x_k·y_{k+1} − x_{k+1}·y_k), the shoelace formula. A purely
    reactive load traces the unit circle: area π (the M-gon underestimates it by
    1 − sin(2π/M)/(2π/M), 0.16 % at M = 64); a resistive load 0. Lobes of a self-
    intersecting trajectory that loop in opposite senses cancel.
asymmetry
    (1/M) Σ_k ‖p_k + p_{k+M/2}‖ / (2√2): mean distance between the trajectory and its copy
    rotated by 180° (point k against point k + M/2 negated), divided by the diagonal of the
    normalisation box, so it lies in [0, 1]. Zero for half-wave symmetric waveforms (odd
    harmonics only); even harmonics and DC raise it.
looping
    sign(A): +1 counter-clockwise (current lagging, inductive), −1 clockwise (leading,
    capacitive), 0 when |A| ≤ ``LOOP_DEADBAND`` (a straight line, against rounding).
curvature
    The mean line has the points m_j = (p_j + p_{M−j}) / 2, j = 0..M/2: the midpoints of
    the two branches at equal time before and after the voltage peak, i.e. at (nearly)
    equal voltage. curvature = √λ_min, λ_min the smaller eigenvalue of the (population)
    covariance of the m_j: the rms perpendicular distance of the mean line from its best
    straight line, 0 for a straight mean line. (1 − |Pearson r| is undefined for the
    horizontal mean line of a purely reactive load, hence this measure.)
intersections
    Number of proper crossings (at a point interior to both) between non-adjacent edges
    p_k→p_{k+1} of the polygon, by orientation tests; orientations within ``CROSS_EPS``
    of zero count as collinear, so a line traced back and forth (resistive load) has
    none. A count of the one mean polygon, so a whole number.
slope_mid
    Least-squares slope dy/dx through the points with |x_k| < ``SLOPE_BAND`` (0.5: the
    middle half of the voltage swing, a third of each half-cycle; both branches pooled).
    cos φ for a linear load with displacement φ: 1 resistive, 0 purely reactive. NaN if
    fewer than two such points.
peak_mid
    max |y_k| over the points with |x_k| < ``PEAK_BAND`` (0.1), i.e. the current near the
    voltage zeros; if no point is that close, |y| at the point of smallest |x|. |sin φ|
    (to within the band) for a linear load.
area_left, area_right
    |∫ x dy| over the parts of the trajectory with x < 0 and x ≥ 0, each edge that crosses
    x = 0 split at the crossing: the areas of the trajectory clipped to the left and right
    half-planes. Their signed values add up to A; π/2 each for the circle.

A phase whose samples are not all finite, or whose mean voltage or current cycle is
identically zero, gives NaN features; the other phases are unaffected. Cost: O(n) to check
the samples (skipped with ``check_finite=False``), O(C·M) to resample (the voltage twice,
the current once), O(M) for every feature but the crossings; these are found by merging
x-monotone chains, O(M) for a sine-like voltage and O(M²) at worst.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.waveform import _FLOATS

VI_FEATURE_NAMES = (
    "area",
    "asymmetry",
    "looping",
    "curvature",
    "intersections",
    "slope_mid",
    "peak_mid",
    "area_left",
    "area_right",
)
N_FEATURES = len(VI_FEATURE_NAMES)

# |A| at or below this (in normalised units²) counts as no loop: a resistive trajectory's
# signed area is rounding of either sign. π·sin φ = 1e-6 is φ ≈ 2e-5°.
LOOP_DEADBAND = 1e-6
# Orientation cross products (normalised units²) within this of zero count as collinear:
# float32 input leaves collinear points off their line by ~1e-8 units², a real crossing
# of 0.1-long edges at a visible angle gives ~1e-3.
CROSS_EPS = 1e-7
SLOPE_BAND = 0.5
PEAK_BAND = 0.1
_EXPONENT = np.uint64(0x7FF0_0000_0000_0000)  # the exponent bits of a float64


@jit
def _positions(cycle_whole, cycle_frac, offset, n, idx, wt):
    """Sample positions c·L + offset[k] as idx[c, k] + wt[c, k], for linear interpolation.

    c·L = cycle_whole[c] + cycle_frac[c], split beforehand. idx is the sample before the
    position and 0 <= wt < 1 the weight of the one after, except where the last cycle
    reaches past sample n - 2: there idx = n - 2 and wt >= 1 extrapolates. Adding whole and
    fractional parts separately keeps the weights exact to about 1e-16 and the loop free of
    float-to-integer conversions and branches, so it vectorises.
    """
    n_cycles, m = idx.shape
    whole = np.empty(m, dtype=np.int64)
    frac = np.empty(m)
    for k in range(m):
        base = math.floor(offset[k])
        whole[k] = int(base)
        frac[k] = offset[k] - base
    for c in range(n_cycles):
        ic = idx[c]
        wc = wt[c]
        cw = cycle_whole[c]
        cf = cycle_frac[c]
        for k in range(m):
            w = cf + frac[k]
            up = w >= 1.0
            wc[k] = w - 1.0 if up else w
            ic[k] = cw + whole[k] + (1 if up else 0)
    # Positions grow with c: only the last cycle can reach past the final sample.
    last = n - 2
    ic = idx[n_cycles - 1]
    wc = wt[n_cycles - 1]
    for k in range(m):
        if ic[k] > last:
            wc[k] += ic[k] - last
            ic[k] = last


@jit
def _finite(x):
    """Whether every sample of x is finite.

    x·0 is ±0 for a finite x and NaN for inf or NaN, whose exponent bits are all ones; OR-ing
    the bits of the products finds any such. An integer reduction without branches, so it
    vectorises. (float() is a no-op when compiled; without JIT it makes x·0 a Python
    product, which does not warn about inf·0 as numpy's would.)
    """
    bits = np.uint64(0)
    for k in range(x.shape[0]):
        bits |= np.float64(float(x[k]) * 0.0).view(np.uint64)
    return (bits & _EXPONENT) != _EXPONENT


@jit
def _mean_cycle(v, cycle_whole, idx, wt, x, check):
    """x[k] = mean over c of v interpolated at sample position idx[c, k] + wt[c, k].

    Returns whether all of v is finite (with ``check``; else True), checked block by block
    just after the block's samples were read, while they are still cached. Cycles run
    outside, four at a time, and points inside: each point's sum is updated once per four
    cycles, and the m sums are independent, so no add waits on the previous one.
    """
    n_cycles, m = idx.shape
    one = np.uint64(1)
    ok = True
    x[:] = 0.0
    n4 = (n_cycles - 1) - (n_cycles - 1) % 4  # blocks of four, and 1 to 4 cycles left over
    for c in range(0, n4, 4):
        i0 = idx[c]
        i1 = idx[c + 1]
        i2 = idx[c + 2]
        i3 = idx[c + 3]
        w0 = wt[c]
        w1 = wt[c + 1]
        w2 = wt[c + 2]
        w3 = wt[c + 3]
        for k in range(m):
            j0 = np.uint64(i0[k])  # unsigned: no test for negative indices
            j1 = np.uint64(i1[k])
            j2 = np.uint64(i2[k])
            j3 = np.uint64(i3[k])
            b0 = w0[k]
            b1 = w1[k]
            b2 = w2[k]
            b3 = w3[k]
            x[k] += (
                ((1.0 - b0) * v[j0] + b0 * v[j0 + one])
                + ((1.0 - b1) * v[j1] + b1 * v[j1 + one])
                + ((1.0 - b2) * v[j2] + b2 * v[j2 + one])
                + ((1.0 - b3) * v[j3] + b3 * v[j3 + one])
            )
        if check:
            ok &= _finite(v[cycle_whole[c] : cycle_whole[c + 4]])
    for c in range(n4, n_cycles):
        ic = idx[c]
        wc = wt[c]
        for k in range(m):
            j = np.uint64(ic[k])
            b = wc[k]
            x[k] += (1.0 - b) * v[j] + b * v[j + one]
    if check:
        ok &= _finite(v[cycle_whole[n4] :])
    for k in range(m):
        x[k] /= n_cycles
    return ok


@jit
def _mean_trajectory(v, i, cycle_whole, cycle_frac, offset, x, y, check):
    """x[k], y[k] = mean over c of v, i interpolated at sample position c·L + offset[k].

    c·L = cycle_whole[c] + cycle_frac[c]. Returns whether all of i is finite (with
    ``check``; else True; v was checked by _mean_cycle). As _positions and _mean_cycle in
    one pass, without the table: with two signals to interpolate at each position, working
    the position out again costs less than storing and reloading it.
    """
    n_cycles = cycle_whole.shape[0]
    m = offset.shape[0]
    one = np.uint64(1)
    whole = np.empty(m, dtype=np.int64)
    frac = np.empty(m)
    for k in range(m):
        base = math.floor(offset[k])
        whole[k] = int(base)
        frac[k] = offset[k] - base
    ok = True
    x[:] = 0.0
    y[:] = 0.0
    # Blocks of four cycles, all but the last cycle: only the last can reach past the end.
    n4 = (n_cycles - 1) - (n_cycles - 1) % 4
    for c in range(0, n4, 4):
        s0 = cycle_whole[c]
        s1 = cycle_whole[c + 1]
        s2 = cycle_whole[c + 2]
        s3 = cycle_whole[c + 3]
        f0 = cycle_frac[c]
        f1 = cycle_frac[c + 1]
        f2 = cycle_frac[c + 2]
        f3 = cycle_frac[c + 3]
        for k in range(m):
            p = whole[k]
            q = frac[k]
            b0 = f0 + q
            b1 = f1 + q
            b2 = f2 + q
            b3 = f3 + q
            up0 = b0 >= 1.0
            up1 = b1 >= 1.0
            up2 = b2 >= 1.0
            up3 = b3 >= 1.0
            b0 = b0 - 1.0 if up0 else b0
            b1 = b1 - 1.0 if up1 else b1
            b2 = b2 - 1.0 if up2 else b2
            b3 = b3 - 1.0 if up3 else b3
            j0 = np.uint64(s0 + p + (1 if up0 else 0))  # unsigned: no test for negatives
            j1 = np.uint64(s1 + p + (1 if up1 else 0))
            j2 = np.uint64(s2 + p + (1 if up2 else 0))
            j3 = np.uint64(s3 + p + (1 if up3 else 0))
            a0 = 1.0 - b0
            a1 = 1.0 - b1
            a2 = 1.0 - b2
            a3 = 1.0 - b3
            x[k] += (
                (a0 * v[j0] + b0 * v[j0 + one])
                + (a1 * v[j1] + b1 * v[j1 + one])
                + (a2 * v[j2] + b2 * v[j2 + one])
                + (a3 * v[j3] + b3 * v[j3 + one])
            )
            y[k] += (
                (a0 * i[j0] + b0 * i[j0 + one])
                + (a1 * i[j1] + b1 * i[j1 + one])
                + (a2 * i[j2] + b2 * i[j2 + one])
                + (a3 * i[j3] + b3 * i[j3 + one])
            )
        if check:
            ok &= _finite(i[s0 : cycle_whole[c + 4]])
    last = v.shape[0] - 2
    for c in range(n4, n_cycles):
        for k in range(m):
            b = cycle_frac[c] + frac[k]
            j = cycle_whole[c] + whole[k]
            if b >= 1.0:
                b -= 1.0
                j += 1
            if j > last:  # extrapolate past the final sample
                b += j - last
                j = last
            x[k] += (1.0 - b) * v[j] + b * v[j + 1]
            y[k] += (1.0 - b) * i[j] + b * i[j + 1]
    if check:
        ok &= _finite(i[cycle_whole[n4] :])
    for k in range(m):
        x[k] /= n_cycles
        y[k] /= n_cycles
    return ok


@jit
def _normalise(x):
    peak = 0.0
    for k in range(x.shape[0]):
        peak = max(peak, abs(x[k]))
    if peak == 0.0:
        return False
    for k in range(x.shape[0]):
        x[k] /= peak
    return True


@jit
def _crosses(x, y, a, b):
    """Whether edges a and b (p_a→p_a+1, p_b→p_b+1) cross at a point interior to both."""
    m = x.shape[0]
    a1 = a + 1 if a + 1 < m else 0
    b1 = b + 1 if b + 1 < m else 0
    ex = x[a1] - x[a]
    ey = y[a1] - y[a]
    o1 = ex * (y[b] - y[a]) - ey * (x[b] - x[a])
    o2 = ex * (y[b1] - y[a]) - ey * (x[b1] - x[a])
    if not ((o1 > CROSS_EPS and o2 < -CROSS_EPS) or (o1 < -CROSS_EPS and o2 > CROSS_EPS)):
        return False
    fx = x[b1] - x[b]
    fy = y[b1] - y[b]
    o3 = fx * (y[a] - y[b]) - fy * (x[a] - x[b])
    o4 = fx * (y[a1] - y[b]) - fy * (x[a1] - x[b])
    return (o3 > CROSS_EPS and o4 < -CROSS_EPS) or (o3 < -CROSS_EPS and o4 > CROSS_EPS)


@jit
def _crossings(x, y, edges, chain_start, chain_dir):
    """Self-crossings of the closed polygon (x, y), by x-monotone chains.

    Edges of one chain along which x never turns back cannot cross each other, and two
    chains, each sorted by x, are merged like two sorted interval lists: only edges whose
    x-ranges overlap are tested. The voltage alone sets the chains, so a sine-like voltage
    gives two chains (falling and rising) and O(M) tests, however noisy the current.
    """
    m = x.shape[0]
    # Start the walk at an edge that turns back in x, so no chain wraps around.
    first = -1
    prev = 0.0
    for k in range(m - 1, -1, -1):
        k1 = k + 1 if k + 1 < m else 0
        if x[k1] != x[k]:
            prev = x[k1] - x[k]
            break
    if prev == 0.0:
        return 0  # x constant: the polygon is a vertical line
    for k in range(m):
        k1 = k + 1 if k + 1 < m else 0
        d = x[k1] - x[k]
        if d != 0.0:
            if (d > 0.0) != (prev > 0.0):
                first = k
                break
            prev = d
    n_chains = 0
    direction = 0.0
    for j in range(m):
        e = first + j
        if e >= m:
            e -= m
        edges[j] = e
        e1 = e + 1 if e + 1 < m else 0
        d = x[e1] - x[e]
        if (d != 0.0 and (d > 0.0) != (direction > 0.0)) or n_chains == 0:
            chain_start[n_chains] = j
            chain_dir[n_chains] = 1 if d > 0.0 else -1
            direction = d
            n_chains += 1
    chain_start[n_chains] = m

    count = 0
    for p in range(n_chains):
        p_len = chain_start[p + 1] - chain_start[p]
        for q in range(p + 1, n_chains):
            q_len = chain_start[q + 1] - chain_start[q]
            i = 0
            j = 0
            while i < p_len and j < q_len:
                # Walk both chains by increasing x (a falling chain backwards).
                ia = chain_start[p] + (i if chain_dir[p] > 0 else p_len - 1 - i)
                jb = chain_start[q] + (j if chain_dir[q] > 0 else q_len - 1 - j)
                a = edges[ia]
                b = edges[jb]
                a1 = a + 1 if a + 1 < m else 0
                b1 = b + 1 if b + 1 < m else 0
                a_lo = min(x[a], x[a1])
                a_hi = max(x[a], x[a1])
                b_lo = min(x[b], x[b1])
                b_hi = max(x[b], x[b1])
                if a_lo < b_hi and b_lo < a_hi and a1 != b and b1 != a:
                    if _crosses(x, y, a, b):
                        count += 1
                if a_hi <= b_hi:
                    i += 1
                else:
                    j += 1
    return count


@jit
def _cycle_features(x, y, work, out):
    """The features of the normalised mean cycle (x, y), into out[0:9]."""
    m = x.shape[0]
    h = m // 2

    # Signed areas left and right of x = 0 as ∫ x dy; their sum is the shoelace area.
    left = 0.0
    right = 0.0
    for k in range(m):
        k1 = k + 1 if k + 1 < m else 0
        xa = x[k]
        ya = y[k]
        xb = x[k1]
        yb = y[k1]
        if xa >= 0.0 and xb >= 0.0:
            right += 0.5 * (xa + xb) * (yb - ya)
        elif xa < 0.0 and xb < 0.0:
            left += 0.5 * (xa + xb) * (yb - ya)
        else:
            yc = ya + xa / (xa - xb) * (yb - ya)
            if xa >= 0.0:
                right += 0.5 * xa * (yc - ya)
                left += 0.5 * xb * (yb - yc)
            else:
                left += 0.5 * xa * (yc - ya)
                right += 0.5 * xb * (yb - yc)
    area = left + right

    asym = 0.0
    for k in range(h):
        sx = x[k] + x[k + h]
        sy = y[k] + y[k + h]
        asym += math.sqrt(sx * sx + sy * sy)
    asym /= h * 2.0 * math.sqrt(2.0)

    # Mean line m_j = (p_j + p_{m-j}) / 2, j = 0..h; rms distance from its best line.
    mx = 0.0
    my = 0.0
    for j in range(h + 1):
        jj = m - j if j > 0 else 0
        mx += 0.5 * (x[j] + x[jj])
        my += 0.5 * (y[j] + y[jj])
    mx /= h + 1
    my /= h + 1
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    for j in range(h + 1):
        jj = m - j if j > 0 else 0
        dx = 0.5 * (x[j] + x[jj]) - mx
        dy = 0.5 * (y[j] + y[jj]) - my
        sxx += dx * dx
        syy += dy * dy
        sxy += dx * dy
    sxx /= h + 1
    syy /= h + 1
    sxy /= h + 1
    half = 0.5 * (sxx - syy)
    lam_min = 0.5 * (sxx + syy) - math.sqrt(half * half + sxy * sxy)
    curv = math.sqrt(max(lam_min, 0.0))

    n_mid = 0
    bx = 0.0
    by = 0.0
    for k in range(m):
        if abs(x[k]) < SLOPE_BAND:
            n_mid += 1
            bx += x[k]
            by += y[k]
    slope = math.nan
    if n_mid >= 2:
        bx /= n_mid
        by /= n_mid
        sxx = 0.0
        sxy = 0.0
        for k in range(m):
            if abs(x[k]) < SLOPE_BAND:
                sxx += (x[k] - bx) * (x[k] - bx)
                sxy += (x[k] - bx) * (y[k] - by)
        if sxx > 0.0:
            slope = sxy / sxx

    peak = -1.0
    nearest = 0
    for k in range(m):
        if abs(x[k]) < PEAK_BAND:
            peak = max(peak, abs(y[k]))
        if abs(x[k]) < abs(x[nearest]):
            nearest = k
    if peak < 0.0:
        peak = abs(y[nearest])

    if area > LOOP_DEADBAND:
        loop = 1.0
    elif area < -LOOP_DEADBAND:
        loop = -1.0
    else:
        loop = 0.0

    out[0] = abs(area)
    out[1] = asym
    out[2] = loop
    out[3] = curv
    out[4] = _crossings(x, y, work[0], work[1], work[2])
    out[5] = slope
    out[6] = peak
    out[7] = abs(left)
    out[8] = abs(right)


@jit
def _vi_features(v, i, period, n_cycles, unit_circle, check):
    out = np.empty((v.shape[0], N_FEATURES))
    n = v.shape[1]
    m = unit_circle.shape[1]
    cos_t = unit_circle[0]
    sin_t = unit_circle[1]
    offset = np.empty(m)
    for k in range(m):
        offset[k] = k * (period / m)
    cycle_whole = np.empty(n_cycles, dtype=np.int64)
    cycle_frac = np.empty(n_cycles)
    for c in range(n_cycles):
        start = c * period
        base = math.floor(start)
        cycle_whole[c] = int(base)
        cycle_frac[c] = start - base
    # The unrotated grid is the same for every phase: tabulate its positions once.
    grid_idx = np.empty((n_cycles, m), dtype=np.int64)
    grid_wt = np.empty((n_cycles, m))
    _positions(cycle_whole, cycle_frac, offset, n, grid_idx, grid_wt)
    x = np.empty(m)
    y = np.empty(m)
    work = np.empty((3, m + 1), dtype=np.int64)
    for c in range(v.shape[0]):
        vc = v[c]
        ic = i[c]
        # Reference phase: DFT bin 1 of the mean voltage cycle on the unrotated grid. A
        # non-finite voltage stops here, before it could turn into positions.
        if not _mean_cycle(vc, cycle_whole, grid_idx, grid_wt, x, check):
            out[c, :] = math.nan
            continue
        re = 0.0
        im = 0.0
        for k in range(m):
            re += x[k] * cos_t[k]
            im -= x[k] * sin_t[k]
        # x_k ≈ A·cos(2πk/m + θ) has its peak at k = -θ·m/2π.
        u0 = -math.atan2(im, re) / (2.0 * math.pi)
        if not math.isfinite(u0):  # unchecked non-finite samples: no positions from them
            out[c, :] = math.nan
            continue
        u0 -= math.floor(u0)
        # Mean trajectory on the grid turned to start at the voltage peak.
        for k in range(m):
            u = u0 + k / m
            if u >= 1.0:
                u -= 1.0
            offset[k] = u * period
        finite = _mean_trajectory(vc, ic, cycle_whole, cycle_frac, offset, x, y, check)
        if not (finite and _normalise(x) and _normalise(y)):
            out[c, :] = math.nan
            continue
        _cycle_features(x, y, work, out[c])
    return out


@functools.lru_cache(maxsize=8)
def _unit_circle(m: int) -> np.ndarray:
    """cos and sin of 2πk/m, k = 0..m-1: the DFT's bin 1 (read-only)."""
    k = np.arange(m)
    table = np.stack([np.cos(2 * np.pi * k / m), np.sin(2 * np.pi * k / m)])
    table.setflags(write=False)
    return table


def _as_float(a: np.ndarray) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype in _FLOATS and a.flags.c_contiguous:
        return a
    a = np.asarray(a)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(a, dtype=dtype)


def vi_features(
    v: np.ndarray,
    i: np.ndarray,
    fs: float,
    f: float,
    points: int = 64,
    *,
    check_finite: bool = True,
) -> np.ndarray:
    """V-I trajectory features of each phase, of its trajectory averaged over whole cycles.

    Parameters
    ----------
    v : phase voltages a, b, c, shape (3, n), any unit
    i : line currents a, b, c, shape (3, n), sampled with ``v``, any unit
    fs : sample rate, Hz
    f : supply frequency, Hz (the measured one: cycles are cut every fs/f samples, which
        need not be an integer)
    points : instants per cycle M, even, at least 8
    check_finite : whether to check that every sample is finite, a phase with a NaN or ±inf
        sample giving NaN features. ``False`` skips reading the samples for it (3 µs a phase
        for 1 s at 15 kS/s); pass it only for samples known to be finite, as the
        pipeline's windows are: for others the features are undefined (NaN or garbage,
        never a read outside the arrays).

    Returns an array of shape (3, 9): one row per phase, columns in the order of
    :data:`VI_FEATURE_NAMES`, all dimensionless; see the module docstring for each
    definition. Example: a motor at 0.8 power factor traces an ellipse, area ≈ π·0.6 ≈ 1.88,
    looping +1, slope_mid ≈ 0.8, intersections 0.
    """
    # float32 or float64 as given (the cycle averages are formed in float64 either way).
    v = _as_float(v)
    i = _as_float(i)
    if i.dtype != v.dtype:
        i = i.astype(v.dtype)
    if v.ndim != 2 or v.shape[0] != 3:
        raise ValueError(f"v must have shape (3, n), got {v.shape}")
    if i.shape != v.shape:
        raise ValueError(f"i must have the shape of v {v.shape}, got {i.shape}")
    if fs <= 0:
        raise ValueError(f"{fs=} must be positive")
    if not 0 < f < fs / 2:
        raise ValueError(f"{f=} Hz must lie between 0 and fs/2 = {fs / 2:g} Hz")
    if int(points) != points or points < 8 or points % 2:
        raise ValueError(f"{points=} must be an even integer of at least 8")
    n = v.shape[1]
    n_cycles = int(math.floor(n * f / fs + 1e-9))
    if n_cycles < 2:
        raise ValueError(
            f"{n} samples at fs={fs:g} Hz hold {n_cycles} whole cycle(s) of f={f:g} Hz; "
            "need at least 2"
        )
    return _vi_features(v, i, fs / f, n_cycles, _unit_circle(int(points)), bool(check_finite))
