"""Slow, obviously-correct references for every kernel, to compare the fast ones with.

Plain loops and numpy, written from the textbook definitions, no cleverness.
"""

from __future__ import annotations

import cmath
import math

import numpy as np


def window(name: str, n: int) -> np.ndarray:
    if name == "hann":
        return np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / n) for i in range(n)])
    a = (0.35875, 0.48829, 0.14128, 0.01168)
    return np.array(
        [
            a[0]
            - a[1] * math.cos(2 * math.pi * i / n)
            + a[2] * math.cos(4 * math.pi * i / n)
            - a[3] * math.cos(6 * math.pi * i / n)
            for i in range(n)
        ]
    )


def power_spectrum(x: np.ndarray, fs: float, window_name: str = "hann") -> np.ndarray:
    """|DFT|² scaled so a sine of amplitude A on a bin reads A², by the DFT definition."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1]
    w = window(window_name, n)
    k = np.arange(n // 2 + 1)[:, None]
    basis = np.exp(-2j * np.pi * k * np.arange(n)[None, :] / n)
    spec = (x * w) @ basis.T
    return np.abs(spec) ** 2 * (2.0 / w.sum()) ** 2


def peak_frequency(p: np.ndarray, df: float, fmin: float, fmax: float) -> float:
    """From the bin nearest fmin to the one nearest fmax. NaN bins are never the peak, and a
    NaN neighbour counts as empty."""
    lo = max(1, math.floor(fmin / df + 0.5))
    hi = min(len(p) - 1, math.floor(fmax / df + 0.5) + 1)
    band = [k for k in range(lo, hi) if p[k] > -math.inf]  # not NaN
    if not band:
        return math.nan
    k = max(band, key=lambda j: (p[j], -j))
    if k >= len(p) - 1 or p[k] <= 0:
        return float(k * df)
    a, b, c = (math.log(v) if v > 1e-300 else math.log(1e-300) for v in p[k - 1 : k + 2])
    den = a - 2 * b + c
    delta = 0.0 if den >= 0 else min(0.5, max(-0.5, 0.5 * (a - c) / den))
    return (k + delta) * df


def band_power(p: np.ndarray, df: float, f: float, half_width: int) -> float:
    k0 = round(f / df)
    return float(
        sum(p[k] for k in range(max(0, k0 - half_width), min(len(p) - 1, k0 + half_width) + 1))
    )


def thd(p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2) -> np.ndarray:
    p = np.atleast_2d(p)
    out = []
    for row in p:
        fund = band_power(row, df, f, half_width)
        harm = sum(band_power(row, df, h * f, half_width) for h in range(2, n_harmonics + 1))
        out.append(math.sqrt(harm / fund))
    return np.array(out)


def dft_phasors(x: np.ndarray, fs: float, f: float) -> np.ndarray:
    x = np.atleast_2d(x)
    n = x.shape[1]
    w = window("hann", n)
    out = []
    for row in x:
        acc = sum(w[i] * row[i] * cmath.exp(-2j * math.pi * f * i / fs) for i in range(n))
        out.append(acc * 2 / w.sum())
    return np.array(out)


def sequence_components(ph: np.ndarray) -> tuple[complex, complex, complex]:
    a = cmath.exp(2j * math.pi / 3)
    m = np.array([[1, 1, 1], [1, a, a * a], [1, a * a, a]]) / 3
    i0, i1, i2 = m @ np.asarray(ph)
    return complex(i0), complex(i1), complex(i2)


def rms(x: np.ndarray) -> np.ndarray:
    x = np.atleast_2d(x)
    return np.array([math.sqrt(sum(v * v for v in row) / len(row)) for row in x])


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Park's vector modulus, its windowed mean, and its line at f_line, by definition."""
    ia, ib, ic = np.asarray(x, dtype=np.float64)
    i_d = math.sqrt(2 / 3) * ia - ib / math.sqrt(6) - ic / math.sqrt(6)
    i_q = (ib - ic) / math.sqrt(2)
    m = np.hypot(i_d, i_q)
    w = window("hann", len(m))
    dc = float(np.sum(w * m) / w.sum())
    t = np.arange(len(m)) / fs
    amp = abs(np.sum(w * (m - dc) * np.exp(-2j * np.pi * f_line * t))) * 2 / w.sum()
    return 20 * math.log10(max(amp / dc, 1e-15))


def brb_sidebands(p, df, f, s_lo, s_hi, half_width=4):
    """Exhaustive pair search, as the docstring of kernels.sidebands describes."""
    kf = f / df
    fund = band_power(p, df, f, half_width)
    lo = max(1, math.ceil(f * (1 - 2 * s_hi) / df))
    hi = math.floor(f * (1 - 2 * s_lo) / df)
    scores = {}
    for k in range(lo, hi + 1):
        mirror = round(2 * kf - k)
        if mirror < len(p) and p[k] > p[k - 1] and p[k] >= p[k + 1]:
            scores[k] = p[k] + p[mirror]
    if not scores:
        scores = {k: p[k] + p[round(2 * kf - k)] for k in range(lo, hi + 1)}
    best = max(scores, key=lambda k: (scores[k], -k))
    k_lsb = peak_frequency(p, 1.0, max(best - 1, 1), min(best + 1, len(p) - 2))
    slip = (kf - k_lsb) / (2 * kf)
    lsb = band_power(p, df, k_lsb * df, half_width)
    usb = band_power(p, df, f * (1 + 2 * slip), half_width)
    floor = (
        float(np.median(p[lo : hi + 1]))
        if (hi - lo) % 2 == 0
        else float(np.sort(p[lo : hi + 1])[(hi - lo + 1) // 2])
    )
    floor *= 2 * half_width + 1
    return (
        slip,
        10 * math.log10(lsb / fund),
        10 * math.log10(usb / fund),
        10 * math.log10(lsb / floor),
    )


def fir_decimate(x: np.ndarray, taps: np.ndarray, factor: int) -> np.ndarray:
    """Full convolution from zero initial state, every factor-th output from the first."""
    x = np.atleast_2d(x)
    return np.array([np.convolve(row, taps)[: row.shape[0]][::factor] for row in x])


def space_vector(x: np.ndarray) -> np.ndarray:
    """i_α + j·i_β of phases x (3, n): the amplitude-invariant Clarke transform, per sample."""
    ia, ib, ic = np.asarray(x, dtype=np.float64)
    return np.array(
        [
            complex(2 / 3 * (a - (b + c) / 2), (b - c) / math.sqrt(3))
            for a, b, c in zip(ia, ib, ic, strict=True)
        ]
    )


def space_vector_decimate(x: np.ndarray, taps: np.ndarray, factor: int) -> np.ndarray:
    """The space vector of phases x (3, n), filtered and decimated as fir_decimate does."""
    z = space_vector(x)
    re, im = fir_decimate(np.stack([z.real, z.imag]), taps, factor)
    return re + 1j * im


def space_vector_spectrum(x: np.ndarray, fs: float, window_name: str = "blackmanharris"):
    """Clarke transform sample by sample, then the DFT by definition at bins 0 .. n//2."""
    z = space_vector(x)
    n = len(z)
    w = window(window_name, n)
    out = []
    for k in range(n // 2 + 1):
        acc = sum(w[i] * z[i] * cmath.exp(-2j * math.pi * k * i / n) for i in range(n))
        out.append(abs(acc) ** 2 / w.sum() ** 2)
    return np.array(out)


# --- spectral engine ---------------------------------------------------------------------


def phase_spectra(x, fs, window_name="hann"):
    """Per-phase spectra by three DFTs at the padded length, and sequence spectra by the
    Clarke transform of the three complex spectra (bins 0 .. nfft//2)."""
    import scipy.fft

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    nfft = scipy.fft.next_fast_len(-(-n // 512) * 512, real=False)
    w = window(window_name, n)
    spec = [np.fft.fft(row * w, nfft)[: nfft // 2 + 1] for row in x]
    scale = (2 / w.sum()) ** 2
    a = cmath.exp(2j * math.pi / 3)
    zp = 2 / 3 * (spec[0] + a * spec[1] + a * a * spec[2])
    zn = 2 / 3 * (np.conj(spec[0]) + a * np.conj(spec[1]) + a * a * np.conj(spec[2]))
    return (
        np.array([np.abs(s) ** 2 * scale for s in spec]),
        np.abs(zp) ** 2 * scale / 4,
        np.abs(zn) ** 2 * scale / 4,
        fs / nfft,
    )


# --- waveform statistics and data quality ------------------------------------------------


def waveform_stats(x: np.ndarray) -> np.ndarray:
    """rms, peak, crest, skew, kurtosis (Pearson), dc by definition, two-pass with fsum."""
    out = []
    for row in np.atleast_2d(np.asarray(x, dtype=np.float64)):
        n = len(row)
        if not np.all(np.isfinite(row)):
            out.append([math.nan] * 6)
            continue
        mean = math.fsum(row) / n
        # A constant's deviations are 0 exactly, however its mean rounds.
        d = [0.0] * n if np.all(row == row[0]) else [v - mean for v in row]
        m2, m3, m4 = (math.fsum(e**k for e in d) / n for k in (2, 3, 4))
        rms = math.sqrt(math.fsum(v * v for v in row) / n)
        peak = max(abs(v) for v in row)
        crest = peak / rms if rms > 0 else math.nan
        skew = m3 / m2**1.5 if m2 > 0 else math.nan
        kurt = m4 / m2**2 if m2 > 0 else math.nan
        out.append([rms, peak, crest, skew, kurt, mean])
    return np.array(out)


def fill_gaps(x: np.ndarray, max_gap: int) -> tuple[np.ndarray, int, bool]:
    """np.interp over the finite samples (it holds the end values), then unfill long gaps."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = x.copy()
    n_filled, long_gap = 0, False
    for c, row in enumerate(x):
        bad = ~np.isfinite(row)
        idx = np.arange(len(row))
        if bad.all():
            out[c] = np.nan
            long_gap = long_gap or bool(bad.any())
            continue
        out[c, bad] = np.interp(idx[bad], idx[~bad], row[~bad])
        i = 0
        while i < len(row):
            if not bad[i]:
                i += 1
                continue
            j = i
            while j < len(row) and bad[j]:
                j += 1
            if j - i > max_gap:
                out[c, i:j] = np.nan
                long_gap = True
            else:
                n_filled += j - i
            i = j
    return out, n_filled, long_gap


def _runs(flags: list[bool]) -> list[int]:
    """Lengths of the runs of True in flags."""
    runs, r = [], 0
    for f in [*flags, False]:
        if f:
            r += 1
        elif r:
            runs.append(r)
            r = 0
    return runs


def detect_clipping(x: np.ndarray, rails=None, min_run: int = 10) -> np.ndarray:
    """Runs at the rails (or at the channel's own extremes, on two or more crests)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = []
    for c, row in enumerate(x):
        if rails is not None:
            lo, hi = np.broadcast_to(np.asarray(rails, dtype=np.float64), (len(x), 2))[c]
            tol = 1e-9 * (hi - lo)
            sides = [[v >= hi - tol for v in row], [v <= lo + tol for v in row]]
            out.append(sum(r for side in sides for r in _runs(side) if r >= min_run))
            continue
        finite = row[~np.isnan(row)]
        if len(finite) == 0 or finite.max() == finite.min():
            out.append(0)
            continue
        total = 0
        for level in (finite.max(), finite.min()):
            long_runs = [r for r in _runs([v == level for v in row]) if r >= min_run]
            if len(long_runs) >= 2:
                total += sum(long_runs)
        out.append(total)
    return np.array(out, dtype=np.int64)


def remove_dc(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - np.array([math.fsum(r) / len(r) for r in np.atleast_2d(x)]).reshape(
        (*x.shape[:-1], 1)
    )


# --- fault lines: eccentricity, bearings, rotor slots ---


def _fault_line_bin(p, k0):
    """The largest of bins k0, k0 - 1, k0 + 1 (the first listed on ties)."""
    return max((k0, k0 - 1, k0 + 1), key=lambda i: p[i])


def _fault_line_floor(p, k, half_width, floor_half_band):
    """Median of single bins within floor_half_band of k (not bin 0, not the line's own),
    scaled to a band power and from median to mean of an exponential distribution."""
    lo, hi = max(1, k - floor_half_band), min(len(p) - 1, k + floor_half_band)
    band = [p[i] for i in range(lo, hi + 1) if abs(i - k) > half_width]
    median = float(np.sort(band)[len(band) // 2])  # the upper median, as brb_sidebands
    return median * (2 * half_width + 1) / math.log(2)


def _fault_db(power, ref):
    return math.nan if math.isnan(power) else 10 * math.log10(max(power, 1e-300) / ref)


def line_levels(p, df, f, offsets, half_width=4, floor_half_band=32):
    """Each line's band power and floor, by the definitions in kernels.lines."""
    n = len(p)
    fund = band_power(p, df, f, half_width)
    levels, floors = [], []
    for off in offsets:
        kl = (f + off) / df
        k0 = round(kl) if 0 < kl < n else None
        if k0 is None or k0 - 1 - half_width < 0 or k0 + 1 + half_width > n - 1:
            levels.append(math.nan)
            floors.append(math.nan)
            continue
        k = _fault_line_bin(p, k0)
        levels.append(_fault_db(band_power(p, 1.0, k, half_width), fund))
        floors.append(_fault_db(_fault_line_floor(p, k, half_width, floor_half_band), fund))
    return np.array(levels), np.array(floors)


def _fault_pair_slip(p, df, f, upper_bin, partner_bin, x_of, slip_of, lo, hi, hw, fhb):
    """Exhaustive pair search over upper-line bins lo..hi, as kernels.lines describes."""
    scores = {}
    for k in range(lo, hi + 1):
        m = partner_bin(k)
        peak = any(p[i] > p[i - 1] and p[i] >= p[i + 1] for i in (k, m))
        if peak:
            scores[k] = p[k] + p[m]
    if not scores:
        scores = {k: p[k] + p[partner_bin(k)] for k in range(lo, hi + 1)}
    best = max(scores, key=lambda k: (scores[k], -k))
    ku = _fault_line_bin(p, best)
    km = _fault_line_bin(p, partner_bin(best))
    xu, xm = x_of(peak_frequency(p, 1.0, ku, ku), peak_frequency(p, 1.0, km, km))
    pu, pm = band_power(p, 1.0, ku, hw), band_power(p, 1.0, km, hw)
    x = (pu * xu + pm * xm) / (pu + pm)
    noise = _fault_line_floor(p, ku, hw, fhb) + _fault_line_floor(p, km, hw, fhb)
    return slip_of(x), 10 * math.log10((pu + pm) / noise)


def slip_from_eccentricity(p, df, f, pole_pairs, s_lo, s_hi, half_width=4, floor_half_band=32):
    """Lines at f ± f_r, f_r = (1 - s)·f/p; x is f_r in bins."""
    kf = f / df
    scale = 1 / pole_pairs
    lo = math.ceil(kf + scale * (1 - s_hi) * kf)
    hi = math.floor(kf + scale * (1 - s_lo) * kf)
    return _fault_pair_slip(
        p,
        df,
        f,
        None,
        lambda k: round(kf - (k - kf)),
        lambda ku, kl: (ku - kf, kf - kl),
        lambda x: 1 - x * df * pole_pairs / f,
        lo,
        hi,
        half_width,
        floor_half_band,
    )


def slip_from_slot_harmonics(
    p, df, f, rotor_bars, pole_pairs, s_lo, s_hi, half_width=4, floor_half_band=32, nu=1
):
    """Lines at R·f_r ± ν·f; x is R·f_r in bins."""
    kf = f / df
    scale = rotor_bars / pole_pairs
    lo = math.ceil(nu * kf + scale * (1 - s_hi) * kf)
    hi = math.floor(nu * kf + scale * (1 - s_lo) * kf)
    return _fault_pair_slip(
        p,
        df,
        f,
        None,
        lambda k: round(k - 2 * nu * kf),
        lambda ku, kl: (ku - nu * kf, kl + nu * kf),
        lambda x: 1 - x * df * pole_pairs / (rotor_bars * f),
        lo,
        hi,
        half_width,
        floor_half_band,
    )


def bearing_line_levels(p, df, f, rotor_hz, orders, harmonics=2, half_width=4, fhb=32):
    """For each defect, the strongest of f ∓ m·f_v (m = 1..harmonics) and its floor."""
    levels, floors = [], []
    for order in orders:
        fv = order * rotor_hz
        offsets = [s * m * fv for m in range(1, harmonics + 1) for s in (-1, 1)]
        lv, fl = line_levels(p, df, f, offsets, half_width, fhb)
        ok = [j for j in range(len(lv)) if not math.isnan(lv[j])]
        if not ok:
            levels.append(math.nan)
            floors.append(math.nan)
            continue
        best = max(ok, key=lambda j: (lv[j], -j))
        levels.append(lv[best])
        floors.append(fl[best])
    return np.array(levels), np.array(floors)


def bearing_orders(n_balls, ball_diameter, pitch_diameter, contact_angle_deg):
    """BPFO, BPFI, BSF, FTF per unit of shaft speed, textbook formulas."""
    r = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    return (
        n_balls / 2 * (1 - r),
        n_balls / 2 * (1 + r),
        pitch_diameter / (2 * ball_diameter) * (1 - r**2),
        (1 - r) / 2,
    )


# --- voltages: power and V-I trajectory ---


def power_quantities(v: np.ndarray, i: np.ndarray, fs: float, f: float) -> tuple:
    """Rms phasors by the DFT definition, S = Σ_k V_k·conj(I_k), Fortescue by its matrix."""
    pv = dft_phasors(np.asarray(v, dtype=np.float64), fs, f) / math.sqrt(2)
    pi = dft_phasors(np.asarray(i, dtype=np.float64), fs, f) / math.sqrt(2)
    s = complex(np.sum(pv * np.conj(pi)))
    _, v1, v2 = sequence_components(pv)
    _, i1, i2 = sequence_components(pi)
    z2 = abs(v2) / abs(i2) if abs(i2) > 1e-9 * abs(i1) else math.nan
    return (abs(v1), abs(v2), abs(v2) / abs(v1), s.real, s.imag, s.real / abs(s), z2)


def true_power(v: np.ndarray, i: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    i = np.asarray(i, dtype=np.float64)
    return sum(float(np.dot(v[c], i[c])) for c in range(v.shape[0])) / v.shape[1]


def _vi_orientation(p, q, r, eps):
    """+1, -1 or 0 (within eps) for the turn p → q → r."""
    cross = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
    return 1 if cross > eps else (-1 if cross < -eps else 0)


def _vi_crossings(x, y, eps):
    """Every pair of non-adjacent edges, tested for a proper crossing."""
    m = len(x)
    pts = list(zip(x, y, strict=True))
    count = 0
    for a in range(m):
        for b in range(a + 2, m):
            if a == 0 and b == m - 1:
                continue
            p, q = pts[a], pts[(a + 1) % m]
            r, s = pts[b], pts[(b + 1) % m]
            o1, o2 = _vi_orientation(p, q, r, eps), _vi_orientation(p, q, s, eps)
            o3, o4 = _vi_orientation(r, s, p, eps), _vi_orientation(r, s, q, eps)
            if o1 * o2 == -1 and o3 * o4 == -1:
                count += 1
    return count


def _vi_clipped_area(x, y, right):
    """Signed shoelace area of the polygon clipped (Sutherland-Hodgman) to x >= 0 or x < 0."""
    m = len(x)
    inside = (lambda u: u >= 0) if right else (lambda u: u < 0)
    poly = []
    for k in range(m):
        xa, ya, xb, yb = x[k], y[k], x[(k + 1) % m], y[(k + 1) % m]
        cut = (0.0, ya + xa / (xa - xb) * (yb - ya)) if inside(xa) != inside(xb) else None
        if inside(xa) and inside(xb):
            poly.append((xb, yb))
        elif inside(xa):
            poly.append(cut)
        elif inside(xb):
            poly += [cut, (xb, yb)]
    return 0.5 * sum(
        poly[k][0] * poly[(k + 1) % len(poly)][1] - poly[(k + 1) % len(poly)][0] * poly[k][1]
        for k in range(len(poly))
    )


def _vi_cycle(x, y):
    from edge_agent.kernels.vi import CROSS_EPS, LOOP_DEADBAND, PEAK_BAND, SLOPE_BAND

    m = len(x)
    h = m // 2
    area = 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
    rotated = np.hypot(x + np.roll(x, -h), y + np.roll(y, -h))
    asymmetry = float(np.mean(rotated)) / (2 * math.sqrt(2))
    looping = 0.0 if abs(area) <= LOOP_DEADBAND else math.copysign(1.0, area)
    j = np.arange(h + 1)
    mean_line = np.stack([(x[j] + x[(m - j) % m]) / 2, (y[j] + y[(m - j) % m]) / 2])
    curvature = math.sqrt(max(np.linalg.eigvalsh(np.cov(mean_line, bias=True))[0], 0.0))
    band = np.abs(x) < SLOPE_BAND
    slope = float(np.polyfit(x[band], y[band], 1)[0]) if band.sum() >= 2 else math.nan
    near = np.abs(x) < PEAK_BAND
    peak = float(np.max(np.abs(y[near]))) if near.any() else abs(y[np.argmin(np.abs(x))])
    return [
        abs(area),
        asymmetry,
        looping,
        curvature,
        _vi_crossings(x, y, CROSS_EPS),
        slope,
        peak,
        abs(_vi_clipped_area(x, y, right=False)),
        abs(_vi_clipped_area(x, y, right=True)),
    ]


def _vi_mean_cycle(signal, period, n_cycles, m, turn):
    """Mean over the cycles of signal at c·period + ((turn + k/m) mod 1)·period, k = 0..m-1,
    by np.interp with one sample extrapolated past the end."""
    extended = np.append(signal, 2 * signal[-1] - signal[-2])
    instants = np.mod(turn + np.arange(m) / m, 1.0) * period
    cycles = [
        np.interp(c * period + instants, np.arange(len(extended)), extended)
        for c in range(n_cycles)
    ]
    return np.mean(cycles, axis=0)


def vi_features(v, i, fs: float, f: float, points: int = 64) -> np.ndarray:
    """Mean trajectory per phase: the voltage averaged over the cycles on the grid starting at
    each cycle's start, for the phase of its DFT bin 1; v and i averaged on the grid turned to
    start on that fundamental voltage peak; normalised, its features computed once."""
    v = np.asarray(v, dtype=np.float64)
    i = np.asarray(i, dtype=np.float64)
    m, period, n = points, fs / f, v.shape[1]
    n_cycles = math.floor(n * f / fs + 1e-9)
    k = np.arange(m)
    out = np.empty((3, 9))
    for c in range(3):
        if not (np.all(np.isfinite(v[c])) and np.all(np.isfinite(i[c]))):
            out[c] = math.nan
            continue
        mean_v = _vi_mean_cycle(v[c], period, n_cycles, m, 0.0)
        turn = -cmath.phase(complex(np.sum(mean_v * np.exp(-2j * np.pi * k / m)))) / (2 * np.pi)
        x = _vi_mean_cycle(v[c], period, n_cycles, m, turn)
        y = _vi_mean_cycle(i[c], period, n_cycles, m, turn)
        if np.max(np.abs(x)) == 0 or np.max(np.abs(y)) == 0:
            out[c] = math.nan
            continue
        out[c] = _vi_cycle(x / np.max(np.abs(x)), y / np.max(np.abs(y)))
    return out


def agrees(got, want, rtol: float, atol: float = 1e-6) -> bool:
    """Whether a kernel's result equals its reference's: the same shape, values within
    rtol/atol (real and imaginary parts apart), NaN exactly where the reference has NaN."""
    got, want = np.asarray(got), np.asarray(want)
    if np.iscomplexobj(got) or np.iscomplexobj(want):
        return agrees(got.real, want.real, rtol, atol) and agrees(got.imag, want.imag, rtol, atol)
    return got.shape == want.shape and np.allclose(
        got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True
    )
