"""The feature vector of a window (``edge_agent.features.FeatureExtractor``), whole.

The kernels are checked one by one against ``tests/naive.py``; this module checks what the
extractor adds on top (rms scaling, ratios, the slip search's order, which line feeds which
feature) in two ways:

- every feature of every benchmark workload (healthy, broken bar, eccentricity, bearing,
  rotor-slot harmonics, supply unbalance, stator short, fixed supply frequency) equals
  that of ``benchmarks.numpy_baseline.NumpyExtractor``, an independent numpy/scipy
  implementation of the same definitions;
- analytic truths: signals built from known sequence components, harmonics and fault
  lines give those values back, lines at -30 … -60 dB within 0.5 dB at the right
  frequency, and the slip from the method docs/features.md says.
"""

from __future__ import annotations

import cmath
import math
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks.numpy_baseline import mismatches, numpy_extractor
from benchmarks.workloads import BEARING_6205, TIMED, WORKLOADS, Window, run, window
from edge_agent.config import MotorConfig
from edge_agent.features import (
    BEARING_DEFECTS,
    FEATURE_NAMES,
    SLIP_METHOD_ECCENTRICITY,
    SLIP_METHOD_NAMEPLATE,
    SLIP_METHOD_SIDEBANDS,
    SLIP_METHOD_SLOTS,
    FeatureExtractor,
    nameplate_slip,
)

FS = 15000.0
FS_LONG = FS / 7  # the pipeline's decimation of 15 kS/s
N_SHORT = 15000  # 1 s: 50 whole cycles at 50 Hz
N_LONG = 16384
F = 50.0
SLIP = 0.03
MOTOR = MotorConfig()  # 4-pole, 1440 rpm at 50 Hz (rated slip 0.04), 10 A
I1_RMS = 8.0
A1 = I1_RMS * math.sqrt(2)  # positive-sequence amplitude, A
LEVELS_DB = (-30.0, -40.0, -50.0, -60.0)
DB_TOLERANCE = 0.5


# --- against the numpy twin, every feature --------------------------------------------


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_every_feature_equals_the_numpy_twin(name):
    """Every feature of the numpy twin equals the kernels', on every workload, and the slip
    comes from the line pair the workload's fault puts in the spectrum."""
    w = window(name)
    got = run(numpy_extractor(w), w)
    want = run(w.extractor, w)
    assert not mismatches(got, want), "\n".join(mismatches(got, want))
    expected_method = {"broken-bar": 1.0, "eccentricity": 2.0, "slot harmonics": 3.0}
    assert want["slip_method"] == expected_method.get(name, 0.0)


def test_without_voltages_or_long_window_the_features_still_equal_the_twin():
    """Currents only, and no long window yet (nameplate slip): the same features again."""
    w = window(TIMED)
    kernels, baseline = w.extractor, numpy_extractor(w)
    for v, z in ((None, w.z), (w.v, None), (None, None)):
        part = Window(w.config, w.fs_long, w.extractor, w.x, v, z)
        got, want = run(baseline, part), run(kernels, part)
        assert not mismatches(got, want), "\n".join(mismatches(got, want))
        assert ("vi_area_a" in want) == (v is not None)
        assert ("ecc_lsb_db" in want) == (z is not None)


# --- short window: sequence components, unbalance, harmonics, the Park's vector -------


def three_phase(
    i1: complex,
    i2: complex = 0,
    i0: complex = 0,
    harmonics: dict[int, tuple[float, float, float]] | None = None,
    n: int = N_SHORT,
) -> np.ndarray:
    """Phase currents (3, n) from sequence phasors (peak A, cosine reference: a phase reads
    Re(P·e^{jωt})) at F, plus per-phase harmonics {h: amplitude ratios re |i1| (a, b, c)},
    each in phase with its phase's positive-sequence fundamental."""
    t = np.arange(n) / FS
    x = np.empty((3, n))
    for k in range(3):
        shift = cmath.exp(-2j * math.pi * k / 3)  # a, b, c lag by 0°, 120°, 240°
        p = i1 * shift + i2 / shift + i0
        x[k] = np.real(p * np.exp(2j * math.pi * F * t))
        for h, ratios in (harmonics or {}).items():
            arg = h * (2 * math.pi * F * t + cmath.phase(i1 * shift))
            x[k] += ratios[k] * abs(i1) * np.cos(arg)
    return x


def short_features(x: np.ndarray, motor: MotorConfig = MOTOR) -> dict:
    return FeatureExtractor(motor, FS, FS_LONG).short(x.astype(np.float32), None)


@pytest.mark.parametrize(
    ("supply_hz", "rel"),
    [(F, 1e-6), (None, 3e-4)],  # tracked: 50.013 Hz off the padded spectrum's peak
    ids=["fixed supply_hz", "tracked supply_hz"],
)
def test_sequence_components_in_rms_amperes_and_nema_unbalance_of_a_known_set(supply_hz, rel):
    """8 A of positive, 0.4 A of negative and 0.2 A of zero sequence (rms) come back as
    i1, i2, i0 and their ratios; NEMA unbalance is worked out from the three phase rms."""
    i1 = A1
    i2 = 0.4 * math.sqrt(2) * cmath.exp(0.7j)
    i0 = 0.2 * math.sqrt(2) * cmath.exp(-1.1j)
    out = short_features(three_phase(i1, i2, i0), MOTOR.model_copy(update={"supply_hz": supply_hz}))

    assert out["supply_hz"] == pytest.approx(F, abs=0.02)
    assert out["i1"] == pytest.approx(8.0, rel=rel)
    assert out["i2"] == pytest.approx(0.4, rel=rel)
    assert out["i0"] == pytest.approx(0.2, rel=rel)
    assert out["i2_i1"] == pytest.approx(0.05, rel=rel)
    assert out["i0_i1"] == pytest.approx(0.025, rel=rel)
    turns = (cmath.exp(-2j * math.pi * k / 3) for k in range(3))
    rms = [abs(i1 * s + i2 / s + i0) / math.sqrt(2) for s in turns]
    assert [out[f"rms_{p}"] for p in "abc"] == pytest.approx(rms, rel=1e-6)
    mean = sum(rms) / 3
    nema = max(abs(r - mean) for r in rms) / mean
    assert nema > 0.07  # the set is visibly unbalanced
    assert out["unbalance_nema"] == pytest.approx(nema, rel=1e-5)


@pytest.mark.parametrize("f", [5.0, 5.06, 7.3, 33.3, 60.0, 97.7, 119.87, 120.0])
def test_the_supply_frequency_is_tracked_to_the_edges_of_its_band(f):
    """A drive's output anywhere in 5-120 Hz, with its 5th and 7th harmonics, reads within
    0.015 Hz, and its positive sequence within 0.02 %. At 5.0 and 119.87 Hz the line's
    largest bin lies just outside the band (bins of 0.977 Hz): it must still be found."""
    t = np.arange(N_SHORT) / FS
    x = np.empty((3, N_SHORT))
    for k in range(3):
        th = 2 * math.pi * f * t - 2 * math.pi * k / 3
        x[k] = A1 * (np.cos(th) + 0.05 * np.cos(5 * th) + 0.03 * np.cos(7 * th))
    out = short_features(x)
    assert out["supply_hz"] == pytest.approx(f, abs=0.015)
    assert out["i1"] == pytest.approx(I1_RMS, rel=2e-4)
    assert out["i2_i1"] < 1e-3


def test_a_balanced_set_has_no_unbalance_and_a_round_parks_vector():
    out = short_features(three_phase(A1))
    assert out["i2_i1"] < 1e-5 and out["i0_i1"] < 1e-5
    assert out["unbalance_nema"] < 1e-5
    assert out["epva_ellipse_ratio"] == pytest.approx(1.0, abs=2e-5)
    assert out["epva_2f_db"] == -80.0  # the floor: nothing at 2f in the modulus


@pytest.mark.parametrize("phi2_deg", [40.0, 130.0, -75.0])
def test_parks_vector_ellipse_is_the_locus_the_currents_trace(phi2_deg):
    """The ellipse ratio and major-axis angle equal those of the locus i_α + j·i_β that the
    phase currents trace, found by brute force over one cycle."""
    x = three_phase(A1, 0.15 * A1 * cmath.exp(1j * math.radians(phi2_deg)))
    out = short_features(x)

    cycle = x[:, : round(FS / F)]
    alpha = (2 / 3) * (cycle[0] - 0.5 * (cycle[1] + cycle[2]))
    z = alpha + 1j * (cycle[1] - cycle[2]) / math.sqrt(3)
    major = np.abs(z).max()
    minor = np.abs(z).min()
    axis = math.degrees(np.angle(z[np.argmax(np.abs(z))])) % 180.0
    assert out["epva_ellipse_ratio"] == pytest.approx(minor / major, rel=1e-4)
    # Within a sample's turn of the locus (360° / 300 samples per cycle).
    assert abs((out["epva_axis_deg"] - axis + 90) % 180 - 90) < 1.3


def test_harmonics_per_phase_and_thd_of_known_ratios():
    """3rd, 5th, 7th and 11th harmonics at known ratios, different in each phase, come back
    as h3/h5/h7 of the right phase and as their root sum of squares in thd."""
    ratios = {3: (0.05, 0.02, 0.0), 5: (0.03, 0.04, 0.01), 7: (0.02, 0.0, 0.015), 11: (0.01,) * 3}
    out = short_features(three_phase(A1, harmonics=ratios))
    for k, p in enumerate("abc"):
        for h in (3, 5, 7):
            assert out[f"h{h}_{p}"] == pytest.approx(ratios[h][k], abs=1e-5), (h, p)
        thd = math.sqrt(sum(r[k] ** 2 for r in ratios.values()))
        assert out[f"thd_{p}"] == pytest.approx(thd, rel=1e-4), p


def test_float32_and_float64_windows_give_the_same_features():
    x = three_phase(A1, 0.1 * A1 * cmath.exp(0.5j), harmonics={5: (0.03, 0.03, 0.03)})
    ex = FeatureExtractor(MOTOR, FS, FS_LONG)
    single, double = ex.short(x.astype(np.float32), None), ex.short(x, None)
    assert single.keys() == double.keys()
    for k in single:
        tol = 0.01 if k.endswith("_db") else 1e-5
        assert single[k] == pytest.approx(double[k], rel=tol, abs=1e-6), k


@pytest.mark.parametrize("v2_rms", [0.0, 4.6])
def test_voltage_features_of_a_supply_with_known_sequence_impedances(v2_rms):
    """230 V phase voltages with a negative sequence of ``v2_rms`` V, into a motor of
    positive- and negative-sequence impedances Z1 and Z2: V1, V2, P, Q, PF and Z2 come
    back as the sequence circuits give them, and z2_ohm only with an unbalance to read."""
    z1, z2 = 20.0 * cmath.exp(0.55j), 2.5 * cmath.exp(1.2j)
    v1 = 230 * math.sqrt(2)
    v2 = v2_rms * math.sqrt(2) * cmath.exp(-0.4j)
    v = three_phase(v1, v2)
    x = three_phase(v1 / z1, v2 / z2)
    ex = FeatureExtractor(MOTOR.model_copy(update={"supply_hz": F}), FS, FS_LONG)
    out = ex.short(x.astype(np.float32), v.astype(np.float32))

    s = 3 * ((v1 / math.sqrt(2)) * (v1 / z1 / math.sqrt(2)).conjugate())
    s += 3 * ((v2 / math.sqrt(2)) * (v2 / z2 / math.sqrt(2)).conjugate())
    assert out["v1"] == pytest.approx(230.0, rel=1e-6)
    assert out["v2"] == pytest.approx(v2_rms, rel=1e-5, abs=1e-4)
    assert out["v2_v1"] == pytest.approx(v2_rms / 230.0, rel=1e-5, abs=1e-6)
    assert out["p_w"] == pytest.approx(s.real, rel=1e-5)
    assert out["q_var"] == pytest.approx(s.imag, rel=1e-5)  # > 0: the current lags
    assert out["pf"] == pytest.approx(s.real / abs(s), rel=1e-5)
    assert out["rms_va"] == pytest.approx(abs(v1 + v2) / math.sqrt(2), rel=1e-5)
    if v2_rms:
        assert out["i2_i1"] > 1e-3
        assert out["z2_ohm"] == pytest.approx(abs(z2), rel=1e-4)
    else:
        assert out["i2_i1"] < 1e-3
        assert out["z2_ohm"] is None  # V2/I2 of leakage alone would be noise


# --- long window: rotor, air gap, bearings, slip ---------------------------------------


def rotor_hz(slip: float = SLIP, f: float = F) -> float:
    return (1 - slip) * f / MOTOR.pole_pairs


def space_vector(lines: dict[float, float], noise: float = 1e-4, seed: int = 0) -> np.ndarray:
    """The long window's i_α + j·i_β: the fundamental (A1 at F) and forward-rotating lines
    {frequency Hz: dB re the fundamental} with random phases, plus complex white noise of
    ``noise`` · A1 per component (a floor near -110 dB in a line's band)."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_LONG) / FS_LONG
    z = A1 * np.exp(2j * math.pi * F * t)
    for hz, db in lines.items():
        z += (
            A1 * 10 ** (db / 20) * np.exp(1j * (2 * math.pi * hz * t + rng.uniform(0, 2 * math.pi)))
        )
    z += noise * A1 * (rng.standard_normal(N_LONG) + 1j * rng.standard_normal(N_LONG))
    return z


def long_features(z: np.ndarray, motor: MotorConfig = MOTOR, slot_spectrum=None) -> dict:
    return FeatureExtractor(motor, FS, FS_LONG).long(z, F, I1_RMS, slot_spectrum)


@pytest.mark.parametrize("level", LEVELS_DB)
def test_broken_bar_sidebands_come_back_at_their_level_and_fix_the_slip(level):
    lsb, usb = (1 - 2 * SLIP) * F, (1 + 2 * SLIP) * F
    out = long_features(space_vector({lsb: level, usb: level - 3.0}))

    assert out["brb_lsb_db"] == pytest.approx(level, abs=DB_TOLERANCE)
    assert out["brb_usb_db"] == pytest.approx(level - 3.0, abs=DB_TOLERANCE)
    assert out["brb_db"] == pytest.approx(0.5 * (out["brb_lsb_db"] + out["brb_usb_db"]))
    assert out["brb_prominence_db"] > 20
    assert out["slip_method"] == SLIP_METHOD_SIDEBANDS
    assert out["slip"] == pytest.approx(SLIP, abs=3e-4)
    assert out["rotor_hz"] == pytest.approx(rotor_hz(), abs=0.01)
    assert out["slip_prominence_db"] == out["brb_prominence_db"]


@pytest.mark.parametrize("level", LEVELS_DB)
def test_eccentricity_lines_come_back_at_their_level_and_fix_the_slip(level):
    fr = rotor_hz()
    lines = {F - fr: level, F + fr: level - 2.0, F - 2 * fr: level - 6.0, F + 2 * fr: level - 4.0}
    out = long_features(space_vector(lines))

    assert out["slip_method"] == SLIP_METHOD_ECCENTRICITY
    assert out["slip"] == pytest.approx(SLIP, abs=3e-4)
    assert out["slip_prominence_db"] >= 10
    got = [out[k] for k in ("ecc_lsb_db", "ecc_usb_db", "ecc2_lsb_db", "ecc2_usb_db")]
    assert got == pytest.approx(list(lines.values()), abs=DB_TOLERANCE)


def test_single_and_double_precision_long_windows_give_the_same_features():
    """complex64 and complex128 space vectors: the same lines and slip, within 0.01 dB
    even for the noise floors at -110 dB."""
    fr = rotor_hz()
    lines = {(1 - 2 * SLIP) * F: -45.0, (1 + 2 * SLIP) * F: -47.0, F - fr: -50.0, F + fr: -52.0}
    z = space_vector(lines)
    motor = MOTOR.model_copy(update={"bearing": BEARING_6205})
    double, single = long_features(z, motor), long_features(z.astype(np.complex64), motor)
    assert single.keys() == double.keys()
    for k, v in double.items():
        tol = 0.01 if k.endswith("_db") else 1e-6
        assert single[k] == pytest.approx(v, rel=tol, abs=tol), k


def test_parks_vector_lines_of_the_long_window_at_2sf_and_fr():
    """A symmetric pair of sidebands at ±Δ, each ε re the fundamental and in phase, makes
    the modulus A·(1 + 2ε·cos 2πΔt): a line at Δ of 20·log10(2ε) dB re the mean."""
    fr = rotor_hz()
    t = np.arange(N_LONG) / FS_LONG
    eps_brb, eps_ecc = 10 ** (-40 / 20), 10 ** (-50 / 20)
    envelope = 1.0 + 2 * eps_brb * np.cos(2 * math.pi * 2 * SLIP * F * t)
    envelope += 2 * eps_ecc * np.cos(2 * math.pi * fr * t)
    z = A1 * envelope * np.exp(2j * math.pi * F * t)
    out = long_features(z)

    assert out["slip"] == pytest.approx(SLIP, abs=3e-4)  # the broken-bar pair fixes it
    assert out["epva_2sf_db"] == pytest.approx(20 * math.log10(2 * eps_brb), abs=DB_TOLERANCE)
    assert out["epva_fr_db"] == pytest.approx(20 * math.log10(2 * eps_ecc), abs=DB_TOLERANCE)


def test_bearing_lines_of_each_defect_come_back_at_their_level():
    """With no line that fixes the slip, the nameplate's (from i1) places f_r; a line at
    f + f_v for each defect frequency of a 6205 reads back as that defect's level, above
    a floor at the noise."""
    motor = MOTOR.model_copy(update={"bearing": BEARING_6205})
    ex = FeatureExtractor(motor, FS, FS_LONG)
    fr = rotor_hz(nameplate_slip(I1_RMS, motor))
    levels = dict(zip(BEARING_DEFECTS, LEVELS_DB, strict=True))
    lines = {
        F + order * fr: levels[d] for d, order in zip(BEARING_DEFECTS, ex.bearing, strict=True)
    }
    # Every line any defect reads (f ± f_v, f ± 2·f_v) is clear of every injected one but
    # its own, by far more than a main lobe (±4 bins of 0.13 Hz).
    for d, order in zip(BEARING_DEFECTS, ex.bearing, strict=True):
        for m in (-2, -1, 1, 2):
            read = F + m * order * fr
            others = [hz for hz, db in lines.items() if db != levels[d]]
            assert min(abs(read - hz) for hz in others) > 2.0
    out = ex.long(space_vector(lines), F, I1_RMS)

    assert out["slip_method"] == SLIP_METHOD_NAMEPLATE
    assert out["slip"] == pytest.approx(nameplate_slip(I1_RMS, motor))
    for d in BEARING_DEFECTS:
        assert out[f"bearing_{d}_db"] == pytest.approx(levels[d], abs=DB_TOLERANCE), d
        assert out[f"bearing_{d}_floor_db"] < -100, d


def test_rotor_slot_harmonics_fix_the_slip_before_any_long_window_line():
    """With ``rotor_bars`` known, the principal slot harmonics R·f_r ± f in the short
    window's spectrum fix the slip (method 3), even with a broken-bar pair present."""
    motor = MOTOR.model_copy(update={"rotor_bars": 28})
    ex = FeatureExtractor(motor, FS, FS_LONG)
    x = three_phase(A1)
    t = np.arange(N_SHORT) / FS
    fr = rotor_hz()
    for hz in (28 * fr - F, 28 * fr + F):  # forward-rotating in all three phases
        for k in range(3):
            x[k] += A1 * 10 ** (-45 / 20) * np.cos(2 * math.pi * hz * t - 2 * math.pi * k / 3 + 0.3)
    ex.short(x.astype(np.float32), None)
    z = space_vector({(1 - 2 * 0.02) * F: -40.0, (1 + 2 * 0.02) * F: -40.0})  # another slip
    out = ex.long(z, F, I1_RMS, ex.slot_spectrum)

    assert out["slip_method"] == SLIP_METHOD_SLOTS
    assert out["slip"] == pytest.approx(SLIP, abs=3e-4)
    assert out["brb_lsb_db"] == pytest.approx(-40.0, abs=DB_TOLERANCE)  # still measured


def test_without_any_line_the_slip_comes_from_the_nameplate_and_the_load_current():
    """A clean fundamental over a floor below the window's sidelobes: the sidelobes next to
    it stand 14 dB out of the broken-bar search band here, at -95 dB, and must not be
    taken for a pair."""
    out = long_features(space_vector({}))
    assert out["brb_prominence_db"] > 10  # the sidelobes, prominent
    assert out["slip_method"] == SLIP_METHOD_NAMEPLATE
    assert out["slip_prominence_db"] is None
    # 8 A of 10 A rated, 40 % of it magnetising: sqrt(8² - 4²) / sqrt(10² - 4²) of 0.04.
    assert out["slip"] == pytest.approx(0.04 * math.sqrt(48 / 84))
    assert out["brb_lsb_db"] < -90  # the noise


# --- docs/features.md names every feature ----------------------------------------------


def documented_patterns() -> list[str]:
    """The names in the first column of docs/features.md's feature tables, as regexes:
    ``x_a..c`` is x_a, x_b, x_c; ``{p,q}`` either; ``*`` and ``<...>`` any name part."""
    doc = (Path(__file__).parents[1] / "docs" / "features.md").read_text(encoding="utf-8")
    doc = doc.split("## Data quality")[0]  # flags, not features, from there on
    patterns = []
    for line in doc.splitlines():
        if not line.startswith("| `"):
            continue
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            phases = name.endswith("a..c")
            rx = re.escape(name[:-4] if phases else name) + ("[abc]" if phases else "")
            rx = re.sub(r"\\\{([^}]*)\\\}", lambda m: "(" + m.group(1).replace(",", "|") + ")", rx)
            rx = re.sub(r"\\\*|<[a-z]+>", "[a-z0-9_]+", rx)
            patterns.append(rx)
    return patterns


def test_docs_name_every_feature_and_no_other():
    patterns = documented_patterns()
    assert len(patterns) > 40
    undocumented = [n for n in FEATURE_NAMES if not any(re.fullmatch(p, n) for p in patterns)]
    assert not undocumented, f"features missing from docs/features.md: {undocumented}"
    stale = [p for p in patterns if not any(re.fullmatch(p, n) for n in FEATURE_NAMES)]
    assert not stale, f"docs/features.md names features no record has: {stale}"
