"""The SQLite event store: alerts and labels, models, counters, retention, threads, bad files."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading

import pytest

from edge_agent.config import Config
from edge_agent.errors import EdgeAgentError, InputDataError
from edge_agent.store import STORE_VERSION, EventStore, model_id

DAY = 86400.0
T0 = 1_764_000_000.0


def alert(alert_id, state="raised", t=10.0, fault="anomaly", severity="warning", score=0.5):
    return {
        "type": "alert",
        "id": alert_id,
        "state": state,
        "t": t,
        "fault": fault,
        "severity": severity,
        "score": score,
        "evidence": {"score": score, "threshold": 0.15} if state == "raised" else {},
    }


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "state" / "edge-agent.db") as s:
        yield s


def test_creates_its_folder_and_a_wal_database(tmp_path):
    path = tmp_path / "a" / "b" / "edge-agent.db"
    old = os.umask(0o022)
    try:
        s = EventStore(path)
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    s.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM store_meta WHERE key = 'version'").fetchone()[0] == str(
        STORE_VERSION
    )
    db.close()
    with EventStore(path) as again:  # reopening keeps everything
        assert again.version == STORE_VERSION


def test_alert_raise_clear_and_label(store):
    store.record_alert(alert("A1", t=10.0), site="plant1", asset="pump3", t0=T0, model_id="m1")
    a = store.alert("A1")
    assert a["raised_ts"] == T0 + 10.0 and a["cleared_ts"] is None
    assert (a["site"], a["asset"], a["fault"], a["severity"]) == (
        "plant1",
        "pump3",
        "anomaly",
        "warning",
    )
    assert a["score"] == 0.5 and a["evidence"] == {"score": 0.5, "threshold": 0.15}
    assert a["model_id"] == "m1" and a["label"] is None
    assert [x["alert_id"] for x in store.alerts(open_only=True)] == ["A1"]

    store.record_alert(
        alert("A1", "cleared", t=25.0), site="plant1", asset="pump3", t0=T0, model_id="m1"
    )
    a = store.alert("A1")
    assert a["cleared_ts"] == T0 + 25.0 and a["raised_ts"] == T0 + 10.0
    assert store.alerts(open_only=True) == []

    assert store.label("A1", "true_positive", by="j.smith", note="bars broken") is True
    a = store.alert("A1")
    assert (a["label"], a["labelled_by"], a["label_note"]) == (
        "true_positive",
        "j.smith",
        "bars broken",
    )
    assert a["labelled_ts"] > 0
    assert store.label("A1", "false_positive") is True  # a new label replaces the old
    assert store.alert("A1")["label"] == "false_positive"
    assert store.label("nope", "true_positive") is False
    with pytest.raises(ValueError, match="label"):
        store.label("A1", "maybe")
    assert store.alert("nope") is None


def test_why_each_alert_was_cleared_is_kept(store):
    ends = {"normal": {}, "escalated": {"superseded_by": "B2", "severity_now": "alarm"},
            "unjudged": {"reason": "not judged in this run: no model loaded"}}  # fmt: skip
    for ident, evidence in ends.items():
        store.record_alert(alert(ident), site="s", asset="a", t0=T0, model_id=None)
        cleared = {**alert(ident, "cleared", t=20.0), "evidence": evidence}
        store.record_alert(cleared, site="s", asset="a", t0=T0, model_id=None)
    assert {a["alert_id"]: a["cleared_reason"] for a in store.alerts()} == {
        "normal": "the windows read normal again",
        "escalated": "now alarm, as alert B2",
        "unjudged": "not judged in this run: no model loaded",
    }


def test_a_store_made_before_the_clear_reasons_gains_them_and_keeps_its_alerts(tmp_path):
    from edge_agent.store import _SCHEMA

    path = tmp_path / "edge-agent.db"
    old = "\n".join(x for x in _SCHEMA.splitlines() if "cleared_reason" not in x)
    db = sqlite3.connect(path)
    with db:
        db.executescript(old)
        db.execute("INSERT INTO store_meta (key, value) VALUES ('version', '1')")
        db.execute(
            "INSERT INTO alerts (alert_id, site, asset, fault, severity, raised_ts, cleared_ts, "
            "evidence) VALUES ('old', 's', 'a', 'bearing', 'watch', 1.0, 2.0, '{}')"
        )
    db.close()
    with EventStore(path) as store:
        assert store.version == 1  # an added column: an older edge-agent still reads it
        assert store.alert("old")["cleared_reason"] is None
        store.record_alert(alert("new"), site="s", asset="a", t0=T0, model_id=None)
        store.record_alert(alert("new", "cleared", t=20.0), site="s", asset="a", t0=T0,
                           model_id=None)  # fmt: skip
        assert store.alert("new")["cleared_reason"] == "the windows read normal again"
    with EventStore(path) as again:  # opened again: nothing to add
        assert [a["alert_id"] for a in again.alerts()] == ["new", "old"]


def test_raised_twice_is_recorded_once_and_unknown_clear_is_ignored(store, caplog):
    for _ in range(2):
        store.record_alert(alert("A1"), site="s", asset="a", t0=0.0, model_id=None)
    assert len(store.alerts()) == 1
    store.record_alert(alert("ghost", "cleared"), site="s", asset="a", t0=0.0, model_id=None)
    assert store.alert("ghost") is None
    assert "ghost" in caplog.text


def test_non_finite_values_are_stored_as_null(store):
    rec = alert("A1", score=float("nan"))
    rec["evidence"] = {"x": float("inf"), "y": [1.0, float("nan")]}
    store.record_alert(rec, site="s", asset="a", t0=0.0, model_id=None)
    a = store.alert("A1")
    assert a["score"] is None and a["evidence"] == {"x": None, "y": [1.0, None]}


def test_alert_queries(store):
    for i in range(5):
        site = "p1" if i % 2 else "p2"
        store.record_alert(alert(f"A{i}", t=float(i)), site=site, asset="m", t0=T0, model_id=None)
    assert [a["alert_id"] for a in store.alerts()] == ["A4", "A3", "A2", "A1", "A0"]
    assert [a["alert_id"] for a in store.alerts(site="p1")] == ["A3", "A1"]
    assert [a["alert_id"] for a in store.alerts(since=T0 + 2)] == ["A4", "A3", "A2"]
    assert [a["alert_id"] for a in store.alerts(limit=2)] == ["A4", "A3"]
    assert store.alerts(asset="other") == []


def test_model_registration_is_idempotent(store):
    card = json.loads(_default_card())
    mid = store.register_model(card, "/opt/models/default")
    assert mid == model_id(card) and len(mid) == 12
    assert store.register_model(card, "/elsewhere") == mid  # same card, same id
    m = store.model(mid)
    assert m["card"] == card and m["path"] == "/elsewhere"
    changed = {**card, "threshold": card["threshold"] * 2}
    assert store.register_model(changed, "/opt/models/new") != mid
    assert model_id(dict(reversed(list(card.items())))) == mid  # key order does not matter
    assert store.model("nope") is None


def _default_card() -> str:
    from importlib.resources import files

    return files("edge_agent.models").joinpath("default/model.json").read_text()


def test_register_asset_upserts(store):
    store.register_asset("plant1", "pump3", Config().motor.model_dump(mode="json"))
    motor = Config().motor.model_copy(update={"pole_pairs": 3, "rated_rpm": 960.0})
    store.register_asset("plant1", "pump3", motor.model_dump(mode="json"))
    (a,) = store.assets()
    assert a["nameplate"]["pole_pairs"] == 3 and a["first_seen"] <= a["updated_ts"]


def test_counters_time_series(store):
    for i in range(5):
        store.add_counters("s", "a", T0 + 60 * i, {"lost_samples": i, "windows": 120.0})
    store.add_counters("s", "b", T0, {"lost_samples": 9})
    rows = store.counters(site="s", asset="a")
    assert [r["ts"] for r in rows] == [T0 + 60 * i for i in range(5)]
    assert rows[2]["counters"] == {"lost_samples": 2, "windows": 120.0}
    assert [r["ts"] for r in store.counters(asset="a", since=T0 + 60, until=T0 + 180)] == [
        T0 + 60,
        T0 + 120,
    ]
    assert [r["ts"] for r in store.counters(asset="a", limit=2)] == [T0 + 180, T0 + 240]
    store.add_counters("s", "a", T0, {"bad": float("nan")})
    with pytest.raises(ValueError, match="'x'"):
        store.add_counters("s", "a", T0, {"x": "many"})


def test_prune_by_age_keeps_open_alerts(store):
    now = T0 + 400 * DAY
    for i, age_days in enumerate((500, 300)):
        ts = now - age_days * DAY
        store.add_counters("s", "a", ts, {"n": i})
        store.record_alert(alert(f"closed{i}", t=ts - 10), site="s", asset="a", t0=0, model_id=None)
        store.record_alert(
            alert(f"closed{i}", "cleared", t=ts), site="s", asset="a", t0=0, model_id=None
        )
    store.record_alert(
        alert("open-old", t=now - 900 * DAY), site="s", asset="a", t0=0, model_id=None
    )
    result = store.prune(retention_days=365, max_mb=1000, now=now)
    assert result["counters_by_age"] == 1 and result["alerts_by_age"] == 1
    assert result["counters_by_size"] == result["alerts_by_size"] == 0
    assert sorted(a["alert_id"] for a in store.alerts()) == ["closed1", "open-old"]
    assert [r["counters"]["n"] for r in store.counters()] == [1]


def _fill(path, n_alerts, n_counters):
    """Many rows through one plain connection (fast), as years of use would leave."""
    db = sqlite3.connect(path)
    evidence = json.dumps({"pad": "x" * 300})
    with db:
        db.executemany(
            "INSERT INTO alerts (alert_id, site, asset, fault, severity, raised_ts, cleared_ts, "
            "score, evidence) VALUES (?, 's', 'a', 'anomaly', 'watch', ?, ?, 0.1, ?)",
            ((f"c{i}", T0 + i, T0 + i + 5, evidence) for i in range(n_alerts)),
        )
        db.executemany(
            "INSERT INTO counters (site, asset, ts, counters) VALUES ('s', 'a', ?, ?)",
            (
                (T0 + i, json.dumps({"lost_samples": i, "pad": "y" * 200}))
                for i in range(n_counters)
            ),
        )
    db.close()


def _size_mb(path) -> float:
    return sum(
        os.path.getsize(f"{path}{suffix}")
        for suffix in ("", "-wal")
        if os.path.exists(f"{path}{suffix}")
    ) / (1024 * 1024)


def test_prune_by_size_trims_counters_first_then_closed_alerts(tmp_path):
    path = tmp_path / "edge-agent.db"
    with EventStore(path) as store:
        store.record_alert(alert("open", t=0.0), site="s", asset="a", t0=T0, model_id=None)
        _fill(path, n_alerts=6000, n_counters=8000)
        assert _size_mb(path) > 3.5
        result = store.prune(retention_days=10_000, max_mb=1.0, now=T0 + 1e5)
        assert result["counters_by_size"] == 8000  # every counter set went first
        assert 0 < result["alerts_by_size"] < 6000
        assert result["vacuum"] == "incremental"  # the file was made by the store
        assert result["size_mb"] <= 1.0
        assert _size_mb(path) <= 1.0
        assert store.alert("open") is not None  # never an open alert
        left = store.alerts(limit=None)
        # The newest closed alerts are the ones kept.
        kept = sorted(int(a["alert_id"][1:]) for a in left if a["alert_id"] != "open")
        assert kept == list(range(6000 - len(kept), 6000))
        assert store.counters() == []
        # Under the limit, nothing more goes.
        again = store.prune(retention_days=10_000, max_mb=1.0, now=T0 + 1e5)
        assert again["alerts_by_size"] == again["counters_by_size"] == 0


def test_prune_vacuums_a_file_created_without_auto_vacuum(tmp_path):
    path = tmp_path / "edge-agent.db"
    db = sqlite3.connect(path)  # e.g. the outbox made the file first
    db.execute("CREATE TABLE outbox (seq INTEGER PRIMARY KEY, payload TEXT)")
    db.executemany("INSERT INTO outbox (payload) VALUES (?)", [("z" * 100,)] * 100)
    db.commit()
    db.close()
    with EventStore(path) as store:
        _fill(path, n_alerts=3000, n_counters=3000)
        result = store.prune(retention_days=10_000, max_mb=0.5, now=T0)
        assert result["vacuum"] == "full"
        assert _size_mb(path) <= 0.5
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 100  # not ours: kept
    assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental from now on
    db.close()


def test_prune_stops_when_only_open_alerts_are_left(store, caplog):
    for i in range(50):
        store.record_alert(alert(f"open{i}"), site="s", asset="a", t0=T0, model_id=None)
    result = store.prune(retention_days=1, max_mb=0.01, now=T0)
    assert result["alerts_by_size"] == 0 and len(store.alerts(limit=None)) == 50
    assert "max_mb" in caplog.text


def test_two_threads_and_another_connection_share_the_file(tmp_path):
    path = tmp_path / "edge-agent.db"
    store = EventStore(path)
    other = EventStore(path)  # like the outbox: its own connection to the same file
    n = 200
    errors: list[BaseException] = []

    def processing():
        try:
            for i in range(n):
                store.record_alert(
                    alert(f"A{i}", t=float(i)), site="s", asset="a", t0=T0, model_id=None
                )
                store.add_counters("s", "a", T0 + i, {"windows": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    labelled = []

    def mqtt():
        try:
            i = 0
            while i < n:
                if store.label(f"A{i}", "true_positive", by="mqtt"):
                    labelled.append(i)
                    i += 1
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    def outbox():
        try:
            for i in range(n):
                other.add_counters("s", "other", T0 + i, {"queued": i})
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=f, name=f.__name__) for f in (processing, mqtt, outbox)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(labelled) == n
    assert all(a["label"] == "true_positive" for a in store.alerts(limit=None))
    assert len(store.counters(asset="a")) == n and len(other.counters(asset="other")) == n
    store.close()
    other.close()


@pytest.mark.parametrize("damage", ["text", "schema page", "truncated"])
def test_a_file_that_is_not_a_database_is_named(tmp_path, damage):
    path = tmp_path / "edge-agent.db"
    if damage == "text":
        path.write_bytes(b"this is not a database at all" * 200)
    else:
        with EventStore(path) as s:
            s.add_counters("s", "a", T0, {"windows": 1})
        data = bytearray(path.read_bytes())
        if damage == "schema page":  # the header survives, the table list does not
            data[100:4096] = bytes(range(256)) * 15 + bytes(156)
        else:
            data = data[:50]
        path.write_bytes(bytes(data))
    with pytest.raises(InputDataError, match=r"edge-agent\.db: not a usable SQLite database"):
        EventStore(path)


def test_a_newer_store_version_is_refused(tmp_path):
    path = tmp_path / "edge-agent.db"
    EventStore(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE store_meta SET value = '99' WHERE key = 'version'")
    db.close()
    with pytest.raises(InputDataError, match="version 99"):
        EventStore(path)


def test_an_unwritable_folder_is_an_edge_agent_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EdgeAgentError, match="file"):
        EventStore(blocker / "sub" / "edge-agent.db")
