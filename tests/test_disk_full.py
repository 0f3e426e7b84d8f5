"""A full disk, as an SD card in a cabinet fills: the daemon holds what it cannot write
and writes it once there is room; other commands stop with exit 74, naming the file.

The disk is a real file system of its own (a 4 MB tmpfs, mounted as root as the suite
runs) filled to the last byte, so SQLite and the JSON Lines stream meet the real ENOSPC.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_agent_mqtt import ASSET, ROOT, SITE, agent, agent_env, payloads
from tests.test_cli import run
from tests.test_systemd import NotifySocket


@pytest.fixture
def disk(tmp_path) -> Path:
    """An empty 4 MB file system of its own."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert mounted.returncode == 0, f"the suite runs as root to mount a tmpfs: {mounted.stderr}"
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Fill ``where``'s file system to the last byte; returns the file that fills it."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    assert os.statvfs(where).f_bavail == 0
    return filler


def stator_short_env(db: Path, url: str, onset_s: float, **extra: str) -> dict[str, str]:
    """The daemon's environment: the simulator for 30 s with a stator short from
    ``onset_s``, a summary every 2 s."""
    return agent_env(
        db, url, EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S="2",
        EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S="30",
        EDGE_AGENT_ACQUISITION__SIMULATOR__FAULT="stator-short",
        EDGE_AGENT_ACQUISITION__SIMULATOR__SEVERITY="30",
        EDGE_AGENT_ACQUISITION__SIMULATOR__ONSET_S=str(onset_s), **extra,
    )  # fmt: skip


def disk_full_statuses(systemd: NotifySocket) -> list[dict[str, str]]:
    """The STATUS= messages that say the disk is full."""
    return [m for _, m in systemd.having("STATUS") if "DISK FULL" in m["STATUS"]]


def counters(db: Path) -> list[float]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        return [ts for (ts,) in c.execute("SELECT ts FROM counters ORDER BY ts")]


def test_the_daemon_holds_what_a_full_disk_refuses_and_writes_it_once_there_is_room(
    broker, make_subscriber, disk, tmp_path
):
    sub = make_subscriber(broker, f"{ROOT}/#")
    db, out = disk / "edge-agent.db", tmp_path / "live.jsonl"
    env = stator_short_env(db, broker.url, 8)
    proc = agent("run", "--source", "simulator", "--no-model", "--out", out, env=env)
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/summary") for m in ms), 90, "a summary")
        before = len(payloads(sub, "summary"))
        filler = fill(disk)
        # The stator short from 8 s is raised while the disk is full; so are summaries.
        # The plant hears of it at once, from memory, with the disk still full.
        sub.wait_for(lambda ms: any(m.topic.endswith("/alert") for m in ms), 40, "the alert")
        (told,) = payloads(sub, "alert")
        while_full = len(payloads(sub, "summary")) - before
        assert os.statvfs(disk).f_bavail == 0
        time.sleep(3.0)
        os.unlink(filler)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    refused = [x for x in lines if " ERROR " in x and "disk full while" in x]
    assert refused and f"{db}: disk full while writing it" in "".join(refused), err
    assert "holding the alerts, summaries and events in memory" in refused[0]
    assert "sending them to the broker from memory meanwhile" in refused[0]
    (wrote,) = [x for x in lines if "the disk takes writes again" in x]
    assert " INFO " in wrote and "(1 alerts; " in wrote
    assert "delivered from memory already, not queued again" in wrote
    assert told["fault"] == "stator_short" and told["historical"] is False
    assert while_full >= 2  # the summaries went on too
    # Nothing lost: the store, and the broker, have every alert and summary the run made.
    records = [json.loads(x) for x in out.read_text().splitlines()]
    made = [r for r in records if r["type"] == "summary"]
    alert = [r for r in records if r["type"] == "alert"]
    assert len(alert) == 1 and alert[0]["fault"] == "stator_short" and len(made) >= 14
    assert len(counters(db)) == len(made)
    with contextlib.closing(sqlite3.connect(db)) as c:
        assert c.execute("SELECT alert_id FROM alerts").fetchall() == [(alert[0]["id"],)]
    sub.wait_for(lambda ms: len({m.json["id"] for m in ms if m.topic.endswith("/summary")})
                 >= len(made), 30, "every summary")  # fmt: skip
    # Each once: what the broker had from memory was not put in the outbox as well.
    ids = [p["id"] for p in payloads(sub, "summary")]
    assert len(ids) == len(set(ids)) == len(made)
    assert [p["alert_id"] for p in payloads(sub, "alert")] == [alert[0]["id"]]
    assert told["alert_id"] == alert[0]["id"]


def test_a_full_disk_neither_ends_the_broker_connection_nor_sends_a_message_twice(
    make_broker, disk, tmp_path
):
    """Messages queued while the broker was away, delivered while the disk is full: the
    outbox cannot delete them. Before, each PUBACK ended the connection with a traceback
    and the backlog went again at every reconnect, every second."""
    broker = make_broker()
    db = disk / "edge-agent.db"
    env = agent_env(db, broker.url, EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S="1",
                    EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S="40")  # fmt: skip
    proc = agent("run", "--source", "simulator", "--no-model", "--out", os.devnull, env=env)
    try:
        deadline = time.monotonic() + 90
        while not (db.exists() and len(counters(db)) >= 2) and time.monotonic() < deadline:
            time.sleep(0.2)
        broker.stop()
        time.sleep(5.0)  # summaries queue in the outbox
        filler = fill(disk)
        broker.start()
        time.sleep(12.0)
        os.unlink(filler)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "unexpected error" not in err and "Traceback" not in err, err
    assert len([x for x in err.splitlines() if "again, down" in x]) == 1, err  # one reconnect
    (kept,) = [x for x in err.splitlines() if "delivered messages stay in the outbox" in x]
    assert " WARNING " in kept and "disk full while ack" in kept
    assert "the outbox deleted the " in err and "delivered messages it had kept" in err
    with contextlib.closing(sqlite3.connect(db)) as c:
        assert c.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)


def test_with_the_disk_full_and_the_broker_away_the_records_reach_it_once_it_is_back(
    make_broker, make_subscriber, disk, tmp_path
):
    """Neither the outbox nor the broker takes the summaries: they are sent from memory
    when the broker is back, marked historical; a stop before the disk has room says how
    many of those lost to the event store the broker has."""
    broker = make_broker(persistence=True)  # the subscriber's session survives the restart
    sub = make_subscriber(broker, f"{ROOT}/#", client_id="plant-historian", persistent=True)
    db, out = disk / "edge-agent.db", tmp_path / "live.jsonl"
    env = agent_env(db, broker.url, EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S="1",
                    EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S="60")  # fmt: skip
    proc = agent("run", "--source", "simulator", "--no-model", "--out", out, env=env)
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/summary") for m in ms), 90, "a summary")
        fill(disk)
        time.sleep(1.5)
        broker.stop()
        away = (time.time(), None)
        time.sleep(6.0)
        away = (away[0], time.time())
        broker.start()
        late_summary = lambda ms: any(  # noqa: E731
            m.json["historical"] for m in ms if m.topic.endswith("/summary")
        )
        sub.wait_for(late_summary, 40, "a late summary")
        assert os.statvfs(disk).f_bavail == 0  # still full: they came from memory
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 74, err
    assert "Traceback" not in err, err
    made = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "summary"]
    sub.wait_for(lambda ms: len({m.json["id"] for m in ms if m.topic.endswith("/summary")})
                 >= len(made), 30, "every summary")  # fmt: skip
    got = payloads(sub, "summary")
    # Made while both were away: sent once the broker was back, once each, marked late.
    late = [p for p in got if away[0] + 1.0 < p["ts"] < away[1] - 1.0]
    assert len(late) >= 3 and all(p["historical"] for p in late)
    assert len({p["id"] for p in late}) == len(late)
    # Lost to the event store, but every one of them on the broker.
    last = err.rstrip().splitlines()[-1]
    lost = re.search(r"(\d+) records \(0 alerts\) held in memory could not be written "
                     r"before the stop, and are lost to the event store \((\d+) of them reached "
                     r"the broker\)", last)
    assert lost and int(lost[1]) == int(lost[2]) >= len(late), last


def stopped_on_a_full_disk(db: Path, out: str | Path, **extra: str):
    """The daemon, a summary a second, stopped once the disk has been full long enough for
    `systemctl status` to say so (the status is sent every 10 s): its stderr, and the
    status messages that said the disk is full."""
    systemd = NotifySocket()
    env = agent_env(db, None, EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S="1",
                    NOTIFY_SOCKET=systemd.address, **extra)  # fmt: skip
    proc = agent("run", "--source", "simulator", "--no-model", "--out", out, env=env)
    try:
        deadline = time.monotonic() + 90
        while not (db.exists() and counters(db)) and time.monotonic() < deadline:
            time.sleep(0.2)  # running: its first summary is in the store
        fill(db.parent)
        systemd.wait_for(disk_full_statuses, 30, "a status saying the disk is full")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        systemd.close()
    return proc, err, disk_full_statuses(systemd)


def test_a_daemon_stopped_while_the_disk_is_full_says_what_is_lost_and_exits_74(disk, tmp_path):
    """With no room kept in reserve ([store] reserve_mb = 0), what is held is lost."""
    db = disk / "edge-agent.db"
    proc, err, full = stopped_on_a_full_disk(db, os.devnull, EDGE_AGENT_STORE__RESERVE_MB="0")
    said = full[0]["STATUS"]
    assert re.search(r"; DISK FULL OR FAILING: \d+ records held in memory, not written$", said)
    assert proc.returncode == 74, err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("edge-agent: error: ") and "records (0 alerts) held in memory" in last
    assert "could not be written before the stop, and are lost" in last
    assert not (disk / "edge-agent.db.reserve").exists()


def test_a_daemon_stopped_while_the_disk_is_full_writes_what_it_holds_into_its_reserve(
    disk, tmp_path
):
    """The daemon keeps room beside the database ([store] reserve_mb, here 0.5 MB of the
    4 MB disk): stopped while the disk is full, it frees that room and writes every
    summary it held into the store; before, they were lost and it exited 74."""
    db, out = disk / "edge-agent.db", tmp_path / "out.jsonl"
    reserve = disk / "edge-agent.db.reserve"
    proc, err, full = stopped_on_a_full_disk(db, out, EDGE_AGENT_STORE__RESERVE_MB="0.5")
    assert full and proc.returncode == 0, err
    (held,) = [x for x in err.splitlines() if "holding the alerts" in x]
    assert f"a stop first writes them into the room kept free in {reserve}" in held
    (freed,) = [x for x in err.splitlines() if "still refuses writes at the stop" in x]
    assert f"deleted {reserve}, the 0.5 MB kept free for this, to write the " in freed
    assert "the disk takes writes again: wrote the " in err
    made = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "summary"]
    assert len(made) >= 10 and len(counters(db)) == len(made)  # every summary, stored
    assert not reserve.exists()  # the disk is still full: made again at a start with room


def test_a_replay_onto_a_full_disk_exits_74_naming_the_file(disk, tmp_path):
    rec = tmp_path / "h.npy"
    assert run("simulate", "--duration", "3", "-o", rec).exit_code == 0
    fill(disk)
    res = run("replay", rec, "--fs", "15000", "--out", disk / "ev.jsonl")
    assert res.exit_code == 74, res.output
    assert f"{disk / 'ev.jsonl'}: cannot write the records: No space left on device" in res.output
    # Publishing, the event store cannot be made there either.
    res = run("replay", rec, "--fs", "15000", "--out", os.devnull, "--mqtt", "mqtt://127.0.0.1:1",
              env={"EDGE_AGENT_STORE__PATH": str(disk / "edge-agent.db")})  # fmt: skip
    assert res.exit_code == 74, res.output
    assert f"{disk / 'edge-agent.db'}: disk full while" in res.output


def test_past_the_cap_the_oldest_summaries_are_let_go_never_an_alert(disk, monkeypatch):
    from edge_agent.config import Config
    from edge_agent.pipeline import Pipeline
    from edge_agent.publish import sink as sink_module
    from edge_agent.simulate import SimulationSpec, simulate
    from edge_agent.store import EventStore
    from edge_agent.summary import Summarizer

    monkeypatch.setattr(sink_module, "MAX_HELD", 4)
    monkeypatch.setattr(sink_module, "HOLD_RETRY_S", 0.0)
    cfg = Config().model_copy(update={"store": Config().store.model_copy(
        update={"path": disk / "edge-agent.db"})})  # fmt: skip
    x = simulate(SimulationSpec(duration_s=8.0), cfg.motor)[1]
    made = Summarizer(1.0).update(Pipeline(cfg, 15000.0).update(x))
    sink = sink_module.RecordSink(cfg, None, store=True, hold=True)
    filler = fill(disk)
    alert = {"type": "alert", "id": "held-alert", "state": "raised", "t": 0.5,
             "fault": "bearing", "severity": "alarm", "score": None, "evidence": {}}  # fmt: skip
    sink._emit([alert, *made[:6]])
    assert sink.held == 4 and sink.stats.held_dropped == 3 and sink.stats.storage_errors > 0
    os.unlink(filler)
    sink.poll()
    assert sink.held == 0
    sink.close()
    with EventStore(disk / "edge-agent.db") as db:
        assert [a["alert_id"] for a in db.alerts()] == ["held-alert"]
    # The newest three summaries, in order.
    assert counters(disk / "edge-agent.db") == [s["t_end"] for s in made[3:6]]


def test_a_daemon_started_on_a_full_disk_runs_and_opens_the_store_once_there_is_room(
    broker, make_subscriber, disk, tmp_path
):
    """A power cut with the SD card full: before, the daemon could not open its store and
    exited 74 at every start, so nothing watched the motor. Now it runs, holds what it
    makes (and sends it from memory), and opens the store once there is room. The alert
    the last run left open is cleared then, as this run has judged afresh."""
    from edge_agent.publish.outbox import Outbox
    from edge_agent.store import EventStore

    sub = make_subscriber(broker, f"{ROOT}/#")
    db, out = disk / "edge-agent.db", tmp_path / "live.jsonl"
    with EventStore(db) as store:  # the last run's, with an alert it left open
        old = {"type": "alert", "id": "left-open", "state": "raised", "t": 0.0,
               "fault": "bearing", "severity": "warning", "score": None,
               "evidence": {}}  # fmt: skip
        store.record_alert(old, site=SITE, asset=ASSET, t0=time.time() - 3600, model_id=None)
    with contextlib.closing(Outbox(db)) as outbox:  # and a message it could not deliver
        outbox.put("event", "event", {"id": "undelivered", "ts": time.time() - 3600})
    filler = fill(disk)
    systemd = NotifySocket()
    env = stator_short_env(db, broker.url, 4, NOTIFY_SOCKET=systemd.address)
    proc = agent("run", "--source", "simulator", "--no-model", "--out", out, env=env)
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/alert") for m in ms), 90, "the alert")
        assert os.statvfs(disk).f_bavail == 0  # from memory: the outbox is not open
        systemd.wait_for(disk_full_statuses, 30, "a status saying the disk is full")
        # A label cannot be kept yet: the reply says so (from memory, too).
        (raised,) = payloads(sub, "alert")
        body = {"alert_id": raised["alert_id"], "label": "true_positive", "id": "r1"}
        sub.client.publish(f"{ROOT}/cmd/label", json.dumps(body).encode(), qos=1)
        sub.wait_for(lambda ms: any(m.topic.endswith("/event") for m in ms), 30, "a reply")
        (reply,) = payloads(sub, "event")
        assert reply["request_id"] == "r1" and not reply["ok"]
        assert "the event store cannot be opened (the disk is full" in reply["error"]
        os.unlink(filler)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        systemd.close()
    assert proc.returncode == 0, err
    lines = err.splitlines()
    (started,) = [x for x in lines if "Starting without the event store" in x]
    assert " ERROR " in started and f"{db}: disk full while opening it" in started
    assert any(f"{db}: the event store and the outbox open now" in x for x in lines), err
    records = [json.loads(x) for x in out.read_text().splitlines()]
    made = [r for r in records if r["type"] == "summary"]
    (alert,) = [r for r in records if r["type"] == "alert" and r["fault"] == "stator_short"]
    with contextlib.closing(sqlite3.connect(db)) as c:
        kept = dict(c.execute("SELECT alert_id, cleared_reason FROM alerts").fetchall())
    assert kept == {"left-open": "agent restarted", alert["id"]: None}
    assert len(counters(db)) == len(made)
    sub.wait_for(lambda ms: len({m.json["id"] for m in ms if m.topic.endswith("/summary")})
                 >= len(made), 30, "every summary")  # fmt: skip
    ids = [p["id"] for p in payloads(sub, "summary")]
    assert len(ids) == len(set(ids)) == len(made)
    told = [(p["alert_id"], p["state"]) for p in payloads(sub, "alert")]
    assert told == [(alert["id"], "raised"), ("left-open", "cleared")]
    # The last run's message, sent once the outbox opened: late, and said so.
    (late,) = [p for p in payloads(sub, "event") if p["id"] == "undelivered"]
    assert late["historical"] is True


def test_a_recording_that_fills_the_disk_stops_and_the_analysis_goes_on(disk, tmp_path):
    """`run --record` onto a disk that fills 12 s into a 20 s run: the recording stops
    there, a valid .npy of every sample until then; the run analyses the whole 20 s and
    exits 74 naming the file. Before, the run ended with a traceback at the full disk, and
    the file's header said it held no rows. A disk full from the start fails before
    anything runs."""
    import numpy as np

    source = tmp_path / "motor.npy"
    assert run("simulate", "--duration", "20", "--seed", "4", "-o", source).exit_code == 0
    rec, out = disk / "rec.npy", tmp_path / "out.jsonl"
    env = {**os.environ, "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0"}
    proc = agent("run", "--source", "replay", "--recording", source, "--no-model", "--out",
                 out, "--record", rec, env=env)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 74, err
    (stopped,) = [x for x in err.splitlines() if " ERROR " in x]
    said = re.search(r"recording stopped after ([\d.]+) s \((\d+) rows\): No space left", stopped)
    assert said and stopped.endswith("; the analysis goes on"), stopped
    assert f"error: {rec}: recording stopped after " in err
    kept = np.load(rec)  # a valid .npy of the samples until the disk was full
    assert kept.shape == (int(said[2]), 3) and 11 < int(said[2]) / 15000 < 12  # 4 MB
    np.testing.assert_array_equal(kept, np.load(source)[: len(kept)])
    windows = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "window"]
    assert len(windows) == 39  # the whole 20 s analysed
    # A disk full before the check begins: said before anything runs.
    rec.unlink()
    fill(disk)
    res = run("check-wiring", "--source", "replay", "--recording", source, "--record", rec)
    assert res.exit_code == 74 and f"{rec}: cannot write: No space left on device" in res.output
    assert not rec.exists()
