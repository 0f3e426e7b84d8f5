"""Fault lines around the supply frequency: eccentricity, bearings and rotor-slot harmonics.

Every level here is a band power over the window's main lobe (``half_width`` bins either
side of the line's peak bin, see :mod:`edge_agent.kernels.spectrum`) relative to the
fundamental's band power at ``f``, in dB. The spectrum is any power spectrum in that
scaling: one phase (:func:`power_spectrum`) or the space vector
(:func:`space_vector_spectrum`, whose lines below 0 Hz are negative-sequence and not in
``p``). Use the Blackman-Harris window (``half_width=4``): a Hann window's leakage from the
fundamental masks lines 50 dB down within a few Hz of it.

Lines and their sources (f supply, f_r = (1 - s)·f/p rotor frequency, p pole pairs):

- eccentricity (mixed): f ± k·f_r, k = 1, 2 (Nandi, Toliyat & Li, IEEE Trans. Energy
  Convers. 20(4), 2005, 719-729, eq. for n_d = 1 with R = 0; Thomson & Barbour, 1998);
- bearing defects: f ± m·f_v, f_v one of the defect frequencies of
  :mod:`edge_agent.kernels.bearing` (Schoen, Habetler, Kamran & Bartheld, IEEE Trans. Ind.
  Appl. 31(6), 1995, 1274-1279);
- principal slot harmonics: f_sh = f·[(R/p)·(1 - s) ± ν] = R·f_r ± ν·f, R rotor bars,
  ν = 1, 3, ... the stator time-harmonic order (Nandi et al., 2005, with k = 1, n_d = 0;
  Hurst & Habetler, IEEE Trans. Power Electron. 11(1), 1996, 66-73).

The line nearest a nominal frequency is taken as the largest bin within ±1 bin of it, since
nameplate geometry and a measured rotor speed put a line only roughly where it is.

Noise floor: the median of the single-bin powers within ``floor_half_band`` bins of the
line, its own ±``half_width`` bins left out, times ``(2·half_width + 1) / ln 2``. The first
factor makes it a band power like the level's; the second turns the median into a mean for
Gaussian noise, whose per-bin power is exponentially distributed (χ² with two degrees of
freedom, median = ln 2 × mean). A line that is pure noise thus reads about 0 dB above its
floor, and the floor of white noise is its expected band power, not 1.6 dB below it.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.spectrum import _band_power, _peak_bin

# Median of an exponential distribution is ln 2 × its mean (see the module docstring).
MEDIAN_TO_MEAN = 1.0 / math.log(2.0)
_TINY = 1e-300


class EccentricityLines(NamedTuple):
    lsb1_db: float  # f - f_r re the fundamental, dB
    usb1_db: float  # f + f_r
    lsb2_db: float  # f - 2 f_r (NaN when at or below 0 Hz)
    usb2_db: float  # f + 2 f_r


class SlipEstimate(NamedTuple):
    slip: float  # slip implied by the strongest pair of lines, per unit
    prominence_db: float  # the pair's band power above its noise floor, dB


class BearingLines(NamedTuple):
    levels_db: np.ndarray  # (4,) outer, inner, ball, cage: strongest line re fundamental, dB
    floors_db: np.ndarray  # (4,) noise floor at that line re fundamental, dB


# --- jitted cores ---------------------------------------------------------------------


@jit
def _db(power, ref):
    if power != power:
        return math.nan
    return 10.0 * math.log10(max(power, _TINY) / ref)


@jit
def _refine(p, k0):
    """The largest of bins k0 - 1, k0, k0 + 1 (k0 on ties)."""
    k = k0
    if p[k0 - 1] > p[k]:
        k = k0 - 1
    if p[k0 + 1] > p[k]:
        k = k0 + 1
    return k


@jit
def _floor(p, k, hw, fhb, scratch):
    """Median-based noise band power around bin k, excluding its ±hw bins; NaN if none."""
    lo = max(1, k - fhb)  # bin 0 holds the sensors' offset, not noise
    hi = min(p.shape[0] - 1, k + fhb)
    m = 0
    for i in range(lo, hi + 1):
        if abs(i - k) > hw:
            scratch[m] = p[i]
            m += 1
    if m == 0:
        return math.nan
    band = scratch[:m]
    band.sort()
    return band[m // 2] * (2 * hw + 1) * MEDIAN_TO_MEAN


@jit
def _line_levels(p, df, f, offsets, hw, fhb, levels, floors):
    n = p.shape[0]
    levels[:] = math.nan
    floors[:] = math.nan
    fund = _band_power(p, f / df, hw)
    if not fund > 0.0:
        return
    scratch = np.empty(2 * fhb + 1)
    for j in range(offsets.shape[0]):
        kl = (f + offsets[j]) / df
        if not (kl > 0.0 and kl < n):  # also False for NaN
            continue
        k0 = int(round(kl))
        if k0 - 1 - hw < 0 or k0 + 1 + hw > n - 1:
            continue
        k = _refine(p, k0)
        levels[j] = _db(_band_power(p, float(k), hw), fund)
        if fhb > hw:
            floors[j] = _db(_floor(p, k, hw, fhb, scratch), fund)


@jit
def _is_peak(p, k):
    return p[k] > p[k - 1] and p[k] >= p[k + 1]


@jit
def _pair_slip(p, df, f, c, d, a, scale, s_lo, s_hi, hw, fhb):
    """Strongest pair of lines at bins c + x and d + a·x, x = scale·(1 - s)·f/df.

    Every bin k of the upper branch (c + x) over the slip band is a candidate when it or
    its partner is a local maximum; the pair with the largest p[k] + p[partner] wins. Both
    lines are refined by a parabola through log powers, each gives x, and the two are
    averaged weighted by the lines' band powers: a line lost in the noise has no say, and
    two equal lines cancel an error in f.
    """
    kf = f / df
    lo = int(math.ceil(c + scale * (1.0 - s_hi) * kf))
    hi = int(math.floor(c + scale * (1.0 - s_lo) * kf))
    best = lo
    best_score = -1.0
    # Only local maxima are candidates: a band edge on a line's skirt is not a line.
    for peaks_only in (True, False):
        for k in range(lo, hi + 1):
            m = int(round(d + a * (k - c)))
            if peaks_only and not (_is_peak(p, k) or _is_peak(p, m)):
                continue
            score = p[k] + p[m]
            if score > best_score:
                best_score = score
                best = k
        if best_score >= 0.0:
            break
    ku = _refine(p, best)
    km = _refine(p, int(round(d + a * (best - c))))
    xu = _peak_bin(p, ku, ku + 1) - c
    xm = (_peak_bin(p, km, km + 1) - d) / a
    pu = _band_power(p, float(ku), hw)
    pm = _band_power(p, float(km), hw)
    if pu + pm > 0.0:
        x = (pu * xu + pm * xm) / (pu + pm)
    else:
        x = 0.5 * (xu + xm)
    slip = 1.0 - x / (scale * kf)
    scratch = np.empty(2 * fhb + 1)
    noise = _floor(p, ku, hw, fhb, scratch) + _floor(p, km, hw, fhb, scratch)
    if not noise > 0.0:
        return slip, math.nan
    return slip, _db(pu + pm, noise)


@jit
def _bearing_lines(p, df, f, f_defects, harmonics, hw, fhb, levels, floors):
    nl = 2 * harmonics
    offsets = np.empty(nl)
    lv = np.empty(nl)
    fl = np.empty(nl)
    for v in range(f_defects.shape[0]):
        for m in range(1, harmonics + 1):
            offsets[2 * m - 2] = -m * f_defects[v]
            offsets[2 * m - 1] = m * f_defects[v]
        _line_levels(p, df, f, offsets, hw, fhb, lv, fl)
        best = -1
        for j in range(nl):
            if lv[j] == lv[j] and (best < 0 or lv[j] > lv[best]):
                best = j
        if best < 0:
            levels[v] = math.nan
            floors[v] = math.nan
        else:
            levels[v] = lv[best]
            floors[v] = fl[best]


# --- validation -----------------------------------------------------------------------


def _int(value: int, name: str, minimum: int) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}={value!r} must be an integer") from None
    if v < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    return v


def _spectrum(p: np.ndarray, df: float, f: float, half_width: int) -> tuple[np.ndarray, int]:
    """Checked contiguous float64 ``p`` and half width; the fundamental's lobe must fit."""
    p = np.ascontiguousarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {p.shape}")
    if not (math.isfinite(df) and df > 0):
        raise ValueError(f"{df=} must be a positive number of Hz")
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"{f=} must be a positive number of Hz")
    hw = _int(half_width, "half_width", 1)
    if round(f / df) + hw > p.shape[0] - 1:
        raise ValueError(
            f"the fundamental's band around {f=} Hz runs past the spectrum's last bin "
            f"({p.shape[0]} bins of {df=} Hz)"
        )
    return p, hw


def _floor_band(floor_half_band: int, hw: int) -> int:
    return _int(floor_half_band, "floor_half_band", hw + 1)


def _slip_band(s_lo: float, s_hi: float) -> None:
    if not 0.0 <= s_lo < s_hi < 1.0:
        raise ValueError(f"expected 0 <= {s_lo=} < {s_hi=} < 1")


def _check_branches(
    n: int, kf: float, c: float, d: float, a: float, x_lo: float, x_hi: float, hw: int, what: str
) -> None:
    """Both branches of a pair search must lie inside the spectrum and clear of f's lobe."""
    if math.ceil(c + x_lo) > math.floor(c + x_hi):
        raise ValueError(f"the slip band maps to less than one bin for the {what}")
    ends = (c + x_lo, c + x_hi, d + a * x_lo, d + a * x_hi)
    if min(ends) < hw + 1 or max(ends) > n - 2 - hw:
        raise ValueError(
            f"the {what} searched over the slip band run past the spectrum "
            f"(bins {min(ends):.1f}..{max(ends):.1f} of {n}, with {hw + 1} bins of margin)"
        )
    for lo, hi in ((c + x_lo, c + x_hi), sorted((d + a * x_lo, d + a * x_hi))):
        if lo < kf + 2 * hw + 1 and hi > kf - 2 * hw - 1:
            raise ValueError(f"the {what} searched over the slip band reach the fundamental")


# --- public functions -----------------------------------------------------------------


def line_levels(
    p: np.ndarray,
    df: float,
    f: float,
    offsets: Sequence[float] | np.ndarray,
    half_width: int = 4,
    floor_half_band: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Levels and noise floors of the lines at ``f + offsets`` Hz, in dB re the fundamental.

    Parameters
    ----------
    p : power spectrum, positive bins 0.. of ``df`` Hz (the scaling of ``power_spectrum``)
    f : supply frequency, Hz, as measured (e.g. by ``peak_frequency``): the fundamental's
        band power is taken around the bin nearest ``f`` without further search.
    offsets : line positions relative to ``f``, Hz; may be negative.
    half_width : main-lobe half width in bins (4 for Blackman-Harris).
    floor_half_band : the noise floor is the median over ±this many bins, > half_width.

    Returns ``(levels_db, floors_db)``, each of the shape of ``offsets``. A line's level is
    its band power around the largest bin within ±1 bin of ``f + offset``; its floor is as
    the module docstring defines. Both are NaN where the line's band (with the ±1-bin
    search) does not fit inside the spectrum, in particular at or below 0 Hz and beyond
    the last bin. Example: a 50 Hz, 10 A current with a 0.1 A line at 74.25 Hz reads
    -40 dB at ``offsets=[24.25]``.
    """
    p, hw = _spectrum(p, df, f, half_width)
    fhb = _floor_band(floor_half_band, hw)
    offs = np.asarray(offsets, dtype=np.float64)
    flat = np.ascontiguousarray(offs.reshape(-1))
    levels = np.empty(flat.shape[0])
    floors = np.empty(flat.shape[0])
    _line_levels(p, float(df), float(f), flat, hw, fhb, levels, floors)
    return levels.reshape(offs.shape), floors.reshape(offs.shape)


def eccentricity_sidebands(
    p: np.ndarray, df: float, f: float, rotor_hz: float, half_width: int = 4
) -> EccentricityLines:
    """Eccentricity lines at f ∓ f_r and f ∓ 2·f_r, in dB re the fundamental.

    ``rotor_hz`` is the shaft's rotation frequency f_r in Hz (from a slip estimate). Lines
    at or below 0 Hz (f - 2·f_r for a 4-pole motor at 50 Hz is 1.5 Hz; for a 2-pole one it
    is negative) read NaN. Floors: call :func:`line_levels` with the same offsets.
    """
    p, hw = _spectrum(p, df, f, half_width)
    f_r = float(rotor_hz)
    if not (math.isfinite(f_r) and f_r > 0):
        raise ValueError(f"{rotor_hz=} must be a positive number of Hz")
    offsets = np.array([-f_r, f_r, -2.0 * f_r, 2.0 * f_r])
    levels = np.empty(4)
    _line_levels(p, float(df), float(f), offsets, hw, 0, levels, np.empty(4))
    return EccentricityLines(*(float(v) for v in levels))


def slip_from_eccentricity(
    p: np.ndarray,
    df: float,
    f: float,
    pole_pairs: int,
    s_lo: float,
    s_hi: float,
    half_width: int = 4,
    floor_half_band: int = 32,
) -> SlipEstimate:
    """Slip from the eccentricity pair f ± f_r, searched over slips ``s_lo``..``s_hi``.

    A speed estimate from the current alone: every motor has some eccentricity. For each
    candidate f_r = (1 - s)·f/p the pair p[f - f_r] + p[f + f_r] is scored at local maxima
    (as :func:`brb_sidebands` does), the strongest pair wins and is refined between bins,
    and ``s = 1 - p·f_r/f``. ``prominence_db`` is the pair's summed band power over the sum
    of its two noise floors (about 0 dB for noise; 10 dB or more is a line). For a 2-pole
    motor the lower line is at s·f, near 0 Hz: keep ``s_lo·f`` a few main lobes above it.
    Example: a 4-pole motor on 50 Hz at s = 0.03 has lines at 25.75 and 74.25 Hz.
    """
    p, hw = _spectrum(p, df, f, half_width)
    pp = _int(pole_pairs, "pole_pairs", 1)
    _slip_band(s_lo, s_hi)
    fhb = _floor_band(floor_half_band, hw)
    kf = f / df
    scale = 1.0 / pp
    x_lo, x_hi = scale * (1 - s_hi) * kf, scale * (1 - s_lo) * kf
    _check_branches(p.shape[0], kf, kf, kf, -1.0, x_lo, x_hi, hw, "eccentricity lines")
    res = _pair_slip(p, float(df), float(f), kf, kf, -1.0, scale, s_lo, s_hi, hw, fhb)
    return SlipEstimate(*(float(r) for r in res))


def slip_from_slot_harmonics(
    p: np.ndarray,
    df: float,
    f: float,
    rotor_bars: int,
    pole_pairs: int,
    s_lo: float,
    s_hi: float,
    half_width: int = 4,
    floor_half_band: int = 32,
    *,
    nu: int = 1,
) -> SlipEstimate:
    """Slip from the principal slot harmonics f·[(R/p)·(1 - s) ± ν] (Hurst & Habetler, 1996).

    The pair R·f_r + ν·f and R·f_r - ν·f (2ν·f apart, moving together with speed) is
    searched over slips ``s_lo``..``s_hi`` as :func:`slip_from_eccentricity` searches its
    pair, and ``s = 1 - (p/R)·(R·f_r)/f``. A slot harmonic moves R/p times faster than
    f_r, so the slip comes out R times finer than from the eccentricity lines. Which of the
    two lines a motor shows depends on R and p (and, in the space-vector spectrum, on its
    direction of rotation); the search only needs one of them. ``nu`` is the stator
    time-harmonic order, 1 by default (3 uses the lines 3f either side).
    Example: R = 28, p = 2, 50 Hz, s = 0.03 puts them at 629 and 729 Hz.
    """
    p, hw = _spectrum(p, df, f, half_width)
    r = _int(rotor_bars, "rotor_bars", 2)
    pp = _int(pole_pairs, "pole_pairs", 1)
    v = _int(nu, "nu", 1)
    _slip_band(s_lo, s_hi)
    fhb = _floor_band(floor_half_band, hw)
    kf = f / df
    scale = r / pp
    x_lo, x_hi = scale * (1 - s_hi) * kf, scale * (1 - s_lo) * kf
    c, d = v * kf, -v * kf
    _check_branches(p.shape[0], kf, c, d, 1.0, x_lo, x_hi, hw, "slot harmonics")
    res = _pair_slip(p, float(df), float(f), c, d, 1.0, scale, s_lo, s_hi, hw, fhb)
    return SlipEstimate(*(float(r) for r in res))


def bearing_line_levels(
    p: np.ndarray,
    df: float,
    f: float,
    rotor_hz: float,
    orders: Sequence[float],
    harmonics: int = 2,
    half_width: int = 4,
    floor_half_band: int = 32,
) -> BearingLines:
    """Strongest bearing-defect line of each kind, in dB re the fundamental.

    ``orders`` are the defect frequencies per unit of shaft speed, a
    :class:`~edge_agent.kernels.bearing.BearingFrequencies` from ``bearing_orders``
    (outer, inner, ball, cage; pass ``ball=2·BSF`` to look for a ball defect's impacts).
    For each defect frequency f_v = order · ``rotor_hz`` the lines f ± m·f_v,
    m = 1..``harmonics`` (Schoen et al., 1995), are measured as :func:`line_levels` does,
    and the strongest one is reported with its own noise floor. Lines at or below 0 Hz or
    past the spectrum are skipped (in the space-vector spectrum f - f_v < 0 is negative
    sequence and not in ``p``); a defect with none left reads NaN.
    Returns ``BearingLines(levels_db, floors_db)``, each of shape (4,).
    """
    p, hw = _spectrum(p, df, f, half_width)
    fhb = _floor_band(floor_half_band, hw)
    h = _int(harmonics, "harmonics", 1)
    f_r = float(rotor_hz)
    if not (math.isfinite(f_r) and f_r > 0):
        raise ValueError(f"{rotor_hz=} must be a positive number of Hz")
    o = np.asarray(orders, dtype=np.float64)
    if o.shape != (4,) or not np.all(np.isfinite(o) & (o > 0)):
        raise ValueError(f"orders must be 4 positive numbers (outer, inner, ball, cage), got {o}")
    levels, floors = np.empty(4), np.empty(4)
    _bearing_lines(p, float(df), float(f), o * f_r, h, hw, fhb, levels, floors)
    return BearingLines(levels, floors)
