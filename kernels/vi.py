"""V-I trajectory shape features per phase, after Lam, Fung & Lee (2007).

The V-I trajectory is the closed curve (v(t), i(t)) traced over one supply cycle. Its shape
tells a resistive load (a straight line through the origin) from an inductive one (an
ellipse), a rectifier (flat in the middle, steep at the ends) or a saturating core (a bent
line), whatever the load's size. Reference: H. Y. Lam, G. S. K. Fung, W. K. Lee, "A novel method to
construct taxonomy of electrical appliances based on load signatures", IEEE Trans.
Consumer Electronics 53(2):653-660, 2007. Lam et al. describe the features in words; the
definitions below are this module's, chosen to be exact, cheap and independent of where
the window starts.

Trajectory of one cycle
-----------------------
With L = fs/f samples per cycle, the window holds C = floor(n / L) whole cycles; cycle c
covers sample positions [c·L, (c + 1)·L). Each is resampled to M = ``points`` instants by
linear interpolation between samples (the last cycle may reach up to one sample past the
final one, which is extrapolated linearly). The instants are rotated within the cycle so
that point 0 falls on the positive peak of the cycle's fundamental voltage (the phase of
DFT bin 1 of a first, unrotated resampling): point M/4 is then near the falling and 3M/4
near the rising voltage zero. Each cycle is normalised, x_k = v_k / max|v|, y_k = i_k /
max|i| (so every feature is dimensionless and unchanged by scaling v or i), and the points
p_k = (x_k, y_k), k = 0..M-1, form a closed polygon with indices taken modulo M. Every
feature is computed per cycle and averaged over the C cycles.

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
    Averaged over cycles it lies in [−1, 1].
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
    none. Averaged over cycles it need not be an integer.
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

A phase whose samples are not all finite, or whose voltage or current is identically zero
over some cycle, gives NaN features. Cost: O(n) to check the samples, O(C·M) to resample
and for every feature but the crossings; these are found by merging x-monotone chains,
O(C·M) for a sine-like voltage and O(C·M²) at worst.
"""

from __future__ import annotations

import math

import numpy as np
from edge_agent.kernels._flags import jit

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


@jit
def _interp(x, s):
    """x at fractional sample position s >= 0, linear; extrapolates past the last sample."""
    j = int(s)
    if j > x.shape[0] - 2:
        j = x.shape[0] - 2
    return x[j] + (s - j) * (x[j + 1] - x[j])


@jit
def _resample_cycle(v, i, start, period, m, cos_t, sin_t, x, y):
    """Cycle [start, start + period) of v and i at m instants, point 0 on the voltage peak."""
    step = period / m
    re = 0.0
    im = 0.0
    for k in range(m):
        xv = _interp(v, start + k * step)
        re += xv * cos_t[k]
        im -= xv * sin_t[k]
    # x_k ≈ A·cos(2πk/m + θ) has its peak at k = -θ·m/2π.
    u0 = -math.atan2(im, re) / (2.0 * math.pi)
    u0 -= math.floor(u0)
    for k in range(m):
        u = u0 + k / m
        if u >= 1.0:
            u -= 1.0
        s = start + u * period
        x[k] = _interp(v, s)
        y[k] = _interp(i, s)


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
def _cycle_features(x, y, work, acc):
    """Add the features of one normalised cycle (x, y) to acc[0:9]."""
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

    acc[0] += abs(area)
    acc[1] += asym
    acc[2] += loop
    acc[3] += curv
    acc[4] += _crossings(x, y, work[0], work[1], work[2])
    acc[5] += slope
    acc[6] += peak
    acc[7] += abs(left)
    acc[8] += abs(right)


@jit
def _vi_features(v, i, period, n_cycles, m, out):
    cos_t = np.empty(m)
    sin_t = np.empty(m)
    for k in range(m):
        cos_t[k] = math.cos(2.0 * math.pi * k / m)
        sin_t[k] = math.sin(2.0 * math.pi * k / m)
    x = np.empty(m)
    y = np.empty(m)
    work = np.empty((3, m + 1), dtype=np.int64)
    for c in range(v.shape[0]):
        vc = v[c]
        ic = i[c]
        finite = True
        for k in range(vc.shape[0]):
            if not (math.isfinite(vc[k]) and math.isfinite(ic[k])):
                finite = False
                break
        acc = out[c]
        acc[:] = 0.0
        if not finite:
            acc[:] = math.nan
            continue
        for cyc in range(n_cycles):
            _resample_cycle(vc, ic, cyc * period, period, m, cos_t, sin_t, x, y)
            if not (_normalise(x) and _normalise(y)):
                acc[:] = math.nan
                break
            _cycle_features(x, y, work, acc)
        for q in range(acc.shape[0]):
            acc[q] /= n_cycles
    return out


def vi_features(v: np.ndarray, i: np.ndarray, fs: float, f: float, points: int = 64) -> np.ndarray:
    """V-I trajectory features of each phase, averaged over the window's whole cycles.

    Parameters
    ----------
    v : phase voltages a, b, c, shape (3, n), any unit
    i : line currents a, b, c, shape (3, n), sampled with ``v``, any unit
    fs : sample rate, Hz
    f : supply frequency, Hz (the measured one: cycles are cut every fs/f samples, which
        need not be an integer)
    points : instants per cycle M, even, at least 8

    Returns an array of shape (3, 9): one row per phase, columns in the order of
    :data:`VI_FEATURE_NAMES`, all dimensionless; see the module docstring for each
    definition. Example: a motor at 0.8 power factor traces an ellipse, area ≈ π·0.6 ≈ 1.88,
    looping +1, slope_mid ≈ 0.8, intersections 0.
    """
    v = np.ascontiguousarray(v, dtype=np.float64)
    i = np.ascontiguousarray(i, dtype=np.float64)
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
    out = np.empty((3, N_FEATURES))
    return _vi_features(v, i, fs / f, n_cycles, int(points), out)
