"""RecordSink and RawHistory: what reaches the output and the event store, without a broker
(the MQTT side is in test_agent_mqtt.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import Config, load_config
from edge_agent.publish.sink import RecordSink
from edge_agent.snapshot import RawHistory
from edge_agent.store import EventStore


def window(t_end: float, rms: float = 8.0) -> dict:
    return {"type": "window", "t_start": t_end - 1.0, "t_end": t_end, "score": 0.1,
            "anomalous": False, "features": {"rms_a": rms}, "flags": []}  # fmt: skip


def alert(t: float, state: str, alert_id: str = "a1") -> dict:
    return {"type": "alert", "id": alert_id, "state": state, "t": t, "fault": "broken_rotor_bar",
            "severity": "warning", "score": None, "evidence": {"brb_lsb_db": -41.0}}  # fmt: skip


def config(tmp_path, interval: float = 5.0) -> Config:
    env = {"EDGE_AGENT_STORE__PATH": str(tmp_path / "agent.db"),
           "EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S": str(interval)}  # fmt: skip
    return load_config(environ=env)


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_records_and_summaries_come_out_in_time_order(tmp_path):
    out = io.StringIO()
    sink = RecordSink(config(tmp_path), out)
    # Hops arrive in uneven chunks, one with an alert and a loss of 64 samples.
    sink.write([window(1.0), window(4.5)])
    sink.write([window(5.0), window(5.5), alert(5.5, "raised")], lost_samples=64)
    sink.write([window(9.0), window(10.5)])
    sink.close()
    got = [(r["type"], r.get("t_end", r.get("t"))) for r in lines(out)]
    assert got == [
        ("window", 1.0), ("window", 4.5), ("window", 5.0),
        ("summary", 5.0),  # (0, 5] closes when the window ending at 5.5 arrives
        ("window", 5.5), ("alert", 5.5), ("window", 9.0),
        ("summary", 10.0), ("window", 10.5),
        ("summary", 10.5),  # the last, partial period, at close
    ]  # fmt: skip
    summaries = [r for r in lines(out) if r["type"] == "summary"]
    assert [s["windows"] for s in summaries] == [3, 2, 1]
    # The loss came before the chunk's first window, which ends in the first period.
    assert [s["lost_samples"] for s in summaries] == [64, 0, 0]
    assert summaries[1]["active_alerts"] == ["broken_rotor_bar"]
    assert (sink.stats.records, sink.stats.summaries, sink.stats.alerts) == (6, 3, 1)
    assert not (tmp_path / "agent.db").exists()  # a plain replay keeps no store


def test_the_daemon_carries_on_the_alerts_a_crash_left_open(tmp_path):
    cfg = config(tmp_path)
    sink = RecordSink(cfg, None, store=True, resume=True)
    sink.write([window(1.0), alert(1.0, "raised", "older"), alert(2.0, "raised", "left-open")])
    sink.store.close()  # killed: neither alert was cleared (the older one by a fault)
    out = io.StringIO()
    again = RecordSink(cfg, out, store=True, resume=True, ts_offset=1000.0)
    # The newest open alert of the fault is handed to the new run's tracker, and stays
    # open; another of the same fault cannot be, and is cleared.
    assert [a["alert_id"] for a in again.left_open] == ["left-open"]
    assert again.left_open[0]["fault"] == "broken_rotor_bar"
    again.write([window(1001.0)])
    again.close()
    with EventStore(tmp_path / "agent.db") as store:
        cleared = {a["alert_id"]: a["cleared_ts"] is not None for a in store.alerts()}
    assert cleared == {"older": True, "left-open": False}
    said = lines(out)
    (gone,) = [r for r in said if r["type"] == "alert"]
    assert gone["id"] == "older" and gone["evidence"] == {"reason": "agent restarted"}
    # The new run's summaries count the carried-on alert as active.
    (summary,) = [r for r in said if r["type"] == "summary"]
    assert summary["active_alerts"] == ["broken_rotor_bar"]


def test_raw_history_keeps_the_last_seconds_across_wraps(tmp_path):
    h = RawHistory(fs=100.0, roles=["ia", "ib", "ic"], seconds=2.0)
    x = np.arange(3 * 350, dtype=np.float64).reshape(350, 3)
    for start in range(0, 350, 70):  # 0.7 s blocks: the ring wraps mid-block
        h.push(x[start : start + 70], t_end=(start + 70) / 100.0)
    np.testing.assert_array_equal(h.last(2.0), x[-200:])
    np.testing.assert_array_equal(h.last(0.5), x[-50:])
    np.testing.assert_array_equal(h.last(10.0), x[-200:])  # at most what it keeps
    saved = [h.save(tmp_path, "plant-m1", 1.0, keep=2) for _ in range(3)]
    assert np.load(saved[-1]["path"]).shape == (100, 3)
    assert saved[-1]["t_start"] == pytest.approx(2.5) and saved[-1]["t_end"] == 3.5
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == sorted(
        p["path"].rsplit("/", 1)[-1] for p in saved[1:]
    )  # the oldest beyond keep=2 is gone


def test_a_snapshot_keeps_the_samples_lost_in_it_as_a_gap(tmp_path):
    """A snapshot spanning a loss on the line (5 samples counted lost, then a loss of
    unknown length) keeps them as rows of NaN: its replay sees two gaps, where they were,
    and times that count the 5."""
    from edge_agent.recording import open_recording

    h = RawHistory(fs=100.0, roles=["ia", "ib", "ic"], seconds=2.0)
    x = np.arange(3 * 120, dtype=np.float64).reshape(120, 3)
    h.push(x[:60], t_end=0.6)
    h.push(x[60:], t_end=1.25, gaps=[0, 30], lost=[5, 0])
    saved = h.save(tmp_path, "m", 2.0, keep=1)
    got = np.load(saved["path"])
    assert got.shape == (126, 3) and saved["seconds"] == 1.26
    assert np.flatnonzero(np.isnan(got).all(axis=1)).tolist() == [60, 61, 62, 63, 64, 95]
    with open_recording(Path(saved["path"]), fs=100.0) as rec:
        (chunk,) = rec.chunks()
    np.testing.assert_array_equal(chunk.samples, x)
    assert (chunk.gaps, chunk.lost) == ([60, 90], [5, 1])


def test_raw_history_refuses_a_snapshot_with_nothing_to_save(tmp_path):
    with pytest.raises(ValueError, match="no samples"):
        RawHistory(100.0, ["ia", "ib", "ic"], 1.0).save(tmp_path, "x", 1.0, keep=1)
    with pytest.raises(ValueError, match="snapshot_s = 0"):
        RawHistory(100.0, ["ia", "ib", "ic"], 0.0).save(tmp_path, "x", 1.0, keep=1)


def test_the_reserve_is_kept_at_its_size_and_never_takes_the_last_of_the_disk(tmp_path):
    """The daemon's room for a stop on a full disk (`[store] reserve_mb`): made at its size,
    made again at another size when the setting changes, gone with 0; and not made where
    the disk lacks twice its size."""
    import os

    from edge_agent.publish.sink import Reserve

    path = tmp_path / "edge-agent.db.reserve"
    assert Reserve(path, 1 << 20).keep() and path.stat().st_size == 1 << 20
    assert Reserve(path, 1 << 19).keep() and path.stat().st_size == 1 << 19
    assert not Reserve(path, 0).keep() and not path.exists()
    assert Reserve(path, 1 << 16).keep() and Reserve(path, 1 << 16).release()
    assert not path.exists() and not Reserve(path, 1 << 16).release()
    st = os.statvfs(tmp_path)
    free = st.f_bavail * st.f_frsize
    assert not Reserve(path, free // 2 + (1 << 20)).keep() and not path.exists()
