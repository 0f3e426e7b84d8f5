"""The feature vector of one analysis window, from the kernels.

Short-window features (1 s by default) come from the full-band currents; rotor features
(slip, broken-bar sidebands) from the long decimated window, which needs 8 s or more of
signal for 0.1 Hz resolution and is ``None`` until that much has arrived.
"""

from __future__ import annotations

import math

import numpy as np

from edge_agent import kernels
from edge_agent.config import MotorConfig
from edge_agent.kernels.spectrum import MAIN_LOBE_HALF_WIDTH

# Order of the features in every window record (contract names first).
FEATURE_NAMES = (
    "supply_hz",
    "rms_a",
    "rms_b",
    "rms_c",
    "i1",
    "i2",
    "i2_i1",
    "thd_a",
    "thd_b",
    "thd_c",
    "epva_2f_db",
    "slip",
    "rotor_hz",
    "slip_method",
    "brb_lsb_db",
    "brb_usb_db",
)

# What the autoencoder sees by default: features every short window has, which describe
# the motor rather than the grid (supply frequency is left out: it wanders with the grid).
MODEL_FEATURES = (
    "rms_a",
    "rms_b",
    "rms_c",
    "i1",
    "i2_i1",
    "thd_a",
    "thd_b",
    "thd_c",
    "epva_2f_db",
)

# Measurement resolution of each model feature: differences smaller than this are within
# the accuracy of the current sensors (class 0.5-1 CTs) and must not make a window
# anomalous, however steady the baseline was. Used as a floor on the model's scaling.
FEATURE_RESOLUTION = {
    "rms_a": 0.0, "rms_b": 0.0, "rms_c": 0.0, "i1": 0.0,  # 1 % of the mean applies
    "i2_i1": 0.002,
    "thd_a": 0.002, "thd_b": 0.002, "thd_c": 0.002,
    "epva_2f_db": 3.0,
}  # fmt: skip
# Park's vector lines below this are lost in the noise of any real current sensor; the
# floor keeps the log of pure noise (heavy-tailed towards -inf) out of the feature.
EPVA_FLOOR_DB = -80.0

SUPPLY_BAND_HZ = (5.0, 120.0)
SLIP_METHOD_NAMEPLATE = 0.0
SLIP_METHOD_SIDEBANDS = 1.0
# A sideband pair standing this far above the band's median fixes the slip; weaker pairs
# are noise, and the slip then comes from the nameplate and the load current.
SIDEBAND_PROMINENCE_DB = 10.0
MAGNETISING_SHARE = 0.4  # no-load current as a share of rated current, typical of 4-pole motors
MAX_HARMONIC = 40


def empty_features() -> dict[str, float | None]:
    return dict.fromkeys(FEATURE_NAMES)


def supply_frequency(p_sum: np.ndarray, df: float, fs: float) -> float:
    hi = min(SUPPLY_BAND_HZ[1], fs / 2.5)
    return kernels.peak_frequency(p_sum, df, SUPPLY_BAND_HZ[0], hi)


def nameplate_slip(i1: float, motor: MotorConfig) -> float:
    """Slip from the load current, assuming slip grows linearly with torque.

    The active part of the current, ``sqrt(I1² - I_m²)`` with ``I_m`` the magnetising
    current, is taken as proportional to torque; at rated current the slip is the
    nameplate's. A fallback when no sideband pair fixes the slip.
    """
    i_m = MAGNETISING_SHARE * motor.rated_current
    i_active_rated = motor.rated_current * math.sqrt(1 - MAGNETISING_SHARE**2)
    load = math.sqrt(max(i1 * i1 - i_m * i_m, 0.0)) / i_active_rated
    return motor.rated_slip * min(load, 1.5)


def short_features(x: np.ndarray, fs: float, motor: MotorConfig) -> dict[str, float | None]:
    """Features of one short window of currents ``x`` (shape (3, n), amperes)."""
    out = empty_features()
    df = fs / x.shape[1]
    _, p = kernels.power_spectrum(x, fs)
    f = motor.supply_hz if motor.supply_hz is not None else supply_frequency(p.sum(0), df, fs)
    out["supply_hz"] = f
    out["rms_a"], out["rms_b"], out["rms_c"] = (float(v) for v in kernels.rms(x))
    _, i1, i2 = kernels.sequence_components(kernels.dft_phasors(x, fs, f))
    # Sequence magnitudes in rms amperes, like rms_a..c.
    out["i1"] = abs(i1) / math.sqrt(2)
    out["i2"] = abs(i2) / math.sqrt(2)
    out["i2_i1"] = abs(i2) / abs(i1) if abs(i1) > 0 else None
    hw = MAIN_LOBE_HALF_WIDTH["hann"]
    n_harm = min(MAX_HARMONIC, int((p.shape[1] - 1 - hw) * df / f))
    if n_harm >= 2:
        out["thd_a"], out["thd_b"], out["thd_c"] = (float(v) for v in kernels.thd(p, df, f, n_harm))
    if 2 * f < fs / 2:
        out["epva_2f_db"] = max(EPVA_FLOOR_DB, kernels.epva_line_db(x, fs, 2 * f))
    return out


def rotor_features(
    x_long: np.ndarray | None, fs_long: float, f: float, i1: float, motor: MotorConfig
) -> dict[str, float | None]:
    """Slip, rotor speed and broken-bar sidebands from the long window (shape (3, n))."""
    out: dict[str, float | None] = {
        "slip": None,
        "rotor_hz": None,
        "slip_method": None,
        "brb_lsb_db": None,
        "brb_usb_db": None,
    }
    slip = nameplate_slip(i1, motor)
    method = SLIP_METHOD_NAMEPLATE
    if x_long is not None:
        hw = MAIN_LOBE_HALF_WIDTH["blackmanharris"]
        df = fs_long / x_long.shape[1]
        _, p_sum = kernels.space_vector_spectrum(x_long, fs_long, window="blackmanharris")
        f = kernels.peak_frequency(p_sum, df, f - 1.0, f + 1.0)
        s_hi = min(0.25, 1.5 * motor.rated_slip)
        # Sidebands closer than 2·hw + 1 bins would share bins with the fundamental's lobe.
        s_lo = max(0.05 * motor.rated_slip, (2 * hw + 1.5) * df / (2 * f))
        if s_lo < s_hi and f * (1 + 2 * s_hi) / df + hw < p_sum.shape[0]:
            brb = kernels.brb_sidebands(p_sum, df, f, s_lo, s_hi, hw)
            out["brb_lsb_db"] = brb.lsb_db
            out["brb_usb_db"] = brb.usb_db
            if brb.prominence_db >= SIDEBAND_PROMINENCE_DB:
                slip, method = brb.slip, SLIP_METHOD_SIDEBANDS
    out["slip"] = slip
    out["rotor_hz"] = (1.0 - slip) * f / motor.pole_pairs
    out["slip_method"] = method
    return out
