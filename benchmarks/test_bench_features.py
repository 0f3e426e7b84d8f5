"""The whole feature vector of one window, 3 currents + 3 voltages: kernels against numpy.

``FeatureExtractor`` (the kernels) and ``numpy_baseline.NumpyExtractor`` (plain numpy and
scipy) compute every feature of a window, short and long, from the same samples. Before
anything is timed, every feature of one is checked against the other's, so the report's
ratio is the speed-up of the compiled core for equal results. Further workloads (faults,
slot harmonics, a fixed supply frequency) are checked the same way, untimed, so that every
branch of the slip search and every optional feature is compared.

Workloads: seeded simulations (``edge_agent.simulate``, voltages on, 15 kS/s) fed for 10 s
through a :class:`Pipeline` with roles ia, ib, ic, va, vb, vc, which fills the 1 s short
window and the long window (16384 decimated samples, 7.65 s) as in service. Both windows
are the pipeline's own (the short one in float32, as the pipeline holds it); the last
window record is checked against the extractor to make sure of both.

``extra_info["realtime_factor"]`` is one hop (0.5 s) over the mean time of short + long.
"""

from __future__ import annotations

import pytest

from benchmarks import workloads as wl
from benchmarks.numpy_baseline import NumpyExtractor
from benchmarks.workloads import TIMED, WORKLOADS, Window, clean, run, window

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
    return NumpyExtractor(w.config.motor, wl.FS, w.fs_long)


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


def report_realtime_factor(benchmark, signal_s: float) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["signal_s"] = signal_s
        benchmark.extra_info["realtime_factor"] = round(signal_s / mean, 1)


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_numpy_baseline_agrees(name):
    """Every feature of the numpy baseline equals the kernels', on every workload."""
    w = window(name)
    got = run(numpy_extractor(w), w)
    want = run(w.extractor, w)
    assert not mismatches(got, want), "\n".join(mismatches(got, want))
    expected_method = {"broken-bar": 1.0, "eccentricity": 2.0, "slot harmonics": 3.0}
    assert want["slip_method"] == expected_method.get(name, 0.0)


def test_numpy_baseline_agrees_without_voltages_or_long_window():
    """Currents only, and no long window yet (nameplate slip): the same features again."""
    w = window(TIMED)
    kernels, baseline = w.extractor, numpy_extractor(w)
    for v, z in ((None, w.z), (w.v, None), (None, None)):
        part = Window(w.config, w.fs_long, w.extractor, w.x, v, z)
        got, want = run(baseline, part), run(kernels, part)
        assert not mismatches(got, want), "\n".join(mismatches(got, want))
        assert ("vi_area_a" in want) == (v is not None)
        assert ("ecc_lsb_db" in want) == (z is not None)


@pytest.mark.benchmark(group="feature vector, 3 I + 3 V")
@pytest.mark.parametrize("impl", ["kernels", "numpy"])
def test_feature_vector(benchmark, impl):
    """short() + long() of one window: every feature, 15 kS/s, full nameplate."""
    w = window(TIMED)
    baseline = numpy_extractor(w)
    # Also the untimed first call of each (numba cache load, FFT plans, windows).
    want = run(w.extractor, w)
    got = run(baseline, w)
    assert not mismatches(got, want), "\n".join(mismatches(got, want))

    extractor = w.extractor if impl == "kernels" else baseline
    features = benchmark(run, extractor, w)

    assert features.keys() == want.keys()
    assert features["ecc_lsb_db"] is not None and features["vi_area_a"] is not None
    report_realtime_factor(benchmark, wl.HOP_S)
