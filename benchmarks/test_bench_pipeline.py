"""What a user pays end to end: hops through the pipeline, and replaying a recording.

A round of the hop benchmarks is the 4 hops of one ``windows.long_hop_s`` (2 s): the long
window is analysed in one of them, so a round's time over 4 is what a hop costs on average.

``extra_info["realtime_factor"]`` is seconds of signal processed per second of wall time:
the round's signal (2 s) over the mean time of its ``Pipeline.update`` calls, or the
recording's length over the mean time of ``replay``.
"""

from __future__ import annotations

import functools
import io
import itertools

import pytest
from edge_agent.kernels import fft

from benchmarks import workloads as wl
from edge_agent.pipeline import Pipeline
from edge_agent.replay import replay
from edge_agent.scoring import Scorer

WARM_S = 10.0  # fills the 1 s short window and the 8 s long window, with margin


@functools.cache
def default_scorer() -> Scorer:
    return Scorer.load()


def report_realtime_factor(benchmark, signal_s: float) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["signal_s"] = signal_s
        benchmark.extra_info["realtime_factor"] = round(signal_s / mean, 1)


@pytest.mark.benchmark(group="Pipeline.update, 4 hops of 0.5 s (one long_hop_s), 3 currents")
@pytest.mark.parametrize("backend", fft.BACKENDS)
@pytest.mark.parametrize("model", ["no-model", "default-model"])
def test_pipeline_hop(benchmark, monkeypatch, model, backend):
    run_hops(benchmark, monkeypatch, backend, voltages=False, model=model)


@pytest.mark.benchmark(
    group="Pipeline.update, 4 hops of 0.5 s (one long_hop_s), 3 currents + 3 voltages"
)
@pytest.mark.parametrize("backend", fft.BACKENDS)
@pytest.mark.parametrize("model", ["no-model", "default-model"])
def test_pipeline_hop_with_voltages(benchmark, monkeypatch, model, backend):
    """no-model is the whole feature set (short and long window, data quality); the model
    adds the autoencoder's score, the diagnosis and the alerts."""
    run_hops(benchmark, monkeypatch, backend, voltages=True, model=model)


def run_hops(benchmark, monkeypatch, backend: str, voltages: bool, model: str) -> None:
    monkeypatch.setenv("EDGE_AGENT_FFT", backend)
    scorer = default_scorer() if model == "default-model" else None
    roles = ["ia", "ib", "ic"] + (["va", "vb", "vc"] if voltages else [])
    pipe = Pipeline(wl.CONFIG, wl.FS, roles, scorer=scorer)
    feed = itertools.cycle(wl.hops(voltages))
    for _ in range(round(WARM_S / wl.HOP_S)):
        pipe.update(next(feed))

    # One round is the hops of one windows.long_hop_s (4 hops, 2 s): the long window is
    # analysed in one of them, so the round costs what the whole feature set costs over
    # time. Timing single hops would let the minimum skip that analysis.
    cycle = pipe._long_every
    assert cycle == round(wl.CONFIG.windows.long_hop_s / wl.HOP_S)

    def hops():
        return [r for _ in range(cycle) for r in pipe.update(next(feed))]

    records = benchmark(hops)

    windows = [r for r in records if r["type"] == "window"]
    assert len(windows) == cycle
    # The timed hops ran the whole chain: short features, rotor features, and the score.
    for window in windows:
        assert window["features"]["brb_lsb_db"] is not None
        assert (window["features"].get("vi_area_a") is not None) == voltages
        assert (window["score"] is not None) == (scorer is not None)
        assert not window["anomalous"]
    report_realtime_factor(benchmark, cycle * wl.HOP_S)


@pytest.mark.benchmark(group=f"replay, {wl.REPLAY_S:g} s at 15 kS/s, default model")
@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_replay(benchmark, recordings, fmt):
    path = recordings[fmt]
    fs = wl.FS if fmt == "npy" else None  # CSV carries t_s

    def run():
        return replay(path, wl.CONFIG, io.StringIO(), scorer=default_scorer(), fs=fs)

    run()  # warm-up: page cache, numba cache load, onnxruntime session
    result = benchmark.pedantic(run, rounds=5, iterations=1)

    assert result.signal_s == pytest.approx(wl.REPLAY_S)
    assert result.stats.windows == round((wl.REPLAY_S - 1.0) / wl.HOP_S) + 1
    assert result.stats.anomalous_windows == 0
    benchmark.extra_info["file_mb"] = round(path.stat().st_size / 1e6, 1)
    report_realtime_factor(benchmark, wl.REPLAY_S)


@pytest.mark.benchmark(group="Scorer.score_features, one window (default model)")
def test_score_features(benchmark):
    """The model's share of a hop, too small to see beside the hop's own jitter."""
    scorer = default_scorer()
    (window,) = Pipeline(wl.CONFIG, wl.FS).update(wl.samples()[: wl.LENGTH])
    scorer.score_features(window["features"])  # warm-up: onnxruntime's first run allocates
    score = benchmark(scorer.score_features, window["features"])
    assert score is not None and score < scorer.threshold
