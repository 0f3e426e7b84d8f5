"""The whole feature vector of one window, 3 currents + 3 voltages: kernels against numpy.

``FeatureExtractor`` (the kernels) and ``numpy_baseline.NumpyExtractor`` (plain numpy and
scipy) compute every feature of a window, short and long, from the same samples. Before
anything is timed, every feature of one is checked against the other's, so the report's
ratio is the speed-up of the compiled core for equal results. ``tests/test_features.py``
checks every workload (faults, slot harmonics, a fixed supply frequency) the same way, so
that every branch of the slip search and every optional feature is compared.

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
from benchmarks.numpy_baseline import mismatches, numpy_extractor
from benchmarks.workloads import TIMED, run, window


def report_realtime_factor(benchmark, signal_s: float) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["signal_s"] = signal_s
        benchmark.extra_info["realtime_factor"] = round(signal_s / mean, 1)


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
