"""The features in plain numpy/scipy: the baseline the numba kernels must beat.

What a careful numpy user would write, with the kernels' signatures and scaling so the
benchmarks can swap one module for the other and check that the answers agree. Windows
are cached as the kernels cache theirs, so the comparison is of the arithmetic alone.

- Single kernels (power spectrum, phasors, rms, THD, the EPVA line), for
  ``test_bench_kernels.py``.
- :class:`NumpyExtractor`: the whole feature vector of a window, short and long, with the
  interface of ``edge_agent.features.FeatureExtractor``, for ``test_bench_features.py``;
  :func:`mismatches` says where it and the kernels disagree (``tests/test_features.py``
  checks every workload with it).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.fft
from edge_agent.kernels.lines import MEDIAN_TO_MEAN
from edge_agent.kernels.power import I2_FLOOR
from edge_agent.kernels.spectrum import MAIN_LOBE_HALF_WIDTH
from edge_agent.kernels.vi import (
    CROSS_EPS,
    LOOP_DEADBAND,
    PEAK_BAND,
    SLOPE_BAND,
    VI_FEATURE_NAMES,
)
from edge_agent.kernels.waveform import WAVEFORM_STAT_NAMES

from benchmarks.workloads import FS, Window, clean
from edge_agent.config import MotorConfig
from edge_agent.features import (
    BEARING_DEFECTS,
    BRB_SLIP_MIN_DB,
    EPVA_FLOOR_DB,
    MAX_HARMONIC,
    PHASES,
    SIDEBAND_PROMINENCE_DB,
    SLIP_METHOD_ECCENTRICITY,
    SLIP_METHOD_NAMEPLATE,
    SLIP_METHOD_SIDEBANDS,
    SLIP_METHOD_SLOTS,
    SUPPLY_BAND_HZ,
    nameplate_slip,
    slip_band,
)

_A = np.exp(2j * np.pi / 3)
_FORTESCUE = np.array([[1, 1, 1], [1, _A, _A * _A], [1, _A * _A, _A]]) / 3.0


@functools.cache
def hann(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n``."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def power_spectrum(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """Hann-windowed one-sided power spectrum, one ``scipy.fft.rfft`` per phase."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    w = hann(n)
    scale = (2.0 / w.sum()) ** 2
    p = np.stack([np.abs(scipy.fft.rfft(row * w)) ** 2 * scale for row in x])
    return np.arange(n // 2 + 1) * (fs / n), p


def rms(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.sqrt(np.mean(x**2, axis=-1))


def dft_phasors(x: np.ndarray, fs: float, f: float) -> np.ndarray:
    """Peak-amplitude phasors at ``f`` Hz by a Hann-windowed DFT against ``np.exp``."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    w = hann(n)
    return (x * w) @ np.exp(-2j * np.pi * (f / fs) * np.arange(n)) * (2.0 / w.sum())


def sequence_components(phasors: np.ndarray) -> tuple[complex, complex, complex]:
    i0, i1, i2 = _FORTESCUE @ phasors
    return complex(i0), complex(i1), complex(i2)


def thd(p: np.ndarray, df: float, f: float, n_harmonics: int, half_width: int = 2) -> np.ndarray:
    """THD of each row of ``p`` from band sums over the main lobes at 1..n_harmonics · f."""
    k0 = np.rint(np.arange(1, n_harmonics + 1) * (f / df)).astype(np.intp)
    bins = np.clip(k0[:, None] + np.arange(-half_width, half_width + 1), 0, p.shape[-1] - 1)
    bands = p[:, bins].sum(axis=-1)  # (rows, harmonics)
    return np.sqrt(bands[:, 1:].sum(axis=-1) / bands[:, 0])


def epva_line_db(x: np.ndarray, fs: float, f_line: float) -> float:
    """Line at ``f_line`` in the Park's vector modulus, dB re its Hann-weighted mean."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    w = hann(n)
    d = math.sqrt(2 / 3) * x[0] - (x[1] + x[2]) / math.sqrt(6)
    q = (x[1] - x[2]) / math.sqrt(2)
    m = np.hypot(d, q)
    wsum = w.sum()
    dc = np.dot(w, m) / wsum
    amp = abs(np.dot(w * (m - dc), np.exp(-2j * np.pi * (f_line / fs) * np.arange(n))))
    return 20.0 * math.log10(max(2.0 * amp / wsum / dc, 1e-15))


# --- the whole feature vector (NumpyExtractor) ----------------------------------------
# The extractor's every step (spectra, phasors, statistics, line searches) written out
# as whole-array numpy expressions. Nothing in it calls a kernel; only constants are shared.
# Work that depends only on the window length (windows, their sums, index ramps) is cached,
# as the kernels cache theirs.

_TINY = 1e-300
_BLACKMAN_HARRIS = (0.35875, 0.48829, 0.14128, 0.01168)


def fft_length(n: int) -> int:
    """FFT length of the short window: the kernels zero-pad to a multiple of 512 with only
    factors 2, 3, 5 (15000 → 15360), so both read the same bins."""
    return scipy.fft.next_fast_len(-(-int(n) // 512) * 512, real=False)


@functools.cache
def _window(name: str, n: int) -> tuple[np.ndarray, float]:
    """Periodic Hann or 4-term Blackman-Harris window of length ``n``, and its sum."""
    k = np.arange(n) / n
    if name == "hann":
        w = 0.5 - 0.5 * np.cos(2 * np.pi * k)
    else:
        a = _BLACKMAN_HARRIS
        w = a[0] - a[1] * np.cos(2 * np.pi * k) + a[2] * np.cos(4 * np.pi * k)
        w -= a[3] * np.cos(6 * np.pi * k)
    w.setflags(write=False)
    return w, float(w.sum())


@functools.cache
def _ramp(n: int) -> np.ndarray:
    r = np.arange(n, dtype=np.float64)
    r.setflags(write=False)
    return r


_BLOCK = 128


def _rotation(f_over_fs: float, n: int) -> np.ndarray:
    """``exp(-j·2π·f_over_fs·i)``, i < n, as the outer product of two short ``np.exp``
    tables (block starts × offsets in a block): n complex products instead of n complex
    exponentials, 10 times faster, and exact to a few ulp."""
    n_blocks = -(-n // _BLOCK)
    w = -2j * np.pi * f_over_fs
    return (np.exp(w * _BLOCK * _ramp(n_blocks))[:, None] * np.exp(w * _ramp(_BLOCK))).ravel()[:n]


def _line_sums(table: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x @ table`` for real rows ``x`` (..., n) and a complex ``table`` (n,), as one real
    matrix product against the table's (re, im) pairs (no complex copy of ``x``)."""
    r = x @ table.view(np.float64).reshape(-1, 2)
    return r[..., 0] + 1j * r[..., 1]


def _peak_at(p: np.ndarray, k: int) -> float:
    """Fractional bin of the line at bin ``k``: a parabola through the log powers."""
    if k <= 0 or k >= p.shape[0] - 1 or p[k] <= 0.0:
        return float(k)
    a = math.log(max(p[k - 1], _TINY))
    b = math.log(p[k])
    c = math.log(max(p[k + 1], _TINY))
    den = a - 2.0 * b + c
    if den >= 0.0:
        return float(k)
    return k + min(0.5, max(-0.5, 0.5 * (a - c) / den))


def _peak_bin(p: np.ndarray, lo: int, hi: int) -> float:
    """Fractional bin of the largest value in ``p[lo:hi]``."""
    return _peak_at(p, lo + int(np.argmax(p[lo:hi])) if hi > lo else lo)


def _peak_hz(p: np.ndarray, df: float, fmin: float, fmax: float) -> float:
    lo = max(1, math.floor(fmin / df + 0.5))  # the bins nearest fmin and fmax
    hi = min(p.shape[0] - 1, math.floor(fmax / df + 0.5) + 1)
    if hi <= lo:
        raise ValueError(f"[{fmin=}, {fmax=}] Hz holds no bin of a spectrum with {df=} Hz")
    return _peak_bin(p, lo, hi) * df


def _band(p: np.ndarray, center: float, hw: int) -> float:
    """Sum of ``p`` over the bins within ``hw`` of the bin nearest ``center``."""
    k0 = round(center)
    return float(p[max(0, k0 - hw) : min(p.shape[0] - 1, k0 + hw) + 1].sum())


def _bands(p: np.ndarray, k: np.ndarray, hw: int) -> np.ndarray:
    """Band sums of the rows of ``p`` around integer bins ``k`` (all bands inside ``p``)."""
    return p[..., k[:, None] + np.arange(-hw, hw + 1)].sum(axis=-1)


def _db(power, ref):
    return 10.0 * np.log10(np.maximum(power, _TINY) / ref)


def _refine(p: np.ndarray, k0: np.ndarray) -> np.ndarray:
    """The largest of bins k0 - 1, k0, k0 + 1 (k0 on ties), elementwise."""
    k = np.where(p[k0 - 1] > p[k0], k0 - 1, k0)
    return np.where(p[k0 + 1] > p[k], k0 + 1, k)


def _refine1(p: np.ndarray, k0: int) -> int:
    """The largest of bins k0 - 1, k0, k0 + 1 (k0 on ties)."""
    k = k0
    if p[k0 - 1] > p[k]:
        k = k0 - 1
    if p[k0 + 1] > p[k]:
        k = k0 + 1
    return k


def _noise_floor(p: np.ndarray, k: int, hw: int, fhb: int) -> float:
    """Median-based noise band power around bin ``k``: the median of the bins within
    ``fhb`` of it (not bin 0), its own ±hw left out, scaled to a band power."""
    lo, hi = max(1, k - fhb), min(p.shape[0] - 1, k + fhb)
    vals = np.concatenate((p[lo : max(lo, k - hw)], p[max(lo, k + hw + 1) : hi + 1]))
    if vals.shape[0] == 0:
        return math.nan
    return float(np.partition(vals, vals.shape[0] // 2)[vals.shape[0] // 2]) * (
        (2 * hw + 1) * MEDIAN_TO_MEAN
    )


def _noise_floors(p: np.ndarray, k: np.ndarray, hw: int, fhb: int) -> np.ndarray:
    """Median-based noise band powers around bins ``k``, their own ±hw bins left out
    (bin 0 too); NaN where no bin is left."""
    n = p.shape[0]
    offs = np.arange(-fhb, fhb + 1)
    idx = k[:, None] + offs
    valid = (np.abs(offs) > hw) & (idx >= 1) & (idx <= n - 1)
    vals = np.where(valid, p[np.clip(idx, 0, n - 1)], np.inf)
    vals.sort(axis=1)
    m = valid.sum(axis=1)
    med = vals[np.arange(k.shape[0]), m // 2]
    return np.where(m > 0, med * (2 * hw + 1) * MEDIAN_TO_MEAN, np.nan)


def _line_levels(
    p: np.ndarray, df: float, f: float, offsets: np.ndarray, hw: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Levels (dB re the fundamental) of the lines at ``f + offsets``, each the band power
    around the largest bin within ±1 bin of the nominal one; NaN where that does not fit.
    Also returns the refined bins and the fundamental's band power."""
    n = p.shape[0]
    fund = _band(p, f / df, hw)
    kl = (f + offsets) / df
    k0 = np.rint(np.where((kl > 0) & (kl < n), kl, -1.0)).astype(np.intp)
    ok = (k0 - 1 - hw >= 0) & (k0 + 1 + hw <= n - 1)
    if not fund > 0:
        ok[:] = False
    k = _refine(p, np.where(ok, k0, hw + 1))
    levels = np.where(ok, _db(_bands(p, k, hw), fund), np.nan)
    return levels, k, fund


def _pair_search_fits(
    n: int, kf: float, c: float, d: float, a: float, x_lo: float, x_hi: float, hw: int
) -> bool:
    """Whether both branches of a pair search lie inside the spectrum and clear of the
    fundamental's lobe (the kernels refuse the search otherwise)."""
    if math.ceil(c + x_lo) > math.floor(c + x_hi):
        return False
    ends = (c + x_lo, c + x_hi, d + a * x_lo, d + a * x_hi)
    if min(ends) < hw + 1 or max(ends) > n - 2 - hw:
        return False
    for lo, hi in ((c + x_lo, c + x_hi), sorted((d + a * x_lo, d + a * x_hi))):
        if lo < kf + 2 * hw + 1 and hi > kf - 2 * hw - 1:
            return False
    return True


def _pair_slip(
    p: np.ndarray, df: float, f: float, c: float, d: float, a: float, scale: float,
    s_lo: float, s_hi: float, hw: int, fhb: int,
) -> tuple[float, float]:  # fmt: skip
    """Slip and prominence (dB) of the strongest pair of lines at bins c + x, d + a·x,
    x = scale·(1 - s)·f/df, s in [s_lo, s_hi]; (NaN, -inf) where the search does not fit.

    Every bin of the upper branch is a candidate (vectorised), preferring those where it or
    its partner is a local maximum; the best pair is refined between bins and the two lines'
    estimates of x are averaged weighted by their band powers.
    """
    n = p.shape[0]
    kf = f / df
    x_lo, x_hi = scale * (1 - s_hi) * kf, scale * (1 - s_lo) * kf
    if not (
        0.0 <= s_lo < s_hi < 1.0
        and round(kf) + hw <= n - 1
        and _pair_search_fits(n, kf, c, d, a, x_lo, x_hi, hw)
    ):
        return math.nan, -math.inf
    lo = math.ceil(c + scale * (1.0 - s_hi) * kf)
    hi = math.floor(c + scale * (1.0 - s_lo) * kf)
    k = np.arange(lo, hi + 1)
    m = np.rint(d + a * (k - c)).astype(np.intp)
    pk, pm = p[k], p[m]
    peaks = ((pk > p[k - 1]) & (pk >= p[k + 1])) | ((pm > p[m - 1]) & (pm >= p[m + 1]))
    score = pk + pm
    if peaks.any():
        score = np.where(peaks, score, -1.0)
    best = lo + int(np.argmax(score))
    ku, km = _refine1(p, best), _refine1(p, round(d + a * (best - c)))
    xu = _peak_at(p, ku) - c
    xm = (_peak_at(p, km) - d) / a
    pu, pmm = _band(p, ku, hw), _band(p, km, hw)
    x = (pu * xu + pmm * xm) / (pu + pmm) if pu + pmm > 0.0 else 0.5 * (xu + xm)
    slip = 1.0 - x / (scale * kf)
    noise = _noise_floor(p, ku, hw, fhb) + _noise_floor(p, km, hw, fhb)
    if not noise > 0.0:
        return slip, math.nan
    return slip, float(_db(pu + pmm, noise))


def _brb(
    p: np.ndarray, df: float, f: float, s_lo: float, s_hi: float, hw: int
) -> tuple[float, float, float, float]:
    """Broken-bar pair (1 ± 2s)f: slip, lower and upper sideband dB re the fundamental, and
    the lower sideband's prominence over the median of the search band."""
    n = p.shape[0]
    kf = f / df
    fund = _band(p, kf, hw)
    lo = max(math.ceil(f * (1.0 - 2.0 * s_hi) / df), 1)
    hi = math.floor(f * (1.0 - 2.0 * s_lo) / df)
    k = np.arange(lo, hi + 1)
    mirror = np.rint(2.0 * kf - k).astype(np.intp)
    inside = mirror < n
    pk = p[k]
    score = np.where(inside, pk + p[np.minimum(mirror, n - 1)], -1.0)
    peaks = inside & (pk > p[k - 1]) & (pk >= p[k + 1])
    if peaks.any():
        score = np.where(peaks, score, -1.0)
    best = lo + int(np.argmax(score))
    k_lsb = _peak_bin(p, max(best - 1, 1), min(best + 2, n - 1))
    slip = (kf - k_lsb) / (2.0 * kf)
    lsb = _band(p, k_lsb, hw)
    usb = _band(p, kf * (1.0 + 2.0 * slip), hw)
    band = p[lo : hi + 1]
    floor = np.partition(band, band.shape[0] // 2)[band.shape[0] // 2] * (2 * hw + 1)
    lsb = max(lsb, _TINY)
    return (
        slip,
        10.0 * math.log10(lsb / fund),
        10.0 * math.log10(max(usb, _TINY) / fund),
        10.0 * math.log10(lsb / max(floor, _TINY)),
    )


def _modulus_lines_db(m: np.ndarray, fs: float, freqs: list[float]) -> list[float]:
    """Lines at ``freqs`` of a modulus signal ``m``, dB re its Hann-weighted mean: one
    Hann-windowed DFT of (m - mean) at each exact frequency, against ``np.exp`` tables."""
    n = m.shape[0]
    w, wsum = _window("hann", n)
    wm = w * m
    dc = wm.sum() / wsum
    out = [math.nan] * len(freqs)
    inside = [j for j, fl in enumerate(freqs) if 0 < fl < fs / 2]
    if not (inside and dc > 0):
        return out
    wm_w = np.stack([wm, w])
    for j in inside:
        s_m, s_w = _line_sums(_rotation(freqs[j] / fs, n), wm_w)
        amp = abs(s_m - dc * s_w) * 2.0 / wsum
        out[j] = 20.0 * math.log10(max(amp / dc, 1e-15))
    return out


def _vi_features(
    v: np.ndarray, i: np.ndarray, fs: float, f: float, m: int = 64, finite: np.ndarray | None = None
) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    i = np.asarray(i, dtype=np.float64)
    """V-I trajectory features (3, 9) of the mean trajectory of each phase (kernels/vi.py).

    ``finite`` (3,) says which phases have only finite samples in v and i, when already known.

    All phases at once: C cycles × M instants are read by linear interpolation between the
    neighbouring samples (fancy indexing), averaged over the cycles, normalised, and the
    nine features taken on the (3, M) polygons; crossings by all-pairs orientation tests.
    """
    n = v.shape[1]
    period = fs / f
    n_cycles = math.floor(n * f / fs + 1e-9)
    if n_cycles < 2:
        raise ValueError(f"{n} samples hold {n_cycles} whole cycle(s) of {f:g} Hz; need 2")
    last = n - 2
    starts = (_ramp(n_cycles) * period)[:, None]  # (C, 1)
    kk = _ramp(m)

    # Reference phase from the mean voltage cycle, read at instants c·L + k·L/M (the same
    # for every phase): linear interpolation between neighbouring samples.
    s = starts + kk * (period / m)  # (C, M)
    j = np.minimum(s.astype(np.intp), last)
    lo = v.take(j, axis=1)
    mean_v = (lo + (s - j) * (v.take(j + 1, axis=1) - lo)).sum(axis=1) / n_cycles  # (3, M)
    ang = 2.0 * np.pi * kk / m
    u0 = -np.arctan2(-(mean_v @ np.sin(ang)), mean_v @ np.cos(ang)) / (2.0 * np.pi)
    u0 -= np.floor(u0)

    # The mean trajectory, point 0 on the voltage peak: instants c·L + ((u0 + k/M) mod 1)·L,
    # now one set per phase, gathered from the flattened (3, n) arrays.
    u = u0[:, None] + kk / m
    u = np.where(u >= 1.0, u - 1.0, u)
    s = starts + (u * period)[:, None, :]  # (3, C, M)
    j = np.minimum(s.astype(np.intp), last)
    frac = s - j
    j += (np.arange(3) * n)[:, None, None]
    vf, i_f = v.ravel(), i.ravel()
    j1 = j + 1
    lo = vf.take(j)
    x = (lo + frac * (vf.take(j1) - lo)).sum(axis=1) / n_cycles
    lo = i_f.take(j)
    y = (lo + frac * (i_f.take(j1) - lo)).sum(axis=1) / n_cycles

    out = np.full((3, 9), np.nan)
    xpk = np.abs(x).max(axis=1)
    ypk = np.abs(y).max(axis=1)
    if finite is None:
        finite = np.isfinite(v).all(axis=1) & np.isfinite(i).all(axis=1)
    good = finite & (xpk > 0) & (ypk > 0)
    if not good.any():
        return out
    x = x[good] / xpk[good, None]
    y = y[good] / ypk[good, None]
    nxt = (np.arange(m) + 1) % m
    x1 = x.take(nxt, axis=1)
    y1 = y.take(nxt, axis=1)
    h = m // 2

    # Signed areas ∮ x dy left and right of x = 0, edges crossing x = 0 split there.
    ra, rb = x >= 0.0, x1 >= 0.0
    whole = 0.5 * (x + x1) * (y1 - y)
    split = ra != rb
    yc = y + np.where(split, x / np.where(split, x - x1, 1.0), 0.0) * (y1 - y)
    first = 0.5 * x * (yc - y)  # the part of the edge on its start's side
    second = 0.5 * x1 * (y1 - yc)
    right = np.where(split, np.where(ra, first, second), np.where(ra, whole, 0.0)).sum(axis=1)
    left = np.where(split, np.where(ra, second, first), np.where(ra, 0.0, whole)).sum(axis=1)
    area = left + right

    asym = np.hypot(x[:, :h] + x[:, h:], y[:, :h] + y[:, h:]).sum(axis=1) / (h * 2.0 * math.sqrt(2))

    jj = (m - np.arange(h + 1)) % m
    mx = 0.5 * (x[:, : h + 1] + x[:, jj])
    my = 0.5 * (y[:, : h + 1] + y[:, jj])
    dx = mx - mx.mean(axis=1, keepdims=True)
    dy = my - my.mean(axis=1, keepdims=True)
    sxx, syy, sxy = (dx * dx).mean(axis=1), (dy * dy).mean(axis=1), (dx * dy).mean(axis=1)
    lam_min = 0.5 * (sxx + syy) - np.sqrt((0.5 * (sxx - syy)) ** 2 + sxy * sxy)
    curv = np.sqrt(np.maximum(lam_min, 0.0))

    mid = np.abs(x) < SLOPE_BAND
    n_mid = mid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        bx = np.where(mid, x, 0.0).sum(axis=1) / n_mid
        by = np.where(mid, y, 0.0).sum(axis=1) / n_mid
        ddx = np.where(mid, x - bx[:, None], 0.0)
        sxx_m = (ddx * ddx).sum(axis=1)
        sxy_m = (ddx * (y - by[:, None])).sum(axis=1)
        slope = np.where((n_mid >= 2) & (sxx_m > 0), sxy_m / sxx_m, np.nan)

    ax = np.abs(x)
    near = ax < PEAK_BAND
    peak = np.where(
        near.any(axis=1),
        np.where(near, np.abs(y), -1.0).max(axis=1),
        np.abs(y[np.arange(x.shape[0]), np.argmin(ax, axis=1)]),
    )
    loop = np.where(area > LOOP_DEADBAND, 1.0, np.where(area < -LOOP_DEADBAND, -1.0, 0.0))

    # Proper crossings of non-adjacent edges a < b: o(e, q) is the orientation of point q
    # against edge e; edges a and b cross when each one's ends lie strictly either side of
    # the other (beyond CROSS_EPS) and their x-ranges overlap.
    ex, ey = x1 - x, y1 - y
    o_start = ex[:, :, None] * (y[:, None, :] - y[:, :, None]) - ey[:, :, None] * (
        x[:, None, :] - x[:, :, None]
    )  # [e, q]: point q against edge e
    o_end = o_start.take(nxt, axis=2)  # [e, q]: point q + 1 against edge e
    eps = CROSS_EPS
    straddle = ((o_start > eps) & (o_end < -eps)) | ((o_start < -eps) & (o_end > eps))
    lo_x, hi_x = np.minimum(x, x1), np.maximum(x, x1)
    overlap = (lo_x[:, :, None] < hi_x[:, None, :]) & (lo_x[:, None, :] < hi_x[:, :, None])
    crossing = straddle & straddle.transpose(0, 2, 1) & overlap & _nonadjacent_pairs(m)
    count = crossing.sum(axis=(1, 2))

    out[good] = np.stack(
        [np.abs(area), asym, loop, curv, count, slope, peak, np.abs(left), np.abs(right)], axis=1
    )
    return out


@functools.cache
def _nonadjacent_pairs(m: int) -> np.ndarray:
    """Edge pairs (a, b), a < b, that share no vertex in a closed polygon of m edges."""
    a, b = np.triu_indices(m, 2)
    keep = ~((a == 0) & (b == m - 1))
    mask = np.zeros((m, m), dtype=bool)
    mask[a[keep], b[keep]] = True
    return mask


def _lags_deg(ref: complex, x: np.ndarray) -> list[float | None]:
    """Lag of each phasor of ``x`` behind ``ref``, degrees in [0, 360)."""
    lag = np.mod(np.angle(ref * np.conj(x), deg=True), 360.0)
    return [float(a) if ref != 0 and v != 0 else None for a, v in zip(lag, x, strict=True)]


def _bearing_orders(n: int, d: float, pitch: float, angle_deg: float) -> np.ndarray:
    """Bearing defect frequencies per unit of shaft speed: BPFO, BPFI, BSF, FTF."""
    r = d / pitch * math.cos(math.radians(angle_deg))
    return np.array(
        [0.5 * n * (1 - r), 0.5 * n * (1 + r), pitch / (2 * d) * (1 - r * r), 0.5 * (1 - r)]
    )


class NumpyExtractor:
    """``edge_agent.features.FeatureExtractor`` in plain numpy/scipy: same constructor,
    same ``short`` and ``long``, same feature names and values (to the kernels' float32 FFT
    rounding)."""

    def __init__(self, motor: MotorConfig, fs: float, fs_long: float) -> None:
        self.motor = motor
        self.fs = float(fs)
        self.fs_long = float(fs_long)
        b = motor.bearing
        self.bearing = (
            None
            if b is None
            else _bearing_orders(
                b.n_balls, b.ball_diameter_mm, b.pitch_diameter_mm, b.contact_angle_deg
            )
        )
        top = MAX_HARMONIC * SUPPLY_BAND_HZ[1]
        if motor.rotor_bars:
            top = max(top, SUPPLY_BAND_HZ[1] * (motor.rotor_bars / motor.pole_pairs + 3))
        self.fmax = min(self.fs / 2, top)
        self.slot_spectrum: tuple[np.ndarray, float] | None = None

    # --- short window -------------------------------------------------------------------

    def short(self, x: np.ndarray, v: np.ndarray | None) -> dict[str, float | None]:
        # The pipeline holds its window in float32; the arithmetic is in float64, as the
        # kernels do theirs (numpy would otherwise sum float32 in float32).
        x = np.asarray(x, dtype=np.float64)
        v = None if v is None else np.asarray(v, dtype=np.float64)
        out: dict[str, float | None] = {}
        fs = self.fs
        n = x.shape[1]
        nfft = fft_length(n)
        df = fs / nfft
        nb = min(nfft // 2 + 1, math.ceil(self.fmax * nfft / fs) + 1)
        w, wsum = _window("hann", n)
        # Per-phase and positive-sequence power spectra (a line of amplitude A reads A²).
        spec = scipy.fft.rfft(x * w, n=nfft, axis=-1)[:, :nb]
        scale = (2.0 / wsum) ** 2
        phase = (spec.real**2 + spec.imag**2) * scale
        # Positive sequence (a + α·b + α²·c)/3 per bin, the Fortescue matrix's second row
        # written out: as a matrix product it goes to a multithreaded BLAS gemv, whose
        # threads stall for milliseconds when another process holds a core.
        f1 = _FORTESCUE[1]
        pos_c = f1[0] * spec[0] + f1[1] * spec[1] + f1[2] * spec[2]
        pos = (pos_c.real**2 + pos_c.imag**2) * scale

        motor = self.motor
        if motor.supply_hz is not None:
            f = motor.supply_hz
        else:
            f = _peak_hz(pos, df, SUPPLY_BAND_HZ[0], min(SUPPLY_BAND_HZ[1], fs / 2.5))
        out["supply_hz"] = f

        # Fundamental phasors of every channel against one Hann-windowed np.exp table.
        channels = x if v is None else np.concatenate([x, v])
        rot = _rotation(f / fs, n)
        ph = _line_sums(w * rot, channels) * (2.0 / wsum)
        i0, i1, i2 = _FORTESCUE @ ph[:3]
        a0, a1, a2 = abs(i0), abs(i1), abs(i2)
        out["i1"] = a1 / math.sqrt(2)
        out["i2"] = a2 / math.sqrt(2)
        out["i0"] = a0 / math.sqrt(2)
        out["i2_i1"] = a2 / a1 if a1 > 0 else None
        out["i0_i1"] = a0 / a1 if a1 > 0 else None
        lags = _lags_deg(ph[0], ph[1:3])
        out["i_angle_b_deg"], out["i_angle_c_deg"] = lags

        # Waveform statistics of the currents: central moments about the mean, two passes.
        mean = x.mean(axis=1)
        d = x - mean[:, None]
        d2 = d * d
        m2 = d2.mean(axis=1)
        m3 = (d2 * d).mean(axis=1)
        m4 = (d2 * d2).mean(axis=1)
        rms = np.sqrt(mean * mean + m2)
        peak = np.maximum(x.max(axis=1), -x.min(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            stats = {
                "rms": rms,
                "peak": peak,
                "crest": peak / rms,
                "skew": np.where(m2 > 0, m3 / (m2 * np.sqrt(m2)), np.nan),
                "kurtosis": np.where(m2 > 0, m4 / (m2 * m2), np.nan),
                "dc": mean,
            }
        for name in WAVEFORM_STAT_NAMES:
            for j, p in enumerate(PHASES):
                out[f"{name}_{p}"] = float(stats[name][j])
        r_mean = float(rms.mean())
        out["unbalance_nema"] = float(np.max(np.abs(rms - r_mean)) / r_mean) if r_mean > 0 else None

        # Harmonics: band sums over Hann main lobes at h·f, by fancy indexing.
        hw = MAIN_LOBE_HALF_WIDTH["hann"]
        n_harm = min(MAX_HARMONIC, int((nb - 1 - hw) * df / f))
        k = np.rint(np.arange(1, max(n_harm, 1) + 1) * f / df).astype(np.intp)
        bands = phase[:, k[:, None] + np.arange(-hw, hw + 1)].sum(axis=-1)  # (3, harmonics)
        fund = bands[:, 0]
        if n_harm >= 2:
            with np.errstate(invalid="ignore", divide="ignore"):
                thd = np.where(fund > 0, np.sqrt(bands[:, 1:].sum(axis=1) / fund), np.nan)
            for j, p in enumerate(PHASES):
                out[f"thd_{p}"] = float(thd[j])
        for j, p in enumerate(PHASES):
            for h in (3, 5, 7):
                if h <= n_harm and fund[j] > 0:
                    out[f"h{h}_{p}"] = math.sqrt(bands[j, h - 1] / fund[j])

        # Park's vector modulus and its 2f line; the 2f table is the f table squared.
        if 2 * f < fs / 2:
            dd = math.sqrt(2 / 3) * x[0] - (x[1] + x[2]) / math.sqrt(6)
            qq = (x[1] - x[2]) / math.sqrt(2)
            mod = np.sqrt(dd * dd + qq * qq)
            wm = w * mod
            dc = wm.sum() / wsum
            s_m, s_w = _line_sums(rot * rot, np.stack([wm, w]))
            amp = abs(s_m - dc * s_w) * 2.0 / wsum
            level = 20.0 * math.log10(max(amp / dc, 1e-15)) if dc > 0 else math.nan
            out["epva_2f_db"] = max(EPVA_FLOOR_DB, level)
        else:
            out["epva_2f_db"] = None
        if a1 + a2 == 0:
            out["epva_ellipse_ratio"], out["epva_axis_deg"] = math.nan, math.nan
        else:
            out["epva_ellipse_ratio"] = abs(a1 - a2) / (a1 + a2)
            out["epva_axis_deg"] = math.degrees(0.5 * (np.angle(i1) - np.angle(i2))) % 180.0

        if v is not None:
            self._voltages(x, v, ph, f, out, np.isfinite(mean))
        self.slot_spectrum = (pos, df)
        return out

    def _voltages(self, x, v, ph, f: float, out: dict, finite_x: np.ndarray) -> None:
        pv, pi = ph[3:], ph[:3]
        s = complex(np.dot(pv, pi.conj())) * 0.5  # peak phasors: V·conj(I)/2 per phase
        _, v1, v2 = np.abs(_FORTESCUE @ pv)
        _, i1, i2 = np.abs(_FORTESCUE @ pi)
        s_abs = abs(s)
        out["v1"] = v1 / math.sqrt(2)
        out["v2"] = v2 / math.sqrt(2)
        out["v2_v1"] = v2 / v1 if v1 > 0 else math.nan
        out["p_w"], out["q_var"] = s.real, s.imag
        out["pf"] = s.real / s_abs if s_abs > 0 else math.nan
        z2 = math.nan if i2 <= I2_FLOOR * i1 else v2 / i2
        out["z2_ohm"] = z2 if (out.get("i2_i1") or 0.0) > 1e-3 else None
        rms_v = np.sqrt(np.einsum("ij,ij->i", v, v) / v.shape[1])
        for j, p in enumerate(PHASES):
            out[f"rms_v{p}"] = float(rms_v[j])
        out["v_angle_b_deg"], out["v_angle_c_deg"] = _lags_deg(pv[0], pv[1:])
        phi = np.angle(pv * pi.conj(), deg=True)  # (-180, 180]: current behind voltage
        for j, p in enumerate(PHASES):
            out[f"phi_{p}_deg"] = float(phi[j]) if pv[j] != 0 and pi[j] != 0 else None
        try:
            # A NaN or ±inf sample makes its channel's mean (and mean square) so.
            vi = _vi_features(v, x, self.fs, f, finite=finite_x & np.isfinite(rms_v))
        except ValueError:  # fewer than two whole cycles in the window
            return
        for j, p in enumerate(PHASES):
            for k, name in enumerate(VI_FEATURE_NAMES):
                out[f"vi_{name}_{p}"] = float(vi[j, k])

    # --- long window --------------------------------------------------------------------

    def long(
        self, z: np.ndarray | None, f: float, i1: float, slot_spectrum: tuple | None = None
    ) -> dict[str, float | None]:
        motor = self.motor
        pp = motor.pole_pairs
        out: dict[str, float | None] = {}
        slip, method, prominence = nameplate_slip(i1, motor, f), SLIP_METHOD_NAMEPLATE, None
        s_min, s_max = slip_band(motor, f)
        if motor.rotor_bars and slot_spectrum is not None:
            p_short, df_short = slot_spectrum
            kf = f / df_short
            s, prom = _pair_slip(
                p_short, df_short, f, kf, -kf, 1.0, motor.rotor_bars / pp,
                s_min, s_max, MAIN_LOBE_HALF_WIDTH["hann"], 32,
            )  # fmt: skip
            if prom >= SIDEBAND_PROMINENCE_DB:
                slip, method, prominence = s, SLIP_METHOD_SLOTS, prom
        if z is not None:
            hw = MAIN_LOBE_HALF_WIDTH["blackmanharris"]
            n = z.shape[0]
            df = self.fs_long / n
            # Forward-rotating lines of the space vector: one complex FFT, bins 0 .. n//2.
            w, wsum = _window("blackmanharris", n)
            y = scipy.fft.fft(z * w)[: n // 2 + 1]
            p = (y.real**2 + y.imag**2) * (1.0 / wsum) ** 2
            f = _peak_hz(p, df, f - 1.0, f + 1.0)
            s_lo = max(s_min, (2 * hw + 1.5) * df / (2 * f))
            if method == SLIP_METHOD_NAMEPLATE and s_lo < s_max:
                kf = f / df
                s, prom = _pair_slip(p, df, f, kf, kf, -1.0, 1.0 / pp, s_lo, s_max, hw, 32)
                if prom >= SIDEBAND_PROMINENCE_DB:
                    slip, method, prominence = s, SLIP_METHOD_ECCENTRICITY, prom
            if s_lo < s_max and f * (1 + 2 * s_max) / df + hw < p.shape[0]:
                b_slip, lsb, usb, b_prom = _brb(p, df, f, s_lo, s_max, hw)
                out["brb_lsb_db"], out["brb_usb_db"] = lsb, usb
                out["brb_db"] = 0.5 * (lsb + usb)
                out["brb_prominence_db"] = b_prom
                if (
                    method == SLIP_METHOD_NAMEPLATE
                    and b_prom >= SIDEBAND_PROMINENCE_DB
                    and lsb >= BRB_SLIP_MIN_DB
                ):
                    slip, method, prominence = b_slip, SLIP_METHOD_SIDEBANDS, b_prom
            rotor_hz = (1.0 - slip) * f / pp
            if not (math.isfinite(rotor_hz) and rotor_hz > 0):
                raise ValueError(f"{rotor_hz=} must be a positive number of Hz")
            ecc, k, fund = _line_levels(p, df, f, np.array([-1.0, 1.0, -2.0, 2.0]) * rotor_hz, hw)
            for name, level in zip(
                ("ecc_lsb_db", "ecc_usb_db", "ecc2_lsb_db", "ecc2_usb_db"), ecc, strict=True
            ):
                out[name] = float(level)
            floors = np.where(
                np.isnan(ecc[:2]), np.nan, _db(_noise_floors(p, k[:2], hw, 8 * hw), fund)
            )
            out["ecc_lsb_floor_db"], out["ecc_usb_floor_db"] = (float(v) for v in floors)
            if self.bearing is not None:
                # Lines f ∓ f_v, f ∓ 2 f_v of each defect: (4 defects, 4 lines), the strongest.
                f_v = self.bearing * rotor_hz
                offsets = (np.array([-1.0, 1.0, -2.0, 2.0])[None, :] * f_v[:, None]).ravel()
                levels, k, fund = _line_levels(p, df, f, offsets, hw)
                levels = levels.reshape(4, 4)
                found = ~np.isnan(levels).all(axis=1)
                best = np.argmax(np.where(np.isnan(levels), -np.inf, levels), axis=1)
                kb = k.reshape(4, 4)[np.arange(4), best]
                floors = _db(_noise_floors(p, kb, hw, 8 * hw), fund)
                for j, dname in enumerate(BEARING_DEFECTS):
                    ok = bool(found[j])
                    out[f"bearing_{dname}_db"] = float(levels[j, best[j]]) if ok else math.nan
                    out[f"bearing_{dname}_floor_db"] = float(floors[j]) if ok else math.nan
            lines = _modulus_lines_db(np.abs(z), self.fs_long, [2 * slip * f, rotor_hz])
            out["epva_2sf_db"], out["epva_fr_db"] = lines
        out["slip"] = slip
        out["rotor_hz"] = (1.0 - slip) * f / pp
        out["slip_method"] = method
        out["slip_prominence_db"] = prominence
        return out


# --- agreement with the kernels --------------------------------------------------------

# Features that are counts or codes: equal exactly.
EXACT_PREFIXES = ("slip_method", "vi_looping_", "vi_intersections_")
# Ratios to the fundamental read off the short window's spectrum, which the kernels take in
# float32 (its rounding is some 1e-9 of the fundamental's amplitude, so a line near the
# noise floor, h3 at -87 dB, differs by 1e-5 relative); and the V-I shapes, dimensionless on
# a unit scale, which follow the supply frequency taken off that spectrum.
FLOAT32_SPECTRUM_PREFIXES = ("thd_", "h3_", "h5_", "h7_", "vi_")
DB_TOLERANCE = 0.05  # dB
REL_TOLERANCE = 1e-6
ABS_TOLERANCE_SPECTRUM = 1e-8  # of the fundamental: -160 dB
ABS_TOLERANCE = 1e-12  # float64 rounding of quantities that are about 0 (skew, dc, i0)


def numpy_extractor(w: Window) -> NumpyExtractor:
    """The twin of the pipeline's own extractor of workload window ``w``."""
    return NumpyExtractor(w.config.motor, FS, w.fs_long)


def mismatches(got: dict, want: dict) -> list[str]:
    """Features of ``got`` (numpy) that differ from ``want`` (kernels) beyond tolerance."""
    bad = []
    if set(got) != set(want):
        bad.append(f"names differ: {sorted(set(got) ^ set(want))}")
    for name in sorted(set(got) & set(want)):
        a, b = clean(got[name]), clean(want[name])
        if a is None or b is None:
            if a is not b:
                bad.append(f"{name}: numpy {a}, kernels {b}")
            continue
        if name.startswith(EXACT_PREFIXES):
            ok = a == b
        elif name.endswith("_db"):
            ok = abs(a - b) <= DB_TOLERANCE
        else:
            tol = ABS_TOLERANCE_SPECTRUM if name.startswith(FLOAT32_SPECTRUM_PREFIXES) else 0.0
            ok = abs(a - b) <= max(REL_TOLERANCE * abs(b), tol, ABS_TOLERANCE)
        if not ok:
            bad.append(f"{name}: numpy {a!r}, kernels {b!r} (diff {a - b:.3g})")
    return bad
