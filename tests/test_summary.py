"""Summaries: known aggregates, periods by signal time, independent of chunking, no NaN."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.summary import MEAN_FEATURES, Summarizer


def window(t_end, score=None, *, anomalous=False, flags=(), **features):
    return {
        "type": "window",
        "t_start": t_end - 1.0,
        "t_end": t_end,
        "score": score,
        "anomalous": anomalous,
        "features": {name: features.get(name) for name in MEAN_FEATURES} | features,
        "flags": list(flags),
    }


def alert(t, state, fault="anomaly", alert_id=None):
    return {
        "type": "alert",
        "id": alert_id or f"id-{fault}",
        "state": state,
        "t": t,
        "fault": fault,
        "severity": "watch",
        "score": None,
        "evidence": {},
    }


def test_known_inputs_give_known_aggregates():
    s = Summarizer(10.0)
    records = [
        window(1.0, 0.1, rms_a=1.0, i2_i1=0.01, supply_hz=50.0, slip=0.02),
        window(2.0, 0.2, rms_a=2.0, i2_i1=0.03, supply_hz=None, flags=["gap"]),
        window(3.0, None, rms_a=None, flags=["nan"]),
        window(4.0, 0.9, anomalous=True, rms_a=6.0, i2_i1=0.02, supply_hz=50.2, slip=0.04),
        alert(4.0, "raised", "anomaly"),
        alert(4.0, "raised", "broken_rotor_bar"),
        window(5.0, 0.4, rms_a=3.0),
        alert(5.0, "cleared", "anomaly"),
    ]
    assert s.update(records, lost_samples=7) == []
    (summary,) = s.flush()
    assert summary["type"] == "summary"
    assert (summary["t_start"], summary["t_end"]) == (0.0, 5.0)  # partial: last window's end
    assert summary["windows"] == 5
    assert summary["flagged_windows"] == 2
    assert summary["anomalous_windows"] == 1
    assert (summary["alerts_raised"], summary["alerts_cleared"]) == (2, 1)
    assert summary["active_alerts"] == ["broken_rotor_bar"]
    assert summary["lost_samples"] == 7
    assert summary["rms_a"] == pytest.approx(3.0)  # (1 + 2 + 6 + 3) / 4
    assert summary["rms_b"] is None and summary["rms_c"] is None
    assert summary["i2_i1"] == pytest.approx(0.02)
    assert summary["i2_i1_max"] == 0.03
    assert summary["supply_hz"] == pytest.approx(50.1)
    assert summary["slip"] == pytest.approx(0.03)
    scores = [0.1, 0.2, 0.9, 0.4]
    assert summary["score_p50"] == pytest.approx(np.percentile(scores, 50))  # 0.3
    assert summary["score_p95"] == pytest.approx(0.9 - 0.05 * 3 * 0.5)  # linear, 0.825
    assert summary["score_max"] == 0.9
    assert s.flush() == []


def test_a_window_ending_on_the_boundary_closes_its_period():
    s = Summarizer(60.0)
    out = s.update([window(t, 0.1) for t in np.arange(0.5, 60.5, 0.5)])  # 0.5 ... 60.0
    assert out == []
    (first,) = s.update([window(60.5, 0.2)])
    assert (first["t_start"], first["t_end"], first["windows"]) == (0.0, 60.0, 120)
    (second,) = s.flush()
    assert (second["t_start"], second["t_end"], second["windows"]) == (60.0, 60.5, 1)
    assert second["score_max"] == 0.2


def test_periods_are_aligned_to_the_interval_in_unix_time():
    s = Summarizer(60.0)
    t0 = 1_764_000_030.0  # half past a minute
    out = s.update([window(t0 + i, 1.0) for i in range(100)])
    assert [(r["t_start"], r["t_end"], r["windows"]) for r in out] == [
        (1_764_000_000.0, 1_764_000_060.0, 31),
        (1_764_000_060.0, 1_764_000_120.0, 60),
    ]
    (last,) = s.flush()
    assert (last["t_start"], last["t_end"], last["windows"]) == (1_764_000_120.0, t0 + 99, 9)


def test_signal_gap_gives_no_empty_summaries():
    s = Summarizer(10.0)
    out = s.update([window(1.0), window(55.0), window(56.0)])
    assert [(r["t_start"], r["windows"]) for r in out] == [(0.0, 1)]
    assert [(r["t_start"], r["windows"]) for r in s.flush()] == [(50.0, 2)]


def test_a_clock_set_back_closes_the_period_instead_of_filling_it_for_days():
    """The system clock set back 3 days (window times follow it, edge_agent.clock): the
    period of the old times is summarised up to its last window, and the later windows
    are summarised in their own periods, not in that one until the clock comes back."""
    s = Summarizer(60.0)
    t0, back = 1_764_000_030.0, 3 * 86400.0
    out = s.update([window(t0 + i, 1.0) for i in range(40)])  # to 9 s into the 2nd minute
    out += s.update([window(t0 + 40 + i - back, 2.0) for i in range(100)])
    assert [(r["t_start"], r["t_end"], r["windows"], r["score_max"]) for r in out] == [
        (1_764_000_000.0, 1_764_000_060.0, 31, 1.0),
        (1_764_000_060.0, t0 + 39, 9, 1.0),  # cut short by the step: its last window's end
        (1_764_000_060.0 - back, 1_764_000_120.0 - back, 51, 2.0),
    ]
    (last,) = s.flush()
    assert (last["t_start"], last["windows"]) == (1_764_000_120.0 - back, 49)
    # a record of the period before (a late alert) still counts in the current one
    s.update([window(1_764_000_130.0 - back, 3.0), alert(1_764_000_110.0 - back, "raised")])
    (current,) = s.flush()
    assert (current["t_start"], current["windows"], current["alerts_raised"]) == (
        1_764_000_120.0 - back, 1, 1,
    )  # fmt: skip


def test_empty():
    s = Summarizer(60.0)
    assert s.update([]) == []
    assert s.update([{"type": "summary"}], lost_samples=3) == []
    assert s.flush() == []
    # The loss is kept for the next period with a window in it.
    s.update([window(1.0)])
    assert s.flush()[0]["lost_samples"] == 3


def test_a_period_without_scores_or_features_has_nulls():
    s = Summarizer(5.0)
    s.update([window(1.0, flags=["nan"]), window(2.0, math.nan, rms_a=math.nan, slip=math.inf)])
    (r,) = s.flush()
    for key in (*MEAN_FEATURES, "i2_i1_max", "score_p50", "score_p95", "score_max"):
        assert r[key] is None, key
    json.dumps(r, allow_nan=False)


def test_active_alerts_carry_over_to_later_periods():
    s = Summarizer(10.0)
    records = [window(1.0), alert(1.0, "raised", "bearing"), window(11.0), window(21.0)]
    out = s.update([*records, alert(21.0, "cleared", "bearing")])
    assert [r["active_alerts"] for r in out] == [["bearing"], ["bearing"]]
    assert [r["alerts_raised"] for r in out] == [1, 0]
    assert s.flush()[0]["active_alerts"] == []


def test_lost_samples_count_in_the_period_of_the_next_window():
    s = Summarizer(10.0)
    s.update([window(1.0)], lost_samples=5)
    out = s.update([window(12.0)], lost_samples=100)  # lost before the window at 12 s
    assert out[0]["lost_samples"] == 5
    assert s.flush()[0]["lost_samples"] == 100


def test_bad_arguments():
    with pytest.raises(ValueError, match="interval_s"):
        Summarizer(0)
    with pytest.raises(ValueError, match="lost_samples"):
        Summarizer(1).update([], lost_samples=-1)


_value = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e6),
    st.just(math.nan),
    st.just(math.inf),
)


@st.composite
def streams(draw):
    """Window and alert records in time order, as the pipeline emits them."""
    n = draw(st.integers(0, 60))
    hops = draw(st.lists(st.sampled_from([0.5, 0.5, 0.5, 3.0, 17.0]), min_size=n, max_size=n))
    records, t, open_faults = [], draw(st.floats(0, 100)), set()
    for hop in hops:
        t += hop
        records.append(
            window(
                t,
                draw(_value),
                anomalous=draw(st.booleans()),
                flags=draw(st.sampled_from([(), ("gap",)])),
                rms_a=draw(_value),
                i2_i1=draw(_value),
                slip=draw(_value),
            )
        )
        fault = draw(st.sampled_from([None, "anomaly", "bearing"]))
        if fault is not None:
            state = "cleared" if fault in open_faults else "raised"
            (open_faults.discard if state == "cleared" else open_faults.add)(fault)
            records.append(alert(t, state, fault))
    return records


@settings(max_examples=100, deadline=None)
@given(
    records=streams(),
    cuts=st.lists(st.integers(0, 200), max_size=10),
    interval=st.sampled_from([1.0, 5.0, 7.5, 60.0]),
)
def test_summaries_do_not_depend_on_chunking(records, cuts, interval):
    whole = run(records, interval, [len(records)])
    ends = [*sorted({min(c, len(records)) for c in cuts}), len(records)]
    assert run(records, interval, ends) == whole
    singles = run(records, interval, list(range(1, len(records) + 1)))
    assert singles == whole
    for r in whole:
        json.dumps(r, allow_nan=False)
        assert r["windows"] > 0 and r["t_start"] <= r["t_end"]
    assert sum(r["windows"] for r in whole) == sum(r["type"] == "window" for r in records)


@settings(max_examples=50, deadline=None)
@given(records=streams(), lost=st.lists(st.integers(0, 1000), min_size=120, max_size=120))
def test_every_lost_sample_is_counted_once(records, lost):
    s = Summarizer(5.0)
    out = []
    for rec, n in zip(records, lost, strict=False):
        out += s.update([rec], lost_samples=n)
    out += s.flush()
    if records:
        assert sum(r["lost_samples"] for r in out) == sum(lost[: len(records)])


def run(records, interval, ends):
    s = Summarizer(interval)
    out, start = [], 0
    for end in ends:
        out += s.update(records[start:end])
        start = end
    return out + s.flush()


def test_a_stopped_motors_windows_are_counted_apart_from_the_flagged():
    s = Summarizer(60.0)
    recs = [window(1.0, flags=["stopped"]), window(2.0, flags=["gap", "stopped"]),
            window(3.0, flags=["wiring"]), window(4.0)]  # fmt: skip
    (summary,) = s.update(recs) + s.flush()
    assert (summary["windows"], summary["flagged_windows"], summary["stopped_windows"]) == (4, 2, 2)
