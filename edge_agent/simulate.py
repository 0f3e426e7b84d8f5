"""Synthetic three-phase induction-motor currents (and voltages) with fault injection.

Units: Hz, s, A rms and V rms unless a name says peak. The model, per phase m = 0, 1, 2
(a, b, c), is a sum of lines ``A_k * cos(2*pi*f_k*t + phi_k + theta_k[m])`` where ``A_k`` is
a peak amplitude, ``phi_k`` a random initial phase and ``theta_k`` the line's phase pattern:
positive sequence ``-2*pi*m/3``, negative sequence ``+2*pi*m/3``, harmonic h of a
positive-sequence quantity ``-2*pi*h*m/3`` (so the 5th is negative and the 7th positive
sequence, as in a real three-wire machine).

Operating point (linear torque-slip region)::

    f    = spec.supply_hz                                  supply frequency, Hz
    s    = motor.rated_slip * load * max(1, rated_hz / f)  slip, 0..1: the torque sets the
                                                           slip frequency s*f at a drive's
                                                           constant V/f (MotorConfig.slip_scale)
    f_r  = (1 - s) * f / pole_pairs                        rotor mechanical frequency, Hz
    I_m  = 0.4 * rated_current                             magnetising (reactive) current, A
    I_a  = load * sqrt(1 - 0.4**2) * rated_current         torque-producing current, A
    I    = hypot(I_m, I_a), lagging the phase voltage by atan2(I_m, I_a)
    V    = rated_voltage / sqrt(3)                         phase voltage, V

Healthy lines: current fundamental, 5th harmonic at -30 dB and 7th at -36 dB (what a
slightly distorted supply typically drives); voltage fundamental and 5th at -40 dB.

Faults (current lines, dB relative to the fundamental, switched on at ``onset_s``):

====================  ===================  ==================================================
fault                 severity             lines
====================  ===================  ==================================================
broken-bar            dB, 10..90           (1 ± 2s) f at -sev, (1 ± 4s) f at -(sev + 12)
eccentricity          dB, 10..90           f ± f_r at -sev, f ± 2 f_r at -(sev + 6)
bearing-outer         dB, 10..90           |f ± f_o| at -sev, |f ± 2 f_o| at -(sev + 6), with
                                           f_o = n_balls/2 * f_r * (1 - d/D * cos(angle))
stator-short          % turns of phase C   negative-sequence fundamental, i2/i1 = 0.006 * sev;
                      0..100               3rd harmonic (positive pattern) at 0.001 * sev
supply-unbalance      % (V2/V1), 0..10     voltages: v2/v1 = sev/100; currents: i2 =
                                           6 * sev/100 * rated_current at any load (the
                                           negative-sequence impedance is about the locked-
                                           rotor one, 1/6 of rated), lagging v2 by 80 deg
====================  ===================  ==================================================

Sideband and eccentricity lines keep the fundamental's positive-sequence pattern. Lines at
or above fs/2 are left out rather than aliased; a negative frequency folds to ``|f|``.
Supply unbalance is taken as V2/V1, which NEMA's max-deviation definition approximates
for small unbalance. Without ``motor.bearing`` a 6205 bearing is assumed.

The measurement chain comes last: white noise (rms ``noise`` times the fundamental rms),
CT gain error per current phase (uniform in 1 ± ct_mismatch), then ADC quantisation.

Reproducibility: ``spec.seed`` feeds a :class:`numpy.random.SeedSequence` that is split
into independent streams (healthy phases, fault phases, CT gains, current noise, voltage
noise). So a recording is identical whatever the block length, a faulty recording equals
the healthy one with the same seed bit-for-bit before ``onset_s``, and switching voltages
on does not change the currents.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from edge_agent.config import MotorConfig

FAULTS = ("broken-bar", "eccentricity", "bearing-outer", "stator-short", "supply-unbalance")
DEFAULT_SEVERITY = {"broken-bar": 45.0, "eccentricity": 40.0, "bearing-outer": 50.0,
                    "stator-short": 20.0, "supply-unbalance": 2.0}  # fmt: skip
# Allowed severity per fault: (lowest, highest, unit).
SEVERITY_RANGE = {"broken-bar": (10.0, 90.0, "dB"), "eccentricity": (10.0, 90.0, "dB"),
                  "bearing-outer": (10.0, 90.0, "dB"), "stator-short": (0.0, 100.0, "% turns"),
                  "supply-unbalance": (0.0, 10.0, "%")}  # fmt: skip

MAGNETISING_SHARE = 0.4  # of rated current; typical of 1-100 kW four-pole motors
CURRENT_HARMONICS_DB = {5: -30.0, 7: -36.0}
VOLTAGE_HARMONICS_DB = {5: -40.0}
STATOR_SHORT_I2_PER_PCT = 0.006  # i2/i1 per percent of shorted turns
STATOR_SHORT_H3_PER_PCT = 0.001  # 3rd harmonic / fundamental per percent
UNBALANCE_I2_PER_V2 = 6.0  # rated currents of i2 per unit of v2/v1: I_locked / I_rated
Z2_ANGLE_RAD = math.radians(80.0)  # negative-sequence impedance is mostly leakage reactance
DEFAULT_BEARING = (9, 7.94, 39.04, 0.0)  # 6205: balls, ball and pitch diameter mm, angle deg
CURRENT_FULL_SCALE = 2.5  # ADC rails, times the rated peak current
VOLTAGE_FULL_SCALE = 1.5  # ADC rails, times the rated peak phase voltage

_TAU = 2.0 * math.pi
_N_FAULT_PHASES = 8


def _pattern(h: int) -> np.ndarray:
    """Phase pattern (rad, shape (3,)): h = 1 positive sequence, -1 negative, h harmonic."""
    return -_TAU * h * np.arange(3) / 3.0


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate; see the module docstring for the model."""

    fs: float = 15000.0  # sample rate, Hz
    duration_s: float = 10.0
    supply_hz: float = 50.0
    load: float = 0.8  # fraction of rated torque, 0..1.2
    fault: str | None = None
    severity: float | None = None  # None -> DEFAULT_SEVERITY[fault]; see SEVERITY_RANGE
    onset_s: float = 0.0  # fault starts at this time (step)
    voltages: bool = False
    noise: float = 0.002  # white noise rms as a fraction of the fundamental rms
    ct_mismatch: float = 0.01  # max relative CT gain error per current phase (class 1 CTs)
    adc_bits: int | None = None  # quantise over the ADC full scale (see *_FULL_SCALE)
    seed: int = 0


@dataclass(frozen=True)
class OperatingPoint:
    slip: float  # 0..1
    rotor_hz: float  # rotor mechanical frequency, Hz
    current_rms: float  # fundamental, A
    lag_rad: float  # current behind the phase voltage
    voltage_rms: float  # phase voltage, V


@dataclass(frozen=True)
class _Line:
    hz: float
    amp: float  # peak, A or V
    phase: float  # rad at t = 0
    pattern: np.ndarray  # rad per phase, shape (3,)
    gated: bool  # multiplied by the onset step


def channel_names(spec: SimulationSpec) -> list[str]:
    """Column names of the samples: ``ia, ib, ic`` then ``va, vb, vc`` with voltages."""
    return ["ia", "ib", "ic", "va", "vb", "vc"] if spec.voltages else ["ia", "ib", "ic"]


def n_samples(spec: SimulationSpec) -> int:
    """Samples per channel in the recording: ``round(fs * duration_s)``."""
    return round(spec.fs * spec.duration_s)


def operating_point(spec: SimulationSpec, motor: MotorConfig) -> OperatingPoint:
    """Slip, rotor frequency and fundamental current and voltage (module docstring)."""
    slip = motor.rated_slip * spec.load * motor.slip_scale(spec.supply_hz)
    i_m = MAGNETISING_SHARE * motor.rated_current
    i_a = spec.load * math.sqrt(1.0 - MAGNETISING_SHARE**2) * motor.rated_current
    return OperatingPoint(
        slip=slip,
        rotor_hz=(1.0 - slip) * spec.supply_hz / motor.pole_pairs,
        current_rms=math.hypot(i_m, i_a),
        lag_rad=math.atan2(i_m, i_a),
        voltage_rms=motor.rated_voltage / math.sqrt(3.0),
    )


def outer_race_hz(motor: MotorConfig, rotor_hz: float) -> float:
    """Ball pass frequency of the outer race (Hz) for the motor's or a 6205 bearing."""
    b = motor.bearing
    n, d, pitch, angle = (
        DEFAULT_BEARING
        if b is None
        else (b.n_balls, b.ball_diameter_mm, b.pitch_diameter_mm, b.contact_angle_deg)
    )
    return n / 2.0 * rotor_hz * (1.0 - d / pitch * math.cos(math.radians(angle)))


def _severity(spec: SimulationSpec) -> float:
    if spec.fault is None:
        return 0.0
    return DEFAULT_SEVERITY[spec.fault] if spec.severity is None else float(spec.severity)


def fault_lines(spec: SimulationSpec, motor: MotorConfig) -> list[tuple[float, float]]:
    """The current lines the fault adds: (frequency Hz, peak relative to the fundamental).

    Frequencies are folded to ``|f|``; lines at or above fs/2 are left out. Sequence-only
    faults (stator-short, supply-unbalance) report their negative-sequence line at f.
    """
    validate_spec(spec, motor)
    if spec.fault is None:
        return []
    sev = _severity(spec)
    f, op = spec.supply_hz, operating_point(spec, motor)
    pairs: list[tuple[float, float]] = []  # (offset Hz, dB) -> f ± offset
    if spec.fault == "broken-bar":
        pairs = [(2 * op.slip * f, -sev), (4 * op.slip * f, -sev - 12.0)]
    elif spec.fault == "eccentricity":
        pairs = [(op.rotor_hz, -sev), (2 * op.rotor_hz, -sev - 6.0)]
    elif spec.fault == "bearing-outer":
        f_o = outer_race_hz(motor, op.rotor_hz)
        pairs = [(f_o, -sev), (2 * f_o, -sev - 6.0)]
    lines = [(abs(f + sign * off), 10 ** (db / 20)) for off, db in pairs for sign in (-1, 1)]
    if spec.fault == "stator-short":
        lines = [(f, STATOR_SHORT_I2_PER_PCT * sev), (3 * f, STATOR_SHORT_H3_PER_PCT * sev)]
    elif spec.fault == "supply-unbalance":
        lines = [(f, UNBALANCE_I2_PER_V2 * sev / 100.0)]
    return [(hz, rel) for hz, rel in lines if hz < spec.fs / 2 and rel > 0]


def validate_spec(spec: SimulationSpec, motor: MotorConfig) -> None:
    """Raise ``ValueError`` naming the first field of ``spec`` that cannot be simulated."""
    for name in ("fs", "duration_s", "supply_hz", "load", "onset_s", "noise", "ct_mismatch"):
        if not math.isfinite(getattr(spec, name)):
            raise ValueError(f"{name}={getattr(spec, name)} must be a finite number")
    if not 5.0 <= spec.supply_hz <= 120.0:
        raise ValueError(f"supply_hz={spec.supply_hz:g} must be within 5..120 Hz")
    if not 2.5 * spec.supply_hz < spec.fs <= 1e6:
        raise ValueError(
            f"fs={spec.fs:g} must exceed 2.5 * supply_hz = {2.5 * spec.supply_hz:g} Hz "
            "(and be at most 1 MHz)"
        )
    if spec.duration_s <= 0 or n_samples(spec) < 1:
        raise ValueError(f"duration_s={spec.duration_s:g} must give at least one sample")
    if not 0.0 <= spec.onset_s < spec.duration_s:
        raise ValueError(f"onset_s={spec.onset_s:g} must be within [0, {spec.duration_s:g}) s")
    if not 0.0 <= spec.load <= 1.2:
        raise ValueError(f"load={spec.load:g} must be within 0..1.2 (fraction of rated torque)")
    if spec.noise < 0:
        raise ValueError(f"noise={spec.noise:g} must not be negative")
    if not 0.0 <= spec.ct_mismatch < 0.5:
        raise ValueError(f"ct_mismatch={spec.ct_mismatch:g} must be within [0, 0.5)")
    if spec.adc_bits is not None and not 2 <= spec.adc_bits <= 32:
        raise ValueError(f"adc_bits={spec.adc_bits} must be within 2..32")
    if spec.seed < 0:
        raise ValueError(f"seed={spec.seed} must not be negative")
    if spec.fault is None:
        if spec.severity is not None:
            raise ValueError(f"severity={spec.severity:g} given without a fault")
        return
    if spec.fault not in FAULTS:
        raise ValueError(f"fault={spec.fault!r} is not one of: {', '.join(FAULTS)}")
    lo, hi, unit = SEVERITY_RANGE[spec.fault]
    if spec.severity is not None and not lo <= spec.severity <= hi:
        raise ValueError(
            f"severity={spec.severity:g} for fault {spec.fault!r} must be within "
            f"{lo:g}..{hi:g} {unit}"
        )
    if spec.fault == "broken-bar" and spec.load == 0:
        # At zero slip the sidebands would sit on the fundamental and just rescale it.
        raise ValueError("fault 'broken-bar' needs load > 0: its sidebands are at (1 ± 2s)f")


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators: healthy phases, fault phases, CT gains, i noise, v noise."""
    return [np.random.default_rng(ss) for ss in np.random.SeedSequence(seed).spawn(5)]


def _build_lines(
    spec: SimulationSpec,
    motor: MotorConfig,
    healthy_rng: np.random.Generator,
    fault_rng: np.random.Generator,
) -> tuple[list[_Line], list[_Line]]:
    """(current lines, voltage lines); a fixed number of phases is drawn from each stream."""
    healthy = healthy_rng.uniform(0, _TAU, 4)
    faulty = fault_rng.uniform(0, _TAU, _N_FAULT_PHASES)
    op, f, nyq = operating_point(spec, motor), spec.supply_hz, spec.fs / 2
    a_i, a_v = math.sqrt(2) * op.current_rms, math.sqrt(2) * op.voltage_rms
    phi_v = healthy[0]
    phi_i = phi_v - op.lag_rad
    cur = [_Line(f, a_i, phi_i, _pattern(1), False)]
    for (h, db), phase in zip(CURRENT_HARMONICS_DB.items(), healthy[1:3], strict=True):
        cur.append(_Line(h * f, a_i * 10 ** (db / 20), phase, _pattern(h), False))
    volt = [_Line(f, a_v, phi_v, _pattern(1), False)]
    for h, db in VOLTAGE_HARMONICS_DB.items():
        volt.append(_Line(h * f, a_v * 10 ** (db / 20), healthy[3], _pattern(h), False))

    sev = _severity(spec)
    if spec.fault in ("stator-short", "supply-unbalance"):
        phi_2 = faulty[0]
        if spec.fault == "supply-unbalance":
            volt.append(_Line(f, a_v * sev / 100.0, phi_2, _pattern(-1), True))
            # In rated currents, whatever the load: v2 drives it through the negative-
            # sequence impedance, about the locked-rotor one, which the load hardly moves.
            i2 = UNBALANCE_I2_PER_V2 * sev / 100.0 * motor.rated_current / op.current_rms
            phi_2 -= Z2_ANGLE_RAD  # the current follows v2 through the leakage reactance
        else:
            i2 = STATOR_SHORT_I2_PER_PCT * sev
            # A 3-wire motor carries no zero-sequence current: the 3rd shows as positive.
            h3 = a_i * STATOR_SHORT_H3_PER_PCT * sev
            cur.append(_Line(3 * f, h3, faulty[1], _pattern(1), True))
        cur.append(_Line(f, a_i * i2, phi_2, _pattern(-1), True))
    elif spec.fault is not None:
        for (hz, rel), phase in zip(fault_lines(spec, motor), faulty, strict=False):
            cur.append(_Line(hz, a_i * rel, phase, _pattern(1), True))
    return [ln for ln in cur if ln.hz < nyq], [ln for ln in volt if ln.hz < nyq]


def _add_lines(
    out: np.ndarray, lines: list[_Line], idx: np.ndarray, fs: float, step: np.ndarray
) -> None:
    """Add each line to ``out`` (n, 3) at sample indices ``idx``; gated lines times ``step``."""
    for ln in lines:
        # Phase from cycles mod 1 keeps full precision however long the recording runs.
        arg = _TAU * np.mod(ln.hz * idx / fs, 1.0) + ln.phase
        term = ln.amp * np.cos(arg[:, None] + ln.pattern[None, :])
        out += term * step[:, None] if ln.gated else term


def _quantise(x: np.ndarray, full_scale: float, bits: int) -> np.ndarray:
    lsb = 2.0 * full_scale / 2.0**bits
    codes = np.clip(np.rint(x / lsb), -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
    return codes * lsb


def iter_blocks(
    spec: SimulationSpec, motor: MotorConfig, block_s: float = 1.0
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(t_s, samples)`` blocks of about ``block_s`` seconds.

    ``t_s`` has shape (n,) in seconds from the start; ``samples`` has shape (n, channels)
    float64 in A and V, columns as :func:`channel_names`. The concatenated blocks are
    bit-for-bit identical whatever ``block_s`` is.
    """
    validate_spec(spec, motor)
    if not (math.isfinite(block_s) and block_s > 0):
        raise ValueError(f"block_s={block_s:g} must be a positive number of seconds")
    healthy_rng, fault_rng, gain_rng, inoise, vnoise = _streams(spec.seed)
    cur, volt = _build_lines(spec, motor, healthy_rng, fault_rng)
    gains = 1.0 + spec.ct_mismatch * gain_rng.uniform(-1.0, 1.0, 3)
    op = operating_point(spec, motor)
    fs, total, ch = spec.fs, n_samples(spec), len(channel_names(spec))
    block_n = max(1, round(block_s * fs))
    for i0 in range(0, total, block_n):
        idx = np.arange(i0, min(i0 + block_n, total), dtype=np.float64)
        t = idx / fs
        step = (t >= spec.onset_s).astype(np.float64)
        out = np.zeros((idx.size, ch))
        _add_lines(out[:, :3], cur, idx, fs, step)
        # Normal draws are sequential, so per-block draws concatenate to one long draw.
        out[:, :3] += inoise.standard_normal((idx.size, 3)) * (spec.noise * op.current_rms)
        out[:, :3] *= gains
        if spec.voltages:
            _add_lines(out[:, 3:], volt, idx, fs, step)
            out[:, 3:] += vnoise.standard_normal((idx.size, 3)) * (spec.noise * op.voltage_rms)
        if spec.adc_bits is not None:
            fs_i = CURRENT_FULL_SCALE * math.sqrt(2) * motor.rated_current
            out[:, :3] = _quantise(out[:, :3], fs_i, spec.adc_bits)
            if spec.voltages:
                fs_v = VOLTAGE_FULL_SCALE * math.sqrt(2) * op.voltage_rms
                out[:, 3:] = _quantise(out[:, 3:], fs_v, spec.adc_bits)
        yield t, out


def simulate(spec: SimulationSpec, motor: MotorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The whole recording at once: ``t_s`` shape (n,), samples shape (n, channels)."""
    blocks = list(iter_blocks(spec, motor, block_s=max(spec.duration_s, 1.0 / spec.fs)))
    return blocks[0]


def write_recording(path: str | os.PathLike[str], spec: SimulationSpec, motor: MotorConfig) -> int:
    """Write a recording as CSV or .npy (by the suffix), block by block; return its samples.

    CSV: header ``t_s,ia,ib,ic[,va,vb,vc]``, currents to 1 µA and voltages to 0.1 mV.
    ``.npy``: float64 of shape (n, channels), no time column. The file appears complete or
    not at all: it is written beside the target and renamed at the end.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise ValueError(f"{p}: cannot tell the format from {p.suffix!r}; expected .csv or .npy")
    validate_spec(spec, motor)
    tmp = p.with_name(p.name + ".part")
    names = channel_names(spec)
    written = 0
    try:
        if suffix == ".npy":
            arr = open_memmap(tmp, mode="w+", dtype=np.float64, shape=(n_samples(spec), len(names)))
            for _, x in iter_blocks(spec, motor):
                arr[written : written + len(x)] = x
                written += len(x)
            arr.flush()
            del arr
        else:
            # Enough decimals that t_s rounds to well under a tenth of a sample period.
            t_dec = max(6, math.ceil(math.log10(spec.fs)) + 3)
            fmt = [f"%.{t_dec}f"] + ["%.6f"] * 3 + ["%.4f"] * (len(names) - 3)
            with tmp.open("w", newline="") as fh:
                fh.write(",".join(["t_s", *names]) + "\n")
                for t, x in iter_blocks(spec, motor):
                    np.savetxt(fh, np.column_stack([t, x]), fmt=fmt, delimiter=",")
                    written += len(x)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written
