"""The feature vector of one analysis window, from the kernels.

Two windows feed each record (docs/features.md lists every feature with its unit and
reference):

- the **short window** (1 s by default) of the full-band currents, and the voltages when
  they are wired: supply frequency, sequence components, harmonics, waveform statistics,
  Park's vector, power and V-I trajectory features, rotor-slot harmonics;
- the **long window** (about 8 s) of the current space vector i_α + j·i_β, decimated to
  about 2 kS/s for 0.13 Hz resolution near the supply: slip, broken-bar, eccentricity and
  bearing lines, and the Park's vector lines at 2sf and f_r. It is ``None`` until that
  much clean signal has arrived, and while the load is changing.

Work is shared: the currents' spectra come from two FFTs (kernels.engine), all phasors,
the voltages' rms and the Park's vector line at 2f from one pass over the window, and the
long window from one complex FFT.
"""

from __future__ import annotations

import cmath
import logging
import math
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from edge_agent import kernels
from edge_agent.config import MotorConfig
from edge_agent.errors import ConfigError
from edge_agent.kernels import fft
from edge_agent.kernels.bearing import bearing_orders
from edge_agent.kernels.engine import fft_length, fundamental, phase_spectra
from edge_agent.kernels.lines import (
    bearing_line_levels,
    eccentricity_sidebands,
    line_levels,
    slip_from_eccentricity,
    slip_from_slot_harmonics,
)
from edge_agent.kernels.park import modulus_lines_db, park_ellipse
from edge_agent.kernels.power import power_from_phasors
from edge_agent.kernels.spectrum import MAIN_LOBE_HALF_WIDTH, harmonics, space_vector_power
from edge_agent.kernels.vi import VI_FEATURE_NAMES, vi_features
from edge_agent.kernels.waveform import WAVEFORM_STAT_NAMES, waveform_stats

log = logging.getLogger(__name__)

PHASES = ("a", "b", "c")
BEARING_DEFECTS = ("outer", "inner", "ball", "cage")

# How the slip was found (feature ``slip_method``), most trusted first.
SLIP_METHOD_NAMEPLATE = 0.0
SLIP_METHOD_SIDEBANDS = 1.0  # broken-bar pair (1 ± 2s)f
SLIP_METHOD_ECCENTRICITY = 2.0  # f ± f_r
SLIP_METHOD_SLOTS = 3.0  # rotor-slot harmonics (needs rotor_bars)

# A line pair standing this far above the median of its search band fixes the slip;
# weaker pairs are noise, and the slip then comes from the nameplate and the load current.
SIDEBAND_PROMINENCE_DB = 10.0
# The broken-bar pair lies a few bins from the fundamental, where the Blackman-Harris
# window's own sidelobes reach -92 dB: over a floor lower than that (a clean, steady
# recording), they stand out of the search band like a pair. A pair fixes the slip only
# with its lower line above this level, well clear of them.
BRB_SLIP_MIN_DB = -80.0
MAGNETISING_SHARE = 0.4  # no-load current as a share of rated current, typical of 4-pole motors
MAX_HARMONIC = 40
SUPPLY_BAND_HZ = (5.0, 120.0)
# Park's vector lines below this are lost in the noise of any real current sensor; the
# floor keeps the log of pure noise (heavy-tailed towards -inf) out of the feature.
EPVA_FLOOR_DB = -80.0
# Rolling statistics across windows, for these features.
ROLLING_FEATURES = ("i1", "i2_i1", "thd_a", "thd_b", "thd_c", "epva_2f_db")

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


def _names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    current = [
        "supply_hz", "i1", "i2", "i0", "i2_i1", "i0_i1", "unbalance_nema",
        "i_angle_b_deg", "i_angle_c_deg",
        *(f"rms_{p}" for p in PHASES),
        *(f"{s}_{p}" for s in ("peak", "crest", "skew", "kurtosis", "dc") for p in PHASES),
        *(f"thd_{p}" for p in PHASES),
        *(f"h{h}_{p}" for h in (3, 5, 7) for p in PHASES),
        "epva_2f_db", "epva_ellipse_ratio", "epva_axis_deg",
        "slip", "rotor_hz", "slip_method", "slip_prominence_db",
        "brb_lsb_db", "brb_usb_db", "brb_db", "brb_prominence_db",
        "ecc_lsb_db", "ecc_usb_db", "ecc2_lsb_db", "ecc2_usb_db",
        "ecc_lsb_floor_db", "ecc_usb_floor_db",
        *(f"bearing_{d}_db" for d in BEARING_DEFECTS),
        *(f"bearing_{d}_floor_db" for d in BEARING_DEFECTS),
        "epva_2sf_db", "epva_fr_db",
    ]  # fmt: skip
    rolling = [f"{k}_{s}" for k in ROLLING_FEATURES for s in ("roll", "diff")]
    voltage = [
        "v1", "v2", "v2_v1", "p_w", "q_var", "pf", "z2_ohm",
        "v_angle_b_deg", "v_angle_c_deg", *(f"phi_{p}_deg" for p in PHASES),
        *(f"rms_v{p}" for p in PHASES),
        *(f"vi_{n}_{p}" for n in VI_FEATURE_NAMES for p in PHASES),
    ]  # fmt: skip
    return tuple(current), tuple(rolling), tuple(voltage)


CURRENT_FEATURES, ROLLING_NAMES, VOLTAGE_FEATURES = _names()
# Order of the features in every window record (contract names first among equals).
FEATURE_NAMES = CURRENT_FEATURES + ROLLING_NAMES + VOLTAGE_FEATURES


# Keys of per-phase results, in the row-major order of the kernels' (phase, value) arrays.
_STAT_KEYS = tuple(f"{name}_{p}" for p in PHASES for name in WAVEFORM_STAT_NAMES)
_VI_KEYS = tuple(f"vi_{name}_{p}" for p in PHASES for name in VI_FEATURE_NAMES)
_THD_KEYS = tuple(f"thd_{p}" for p in PHASES)
_HARMONIC_KEYS = tuple((h, tuple(f"h{h}_{p}" for p in PHASES)) for h in (3, 5, 7))
_RMS_V_KEYS = tuple(f"rms_v{p}" for p in PHASES)
_PHI_KEYS = tuple(f"phi_{p}_deg" for p in PHASES)
_EMPTY = {
    v: dict.fromkeys(CURRENT_FEATURES + ROLLING_NAMES + (VOLTAGE_FEATURES if v else ()))
    for v in (False, True)
}


def empty_features(voltages: bool = False) -> dict[str, float | None]:
    return _EMPTY[bool(voltages)].copy()


def wrap_deg(angle: float) -> float:
    """``angle`` in degrees, brought into (-180, 180]."""
    return 180.0 - (180.0 - angle) % 360.0


def lag_deg(ref: complex, x: complex) -> float | None:
    """How far phasor ``x`` lags ``ref``, degrees in [0, 360); None if either is zero."""
    if ref == 0 or x == 0:
        return None
    return math.degrees(cmath.phase(ref) - cmath.phase(x)) % 360.0


def nameplate_slip(i1: float, motor: MotorConfig, f: float | None = None) -> float:
    """Slip from the load current, assuming slip grows linearly with torque.

    The active part of the current, ``sqrt(I1² - I_m²)`` with ``I_m`` the magnetising
    current, is taken as proportional to torque; at rated current and the rated
    frequency the slip is the nameplate's, and at supply frequency ``f`` that times
    ``motor.slip_scale(f)`` (a drive running the motor slower). A fallback when no line in the
    spectrum fixes the slip.
    """
    i_m = MAGNETISING_SHARE * motor.rated_current
    i_active_rated = motor.rated_current * math.sqrt(1 - MAGNETISING_SHARE**2)
    load = math.sqrt(max(i1 * i1 - i_m * i_m, 0.0)) / i_active_rated
    return motor.rated_slip * min(load, 1.5) * motor.slip_scale(f)


def slip_band(motor: MotorConfig, f: float | None) -> tuple[float, float]:
    """The slips the lines that fix it are searched over at supply frequency ``f``: from
    5 % of the nameplate's full-load slip to 1.5 times it (an overload), both times
    ``motor.slip_scale(f)``; at most 0.25."""
    k = motor.slip_scale(f)
    return 0.05 * motor.rated_slip * k, min(0.25, 1.5 * motor.rated_slip * k)


def fft_backend() -> str:
    """The FFT library ``EDGE_AGENT_FFT`` picks (:mod:`edge_agent.kernels.fft`).

    Raises ConfigError (exit 78), naming the variable and the values it takes, when it names
    none of them or names FFTW without pyFFTW installed.
    """
    try:
        return fft.default_backend()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _db_ratio(p_line: float, p_ref: float) -> float | None:
    if p_ref <= 0:
        return None
    return 10.0 * math.log10(max(p_line, 1e-300) / p_ref)


class FeatureExtractor:
    """Computes the features of a window for one motor at one sample rate.

    Everything the nameplate fixes (search bands, bearing orders) is worked out once here.
    """

    def __init__(self, motor: MotorConfig, fs: float, fs_long: float) -> None:
        self.motor = motor
        self.fs = float(fs)
        self.fs_long = float(fs_long)
        b = motor.bearing
        self.bearing = (
            None
            if b is None
            else bearing_orders(
                b.n_balls, b.ball_diameter_mm, b.pitch_diameter_mm, b.contact_angle_deg
            )
        )
        # Spectra are split up to the highest line any feature reads.
        top = MAX_HARMONIC * SUPPLY_BAND_HZ[1]
        if motor.rotor_bars:
            top = max(top, SUPPLY_BAND_HZ[1] * (motor.rotor_bars / motor.pole_pairs + 3))
        self.fmax = min(self.fs / 2, top)
        self.slot_spectrum: tuple[np.ndarray, float] | None = None
        self.peak_hz: float | None = None  # the last short window's fundamental, Hz
        # The FFT library (EDGE_AGENT_FFT), settled once rather than read at every window.
        self.fft_backend = fft_backend()

    def tune_ffts(self, n_short: int, n_long: int) -> tuple[str, ...]:
        """Have FFTW measure the plans of windows of ``n_short`` and ``n_long`` samples, once
        per machine (:func:`edge_agent.kernels.fft.tune`): the short window's two transforms
        and the long window's one. Returns what tune() did for each of them."""
        nfft = fft_length(n_short)
        plans = ((nfft, "c2c"), (nfft, "r2c"), (n_long, "c2c"))
        t = time.perf_counter()
        states = tuple(fft.tune(n, kind, self.fft_backend) for n, kind in plans)
        if "measured" in states:
            log.info(
                "measured the FFTW plans of %d- and %d-point windows in %.1f s, kept in %s "
                "(once per machine)", n_short, n_long, time.perf_counter() - t, fft.wisdom_path(),
            )  # fmt: skip
        return states

    # --- short window -------------------------------------------------------------------

    def short(self, x: np.ndarray, v: np.ndarray | None) -> dict[str, float | None]:
        """Features of the short window: currents ``x`` (3, n) in A, voltages ``v`` or None.

        Every sample must be finite: the pipeline fills short gaps and gives a window with
        NaN left in it no features at all (so the V-I kernel need not check them again).
        """
        out: dict[str, float | None] = {}
        fs = self.fs
        spec = phase_spectra(x, fs, fmax=self.fmax, backend=self.fft_backend)
        df = spec.df
        motor = self.motor
        # The fundamental's frequency, read off the spectrum; also when [motor] supply_hz
        # fixes the one the features are computed at, so that a wrong one can be told
        # (wiring.wiring_problems).
        self.peak_hz = kernels.peak_frequency(
            spec.pos, df, SUPPLY_BAND_HZ[0], min(SUPPLY_BAND_HZ[1], fs / 2.5)
        )
        f = self.peak_hz if motor.supply_hz is None else motor.supply_hz
        out["supply_hz"] = f
        # One pass at f: phasors and rms of the currents and voltages, the Park's vector line.
        fund = fundamental(x, fs, f, v)
        ph = fund.phasors[:3]
        i0, i1, i2 = kernels.sequence_components(ph)
        a0, a1, a2 = abs(i0), abs(i1), abs(i2)
        # Sequence magnitudes in rms amperes, like rms_a..c.
        out["i1"] = a1 / math.sqrt(2)
        out["i2"] = a2 / math.sqrt(2)
        out["i0"] = a0 / math.sqrt(2)
        out["i2_i1"] = a2 / a1 if a1 > 0 else None
        out["i0_i1"] = a0 / a1 if a1 > 0 else None
        # Phase angles behind ia (120°, 240° when wired right: wiring.py reads them).
        pa, pb, pc = ph.tolist()  # Python complex: cmath is 5x faster on them
        out["i_angle_b_deg"], out["i_angle_c_deg"] = lag_deg(pa, pb), lag_deg(pa, pc)
        stats = waveform_stats(x)
        out.update(zip(_STAT_KEYS, stats.ravel().tolist(), strict=True))
        rms = stats[:, 0].tolist()
        mean = sum(rms) / 3.0
        out["unbalance_nema"] = max(abs(r - mean) for r in rms) / mean if mean > 0 else None
        self._harmonics(spec, f, out)
        out["epva_2f_db"] = max(EPVA_FLOOR_DB, fund.epva_db) if 2 * f < fs / 2 else None
        out["epva_ellipse_ratio"], out["epva_axis_deg"] = park_ellipse(i1, i2)
        if v is not None:
            self._voltages(x, v, ph, fund.phasors[3:], fund.rms[3:], f, out)
        # The rotor-slot harmonics are read off this spectrum by long().
        self.slot_spectrum = (spec.pos, df)
        return out

    def _harmonics(self, spec, f: float, out: dict) -> None:
        hw = MAIN_LOBE_HALF_WIDTH["hann"]
        n_harm = min(MAX_HARMONIC, int((spec.phase.shape[1] - 1 - hw) * spec.df / f))
        if n_harm < 2:
            return
        thd, ratios = harmonics(spec.phase, spec.df, f, n_harm, hw)
        out.update(zip(_THD_KEYS, thd.tolist(), strict=True))
        for h, keys in _HARMONIC_KEYS:
            if h <= n_harm:
                out.update(zip(keys, ratios[:, h - 1].tolist(), strict=True))

    def _voltages(self, x, v, ph_i, ph_v, rms_v, f: float, out: dict) -> None:
        pq = power_from_phasors(ph_v, ph_i)
        out["v1"], out["v2"], out["v2_v1"] = pq.v1, pq.v2, pq.v2_v1
        out["p_w"], out["q_var"], out["pf"] = pq.p, pq.q, pq.pf
        # Below 0.1 % the negative sequence is window leakage, and V2/I2 would be noise.
        out["z2_ohm"] = pq.z2 if (out.get("i2_i1") or 0.0) > 1e-3 else None
        out.update(zip(_RMS_V_KEYS, rms_v.tolist(), strict=True))
        pv, pi = ph_v.tolist(), ph_i.tolist()  # Python complex: cmath is 5x faster on them
        out["v_angle_b_deg"], out["v_angle_c_deg"] = lag_deg(pv[0], pv[1]), lag_deg(pv[0], pv[2])
        for key, v_k, i_k in zip(_PHI_KEYS, pv, pi, strict=True):
            # Each phase's current behind its voltage, in (-180, 180]: positive lags.
            lag = lag_deg(v_k, i_k)
            out[key] = None if lag is None else wrap_deg(lag)
        try:
            vi = vi_features(v, x, self.fs, f, check_finite=False)
        except ValueError:  # fewer than two whole cycles in the window
            return
        out.update(zip(_VI_KEYS, vi.ravel().tolist(), strict=True))

    # --- long window --------------------------------------------------------------------

    def long(
        self, z: np.ndarray | None, f: float, i1: float, slot_spectrum: tuple | None = None
    ) -> dict[str, float | None]:
        """Rotor, air-gap and bearing features from the decimated space vector ``z``.

        ``z`` is complex, i_α + j·i_β, at ``fs_long``; None gives the nameplate slip only.
        ``slot_spectrum`` is the short window's positive-sequence spectrum and bin width,
        for the rotor-slot harmonics (they lie far above the long window's band).
        """
        motor = self.motor
        out: dict[str, float | None] = {}
        slip, method, prominence = nameplate_slip(i1, motor, f), SLIP_METHOD_NAMEPLATE, None
        s_min, s_max = slip_band(motor, f)
        if motor.rotor_bars and slot_spectrum is not None:
            p_short, df_short = slot_spectrum
            try:
                s, prom = slip_from_slot_harmonics(
                    p_short, df_short, f, motor.rotor_bars, motor.pole_pairs, s_min, s_max,
                    MAIN_LOBE_HALF_WIDTH["hann"],
                )  # fmt: skip
            except ValueError:
                s, prom = math.nan, -math.inf
            if prom >= SIDEBAND_PROMINENCE_DB:
                slip, method, prominence = s, SLIP_METHOD_SLOTS, prom
        if z is not None:
            hw = MAIN_LOBE_HALF_WIDTH["blackmanharris"]
            n = z.shape[0]
            df = self.fs_long / n
            # Forward-rotating (positive-sequence) lines only; amplitude A reads A².
            p = space_vector_power(z, window="blackmanharris", backend=self.fft_backend)
            f = kernels.peak_frequency(p, df, f - 1.0, f + 1.0)
            # Sidebands closer than 2·hw + 1 bins would share bins with the fundamental's lobe.
            s_lo = max(s_min, (2 * hw + 1.5) * df / (2 * f))
            if method == SLIP_METHOD_NAMEPLATE and s_lo < s_max:
                try:
                    s, prom = slip_from_eccentricity(p, df, f, motor.pole_pairs, s_lo, s_max, hw)
                except ValueError:
                    s, prom = math.nan, -math.inf
                if prom >= SIDEBAND_PROMINENCE_DB:
                    slip, method, prominence = s, SLIP_METHOD_ECCENTRICITY, prom
            if s_lo < s_max and f * (1 + 2 * s_max) / df + hw < p.shape[0]:
                brb = kernels.brb_sidebands(p, df, f, s_lo, s_max, hw)
                out["brb_lsb_db"], out["brb_usb_db"] = brb.lsb_db, brb.usb_db
                out["brb_db"] = 0.5 * (brb.lsb_db + brb.usb_db)
                out["brb_prominence_db"] = brb.prominence_db
                if (
                    method == SLIP_METHOD_NAMEPLATE
                    and brb.prominence_db >= SIDEBAND_PROMINENCE_DB
                    and brb.lsb_db >= BRB_SLIP_MIN_DB
                ):
                    slip, method, prominence = brb.slip, SLIP_METHOD_SIDEBANDS, brb.prominence_db
            rotor_hz = (1.0 - slip) * f / motor.pole_pairs
            ecc = eccentricity_sidebands(p, df, f, rotor_hz, hw)
            out["ecc_lsb_db"], out["ecc_usb_db"], out["ecc2_lsb_db"], out["ecc2_usb_db"] = ecc
            # Their noise floors, as the bearing lines': a line must stand out of its floor
            # to count as eccentricity (edge_agent.diagnosis).
            _, floors = line_levels(p, df, f, [-rotor_hz, rotor_hz], hw, 8 * hw)
            out["ecc_lsb_floor_db"], out["ecc_usb_floor_db"] = (float(v) for v in floors)
            if self.bearing is not None:
                levels, floors = bearing_line_levels(
                    p, df, f, rotor_hz, self.bearing, 2, hw, 8 * hw
                )
                for j, d in enumerate(BEARING_DEFECTS):
                    out[f"bearing_{d}_db"] = float(levels[j])
                    out[f"bearing_{d}_floor_db"] = float(floors[j])
            lines = modulus_lines_db(z, self.fs_long, [2 * slip * f, rotor_hz])
            out["epva_2sf_db"], out["epva_fr_db"] = (float(v) for v in lines)
        out["slip"] = slip
        out["rotor_hz"] = (1.0 - slip) * f / motor.pole_pairs
        out["slip_method"] = method
        out["slip_prominence_db"] = prominence
        return out


class Rolling:
    """Rolling mean over the last ``n`` windows, and first difference, of some features.

    Missing values (None or NaN) are left out of the mean, and make the difference None.
    Plain Python: a handful of numbers per window, where numpy's call overhead dominates.
    """

    def __init__(self, names: Sequence[str], n: int) -> None:
        self.names = tuple(names)
        self._hist: deque[list[float | None]] = deque(maxlen=int(n))
        self._prev: list[float | None] | None = None

    def update(self, features: dict[str, float | None]) -> dict[str, float | None]:
        row: list[float | None] = []
        for k in self.names:
            v = features.get(k)
            row.append(None if v is None or v != v else float(v))
        self._hist.append(row)
        prev = self._prev
        out: dict[str, float | None] = {}
        for j, k in enumerate(self.names):
            vals = [r[j] for r in self._hist if r[j] is not None]
            out[f"{k}_roll"] = math.fsum(vals) / len(vals) if vals else None
            v, p = row[j], None if prev is None else prev[j]
            out[f"{k}_diff"] = None if v is None or p is None else v - p
        self._prev = row
        return out

    def reset(self) -> None:
        self._hist.clear()
        self._prev = None
