"""Broken-rotor-bar sidebands at (1 ± 2s)·f, searched over the slip band the nameplate allows.

Broken bars modulate the stator current at twice the slip frequency, putting a lower
sideband at (1 - 2s)f and an upper one at (1 + 2s)f (Thomson & Fenger, 2001). The slip is
not known in advance, so the pair is searched for: every local maximum in the lower band
is scored by the power of the pair it implies, the strongest pair wins, and its levels are
band powers over the window's main lobe relative to the fundamental's.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from edge_agent.kernels._flags import jit
from edge_agent.kernels.spectrum import _band_power, _peak_bin


class BrbResult(NamedTuple):
    slip: float  # slip implied by the strongest pair, 0..1
    lsb_db: float  # (1 - 2s)f line re the fundamental, dB
    usb_db: float  # (1 + 2s)f line re the fundamental, dB
    prominence_db: float  # lower sideband above the median of the search band, dB


@jit
def _brb(p, df, f, s_lo, s_hi, hw):
    kf = f / df
    fund = _band_power(p, kf, hw)
    lo = int(math.ceil(f * (1.0 - 2.0 * s_hi) / df))
    hi = int(math.floor(f * (1.0 - 2.0 * s_lo) / df))
    lo = max(lo, 1)
    best = lo
    best_score = -1.0
    # Only local maxima are candidates: a band edge on the fundamental's skirt is not a line.
    for peaks_only in (True, False):
        for k in range(lo, hi + 1):
            if peaks_only and not (p[k] > p[k - 1] and p[k] >= p[k + 1]):
                continue
            mirror = int(round(2.0 * kf - k))
            if mirror >= p.shape[0]:
                continue
            score = p[k] + p[mirror]
            if score > best_score:
                best_score = score
                best = k
        if best_score >= 0.0:
            break
    k_lsb = _peak_bin(p, max(best - 1, 1), min(best + 2, p.shape[0] - 1))
    slip = (kf - k_lsb) / (2.0 * kf)
    k_usb = kf * (1.0 + 2.0 * slip)
    lsb = _band_power(p, k_lsb, hw)
    usb = _band_power(p, k_usb, hw)
    band = np.sort(p[lo : hi + 1])
    floor = band[band.shape[0] // 2] * (2 * hw + 1)
    tiny = 1e-300
    return (
        slip,
        10.0 * math.log10(max(lsb, tiny) / fund),
        10.0 * math.log10(max(usb, tiny) / fund),
        10.0 * math.log10(max(lsb, tiny) / max(floor, tiny)),
    )


def brb_sidebands(
    p: np.ndarray, df: float, f: float, s_lo: float, s_hi: float, half_width: int = 4
) -> BrbResult:
    """Search power spectrum ``p`` (bins of ``df`` Hz) for the broken-bar pair around ``f``.

    ``s_lo``..``s_hi`` is the slip band searched. ``half_width`` is the window's main-lobe
    half width in bins (4 for Blackman-Harris, which this search needs: a Hann window's
    leakage from the fundamental would mask sidebands 50 dB down a few Hz away). Keep
    ``2·s_lo·f`` at least ``2·half_width + 1`` bins from ``f``, so that neither the search nor
    the sideband's band power reaches into the fundamental's main lobe.
    """
    p = np.ascontiguousarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {p.shape}")
    if not 0 < s_lo < s_hi < 0.5:
        raise ValueError(f"expected 0 < {s_lo=} < {s_hi=} < 0.5")
    if f * (1 + 2 * s_hi) / df + half_width >= p.shape[0]:
        raise ValueError(f"the search band around {f=} Hz runs past the spectrum's last bin")
    if 2 * s_lo * f / df < 2 * half_width + 1:
        raise ValueError(
            f"{s_lo=} puts sidebands within reach of the fundamental's main lobe at {df=} Hz "
            f"resolution; expected 2·s_lo·f >= {2 * half_width + 1} bins"
        )
    return BrbResult(*_brb(p, float(df), float(f), float(s_lo), float(s_hi), int(half_width)))
