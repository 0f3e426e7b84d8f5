"""What a minute's summary costs the processing thread: the summarizer over its windows,
and the event store adding it to the hour's row of the trend (an fsynced transaction, on
the disk under tmp_path).

Workload: 70 s of the full nameplate (28 bars, a 6205 bearing) with a broken bar, 3
currents + 3 voltages, through a :class:`Pipeline`: 139 window records, every summary
field with a value.
"""

from __future__ import annotations

import functools

import pytest

from benchmarks import workloads as wl
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import SimulationSpec, simulate
from edge_agent.store import EventStore
from edge_agent.summary import MEAN_FEATURES, TREND_FIELDS, Summarizer


@functools.cache
def windows() -> tuple[dict, ...]:
    spec = SimulationSpec(fs=wl.FS, duration_s=70.0, fault="broken-bar", voltages=True,
                          ct_mismatch=wl.CT_MISMATCH, seed=wl.SEED)  # fmt: skip
    _, x = simulate(spec, wl.FULL.motor)
    recs = Pipeline(wl.FULL, wl.FS, wl.ROLES).update(x)
    return tuple(r for r in recs if r["type"] == "window")


def summarize(records) -> list[dict]:
    s = Summarizer(60.0)
    out = []
    for r in records:  # one at a time, as the daemon's sink gives them
        out += s.update([r])
    return out + s.flush()


@pytest.mark.benchmark(group="summary")
def test_summarizer(benchmark):
    recs = windows()
    first, *_ = benchmark(summarize, recs)
    assert first["windows"] == 119
    # The diagnosis's lines: the long window's (from 7.65 s) and the bearing's included.
    assert all(first[name] is not None for name in MEAN_FEATURES)
    if benchmark.stats is not None:
        benchmark.extra_info["per_window_us"] = round(
            benchmark.stats.stats.mean / len(recs) * 1e6, 2
        )


@pytest.mark.benchmark(group="summary")
def test_add_trend(benchmark, tmp_path):
    summary = summarize(windows())[0]
    values = {k: summary[k] for k in TREND_FIELDS}
    with EventStore(tmp_path / "edge.db") as store:
        added = []

        def add():  # a minute later each time: an hour's row takes 60
            added.append(1.7e9 + 60.0 * len(added))
            store.add_trend("plant1", "m1", added[-1], values)

        benchmark(add)
        rows = store.trend()
    assert sum(r["summaries"] for r in rows) == len(added) >= 1
    assert rows[0]["stats"]["brb_lsb_db"][0] < 0
