"""The agent as the plant sees it over MQTT: a real Mosquitto, `edge-agent` as a process.

Publisher-level behaviour (TLS, passwords, in-flight windows) is in test_mqtt.py; these
tests run the whole agent (`replay --mqtt`, `run`) and read what a subscriber receives and
what the event store on disk holds.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent.config import MotorConfig
from edge_agent.simulate import SimulationSpec, write_recording
from edge_agent.store import EventStore
from tests.mosquitto import Mosquitto, Subscriber, retained, wait_until

SITE, ASSET = "plant1", "m7"
ROOT = f"edge-agent/{SITE}/{ASSET}"


@pytest.fixture(scope="module")
def broken_bar(tmp_path_factory) -> Path:
    """40 s of a motor whose broken bar (−40 dB) appears at 12 s: one alert, as .npy."""
    path = tmp_path_factory.mktemp("agent") / "bb.npy"
    spec = SimulationSpec(duration_s=40.0, fault="broken-bar", severity=40.0, onset_s=12.0)
    write_recording(path, spec, MotorConfig())
    return path


def agent_env(db: Path, url: str | None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "EDGE_AGENT_STORE__PATH": str(db),
            "EDGE_AGENT_OUTPUT__SITE": SITE,
            "EDGE_AGENT_OUTPUT__ASSET": ASSET,
            "EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S": "5",
            "EDGE_AGENT_MQTT__KEEPALIVE_S": "5",
            "EDGE_AGENT_MQTT__RECONNECT_MIN_S": "0.2",
            "EDGE_AGENT_MQTT__RECONNECT_MAX_S": "1",
            **extra,
        }
    )
    if url is not None:
        env["EDGE_AGENT_MQTT__URL"] = url
    return env


def agent(*args: str | Path, env: dict[str, str], **kw) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_agent", *map(str, args)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )  # fmt: skip


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def payloads(sub: Subscriber, suffix: str) -> list[dict]:
    return [m.json for m in sub.on(suffix)]


def outbox_ids(db: Path) -> list[str]:
    """Ids of the messages in the agent's outbox, in order (read as another process would)."""
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as c:
        try:
            rows = c.execute("SELECT payload FROM outbox ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # the agent has not made its outbox yet
            return []
    return [json.loads(p)["id"] for (p,) in rows]



def test_replay_publishes_every_alert_and_summary(broker, make_subscriber, broken_bar, tmp_path):
    sub = make_subscriber(broker, f"{ROOT}/#")
    db, out = tmp_path / "agent.db", tmp_path / "ev.jsonl"
    proc = agent("replay", broken_bar, "--fs", "15000", "--mqtt", broker.url, "--out", out,
                 env=agent_env(db, None))  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    records = jsonl(out)
    alerts = [r for r in records if r["type"] == "alert"]
    summaries = [r for r in records if r["type"] == "summary"]
    assert [a["fault"] for a in alerts] == ["broken_rotor_bar"]
    assert len(summaries) == 8  # 40 s in 5 s periods
    # replay waits for the broker's acknowledgements before it exits: all are there.
    got_alerts, got_summaries = payloads(sub, "alert"), payloads(sub, "summary")
    assert [(p["alert_id"], p["state"]) for p in got_alerts] == [
        (a["id"], a["state"]) for a in alerts
    ]
    assert [p["windows"] for p in got_summaries] == [s["windows"] for s in summaries]
    started = got_summaries[0]["ts"] - summaries[0]["t_end"]  # replay times count from its start
    assert abs(started - time.time()) < 600
    for p in got_alerts + got_summaries:
        assert p["schema"] == 1 and p["site"] == SITE and p["asset"] == ASSET
        assert p["historical"] is False
    assert got_alerts[0]["evidence"] == alerts[0]["evidence"]
    assert -42.0 < got_alerts[0]["evidence"]["brb_lsb_db"] < -38.0  # the −40 dB bar
    assert outbox_ids(db) == []
    assert sub.on("status") == []  # a replay does not speak for the asset's daemon
    # The event store keeps the alert and the model that raised it.
    with EventStore(db) as store:
        (kept,) = store.alerts()
        assert kept["alert_id"] == alerts[0]["id"] and kept["model_id"]
        assert store.model(kept["model_id"]) is not None


def test_a_30_s_broker_outage_loses_nothing_and_marks_the_late_messages(
    make_broker, make_subscriber, broken_bar, tmp_path
):
    broker = make_broker(persistence=True)  # the subscriber's session survives the restart
    sub = make_subscriber(broker, f"{ROOT}/#", client_id="plant-historian", persistent=True)
    db, out = tmp_path / "agent.db", tmp_path / "ev.jsonl"
    env = agent_env(db, broker.url, EDGE_AGENT_ACQUISITION__REPLAY__SPEED="0.8")
    proc = agent("run", "--source", "replay", "--recording", broken_bar, "--out", out, env=env)
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/summary") for m in ms), 60, "a summary")
        broker.stop()
        time.sleep(30.0)  # the outage; the agent keeps analysing and queueing
        queued = outbox_ids(db)
        broker.start()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert len(queued) >= 4  # summaries made while the broker was away
    records = jsonl(out)
    want = [r for r in records if r["type"] in ("alert", "summary")]
    sub.wait_for(lambda ms: len([m for m in ms if m.topic.split("/")[-1] in ("alert", "summary")])
                 >= len(want), 30, "every alert and summary")  # fmt: skip
    got = [m.json for m in sub.messages if m.topic.split("/")[-1] in ("alert", "summary")]
    ids = [p["id"] for p in got]
    assert len(set(ids)) == len(want)  # none missing (a resend may repeat an id: QoS 1)
    unique = [p for k, p in enumerate(got) if p["id"] not in ids[:k]]
    # In order: summaries by their period's end, the alert between them, as made.
    assert [p["ts"] for p in unique] == sorted(p["ts"] for p in unique)
    assert [("alert_id" in p) for p in unique] == [r["type"] == "alert" for r in want]
    late = {p["id"] for p in unique if p["historical"]}
    assert set(queued) <= late  # everything queued during the outage came late, marked
    assert not unique[0]["historical"] and not unique[-1]["historical"]


def test_after_kill_9_a_restart_delivers_what_the_outbox_held(
    make_broker, make_subscriber, broken_bar, tmp_path
):
    broker = make_broker()
    broker.stop()  # the plant's broker is away while the first agent runs
    db = tmp_path / "agent.db"
    env = agent_env(db, broker.url, EDGE_AGENT_ACQUISITION__REPLAY__SPEED="4")
    first = agent("run", "--source", "replay", "--recording", broken_bar, "--no-model",
                  "--out", tmp_path / "first.jsonl", env=env)  # fmt: skip
    try:
        wait_until(lambda: len(outbox_ids(db)) >= 3, 120, "3 queued messages")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    held = outbox_ids(db)
    assert len(held) >= 3
    broker.start()
    sub = make_subscriber(broker, f"{ROOT}/#")
    short = tmp_path / "short.npy"
    write_recording(short, SimulationSpec(duration_s=2.0), MotorConfig())
    env["EDGE_AGENT_ACQUISITION__REPLAY__SPEED"] = "0"
    second = agent("run", "--source", "replay", "--recording", short, "--no-model", env=env)
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    sub.wait_for(lambda ms: {m.json["id"] for m in ms if not m.retain} >= set(held), 30,
                 "the killed agent's messages")  # fmt: skip
    by_id = {m.json["id"]: m.json for m in sub.messages if not m.retain}
    assert all(by_id[i]["historical"] for i in held)
    assert [by_id[i]["ts"] for i in held] == sorted(by_id[i]["ts"] for i in held)
    assert outbox_ids(db) == []


def test_commands_and_the_last_will_of_a_running_agent(broker, make_subscriber, tmp_path):
    sub = make_subscriber(broker, f"{ROOT}/#")
    db = tmp_path / "agent.db"
    env = agent_env(
        db, broker.url,
        EDGE_AGENT_ACQUISITION__SIMULATOR__FAULT="broken-bar",
        EDGE_AGENT_ACQUISITION__SIMULATOR__SEVERITY="40",
        EDGE_AGENT_STORE__SNAPSHOT_S="5",
    )  # fmt: skip
    cfg = tmp_path / "motor.toml"
    cfg.write_text("[alerts]\nraise_after = 3\n")
    proc = agent("run", "--config", cfg, "--source", "simulator", "--out", tmp_path / "live.jsonl",
                 env=env)  # fmt: skip
    try:
        sub.wait_for(lambda ms: any(m.topic.endswith("/status") and m.json["state"] == "online"
                                    for m in ms), 60, "online")  # fmt: skip
        # The broken bar is raised once the 8 s long window has filled.
        sub.wait_for(lambda ms: any(m.topic.endswith("/alert") for m in ms), 60, "an alert")
        (alert,) = payloads(sub, "alert")
        assert alert["fault"] == "broken_rotor_bar" and alert["state"] == "raised"

        def command(name: str, body: bytes | dict, request_id: str) -> dict:
            data = body
            if isinstance(body, dict):
                data = json.dumps({**body, "id": request_id}).encode()
            sub.client.publish(f"{ROOT}/cmd/{name}", data, qos=1)
            if request_id:
                found = sub.wait_for(lambda ms: any(m.topic.endswith("/event")
                                     and m.json["request_id"] == request_id for m in ms),
                                     30, f"reply to {name}")  # fmt: skip
            else:
                n = len(payloads(sub, "event"))
                found = sub.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/event")])
                                     > n, 30, f"reply to {name}")  # fmt: skip
                return [m for m in found if m.topic.endswith("/event")][-1].json
            return next(m.json for m in found if m.topic.endswith("/event")
                        and m.json["request_id"] == request_id)  # fmt: skip

        reply = command("label", {"alert_id": alert["alert_id"], "label": "true_positive",
                                  "by": "j.smith"}, "r1")  # fmt: skip
        assert reply["ok"] and reply["detail"]["label"] == "true_positive"
        with EventStore(db) as store:
            assert store.alert(alert["alert_id"])["label"] == "true_positive"
        reply = command("label", {"alert_id": "no-such-alert", "label": "false_positive"}, "r2")
        assert not reply["ok"] and "no-such-alert" in reply["error"]

        reply = command("snapshot", {"seconds": 2}, "r3")
        assert reply["ok"], reply
        snap = np.load(reply["detail"]["path"])
        assert snap.shape == (30000, 3) and reply["detail"]["channels"] == ["ia", "ib", "ic"]
        assert 5.0 < float(np.sqrt(np.mean(snap[:, 0] ** 2))) < 12.0  # amperes, as received

        reply = command("reload", {}, "r4")
        assert reply["ok"] and reply["detail"]["restart_needed"] == []
        assert reply["detail"]["model"] == alert["model"]  # the same bundle, read again
        # New alert rules apply at once; a new nameplate needs a restart, and says so.
        cfg.write_text("[alerts]\nraise_after = 2\n[motor]\nrated_current = 12.0\n")
        reply = command("reload", {}, "r4b")
        assert reply["ok"] and reply["detail"]["restart_needed"] == ["motor"]
        # A broken file is refused, naming it and the field; the agent goes on.
        cfg.write_text("[alerts]\nraise_after = 0\n")
        reply = command("reload", {}, "r4c")
        assert not reply["ok"] and str(cfg) in reply["error"]
        assert "alerts.raise_after" in reply["error"]

        # Malformed and unknown commands get an error reply; the agent carries on.
        reply = command("snapshot", b"{not json", "")
        assert not reply["ok"] and "JSON" in reply["error"]
        reply = command("reboot", {}, "r5")
        assert not reply["ok"] and "label" in reply["error"]  # lists the known commands
        assert proc.poll() is None
        # The Last Will: the broker says offline when the agent dies without a goodbye.
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            status = retained(broker, f"{ROOT}/status")
            if status and status["state"] == "offline":
                break
            time.sleep(0.5)
        assert status is not None and status["state"] == "offline" and status["reason"] == "lost"
    finally:
        proc.kill()
        proc.communicate()


def test_a_clean_stop_says_offline_stopped_and_keeps_the_counters(broker, tmp_path):
    db = tmp_path / "agent.db"
    env = agent_env(db, broker.url, EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S="3")
    proc = agent("run", "--source", "simulator", "--no-model", "--out", tmp_path / "o.jsonl",
                 env=env)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    status = retained(broker, f"{ROOT}/status")
    assert status["state"] == "offline" and status["reason"] == "stopped"
    with EventStore(db) as store:
        rows = store.counters()  # one per summary: periods fall on whole 5 s of UNIX time
        assert 1 <= len(rows) <= 2
        assert sum(r["counters"]["windows"] for r in rows) == 5  # 1 s windows, 0.5 s hops, 3 s
        assert sum(r["counters"]["lost_samples"] for r in rows) == 0


def test_replay_with_the_broker_unreachable_keeps_the_messages_and_exits_75(
    broken_bar, tmp_path
):
    probe = Mosquitto(tmp_path / "gone")  # a free port with nothing listening
    db = tmp_path / "agent.db"
    proc = agent("replay", broken_bar, "--fs", "15000", "--no-model", "--mqtt", probe.url,
                 "--drain-timeout", "1", "--out", tmp_path / "o.jsonl", env=agent_env(db, None))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err
    assert "not yet acknowledged" in err and "refused" in err.lower()
    assert len(outbox_ids(db)) == 9  # one alert and eight summaries, kept for the next run


def test_the_daemon_tells_the_plant_of_a_reversed_ct_once_and_when_it_is_mended(
    broker, make_subscriber, tmp_path
):
    # A healthy motor with ib's CT turned round: a stator-short alarm before the wiring
    # checks; now one /event error that says which CT, and no alert. The motor stops for
    # 3 s and runs again, still miswired: nothing more. Then the CT is turned: one
    # /event "resolved". (No model: the default model scores a stopped motor's windows as
    # anomalous, and an anomaly alert would be raised during the stop.)
    rec = tmp_path / "reversed.npy"
    write_recording(rec, SimulationSpec(duration_s=8.0, seed=1), MotorConfig())
    right = np.load(rec)
    x = right.copy()
    x[:, 1] *= -1
    stopped = x[: (3 * 15000)] * [0.01, 0.01, 0.01]
    np.save(rec, np.concatenate([x, stopped, x[: (4 * 15000)], right]))
    sub = make_subscriber(broker, f"{ROOT}/#")
    db, out = tmp_path / "agent.db", tmp_path / "ev.jsonl"
    env = agent_env(db, broker.url, EDGE_AGENT_ACQUISITION__REPLAY__SPEED="0")
    proc = agent("run", "--source", "replay", "--recording", rec, "--no-model", "--out", out,
                 env=env)  # fmt: skip
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    sub.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/event")]) >= 2, 30,
                 "two events")  # fmt: skip
    event, mended = payloads(sub, "event")
    assert event["event"] == "error" and event["ok"] is False
    assert event["detail"] == {"source": "wiring", "check": "reversed"}
    assert "the CT of ib is reversed" in event["error"]
    assert mended["event"] == "resolved" and mended["ok"] is True
    assert mended["detail"] == event["detail"] and mended["ts"] > event["ts"]
    assert payloads(sub, "alert") == []
    # Windows (s from the start) of the miswired runs are flagged, not those of the stop
    # (no check without current) nor those after the CT was turned.
    windows = [r for r in jsonl(out) if r["type"] == "window"]
    t0 = windows[0]["t_start"]
    flagged = {round(r["t_end"] - t0, 1) for r in windows if "wiring" in r["flags"]}
    assert {1.0, 8.0, 12.0, 15.0} <= flagged
    assert not flagged & {9.5, 10.5, 17.0, 23.0}
    assert sum(p["wiring_windows"] for p in payloads(sub, "summary")) == len(flagged)
    assert err.count("wiring: reversed no longer seen") == 1


def test_two_daemons_configured_as_one_motor_tell_the_plant_and_the_installer(
    broker, make_subscriber, tmp_path
):
    # A configuration copied to a second motor, its [output] asset left as it was: each
    # daemon logs the other (where, and which process), and the plant gets an /event error
    # from each; both keep running.
    from tests.test_systemd import NotifySocket

    sub = make_subscriber(broker, f"{ROOT}/#")
    systemd = NotifySocket()  # the first daemon's, as under systemd
    procs = []
    for n in ("a", "b"):
        env = agent_env(tmp_path / f"{n}.db", broker.url)
        if n == "a":
            env["NOTIFY_SOCKET"] = systemd.address
        out = tmp_path / f"{n}.jsonl"
        procs.append(agent("run", "--source", "simulator", "--no-model", "--out", out, env=env))

    def conflicts(ms) -> list[dict]:
        return [m.json for m in ms if m.topic.endswith("/event")
                and m.json["detail"].get("check") == "asset_conflict"]  # fmt: skip

    try:
        found = sub.wait_for(lambda ms: len({e["error"] for e in conflicts(ms)}) >= 2, 120,
                             "an /event error from each daemon")  # fmt: skip
        for proc in procs:
            assert proc.poll() is None
        # `systemctl status` says so too (a status every 10 s).
        systemd.wait_for(lambda sd: any(
            "ANOTHER AGENT PUBLISHES AS THIS ASSET: edge-agent" in m["STATUS"]
            and f"on this computer (pid {procs[1].pid})" in m["STATUS"]
            for _, m in sd.having("STATUS")
        ), 30, "a status naming the other daemon")  # fmt: skip
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        errs = [proc.communicate(timeout=60)[1] for proc in procs]
        systemd.close()
    host = socket.gethostname()
    events = {e["error"]: e for e in conflicts(found)}
    for proc, other, err in ((procs[0], procs[1], errs[0]), (procs[1], procs[0], errs[1])):
        (event,) = [e for text, e in events.items() if f"(pid {other.pid})" in text]
        assert event["event"] == "error" and not event["ok"]
        assert event["detail"] == {"source": "mqtt", "check": "asset_conflict", "host": host}
        assert event["error"].startswith("mqtt: another agent publishes as this asset: edge-agent")
        assert event["error"].endswith("each motor needs its own [output] asset")
        # The installer's view, in the journal: where the other runs, and what to do.
        assert f"on this computer (pid {other.pid})" in err, err[-3000:]
        assert f"`systemctl status {other.pid}` names the other's unit" in err
        assert "Give each motor its own [output] asset" in err
        assert proc.returncode == 0, err[-3000:]


def test_systemctl_status_says_why_the_broker_is_not_reached(tmp_path):
    # The installer's first look after starting the service: not only "disconnected", but
    # why, until the broker is there.
    from tests.test_systemd import NotifySocket

    broker = Mosquitto(tmp_path / "later")  # its port, with nothing listening yet
    systemd = NotifySocket()
    env = agent_env(tmp_path / "agent.db", broker.url, NOTIFY_SOCKET=systemd.address)
    proc = agent("run", "--source", "simulator", "--no-model", "--out", os.devnull, env=env)

    def said(text: str):
        return lambda sd: any(text in m["STATUS"] for _, m in sd.having("STATUS"))

    try:
        refused = f"MQTT disconnected ({broker.url.removeprefix('mqtt://')}: connection refused "
        systemd.wait_for(said(refused + "(is the broker running there?))"), 90, "why")
        broker.start()
        systemd.wait_for(said("MQTT connected"), 30, "connected")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        systemd.close()
        broker.stop()
    assert proc.returncode == 0, err[-3000:]


def test_the_plant_hears_when_the_other_agent_is_gone(
    broker, make_subscriber, tmp_path, monkeypatch
):
    # The daemon's loop, in this process, beside another agent as its asset that is then
    # reconfigured: an /event error, then (10 minutes on, here 3 s) a "resolved" with the
    # same detail.
    from edge_agent.acquisition.sources import make_source
    from edge_agent.cli import _make_sink
    from edge_agent.config import MqttConfig, load_config
    from edge_agent.publish import mqtt
    from edge_agent.publish.mqtt import MqttPublisher
    from edge_agent.service import run as run_service

    monkeypatch.setattr(mqtt, "CONFLICT_CLEAR_S", 3.0)
    sub = make_subscriber(broker, f"{ROOT}/#")
    options = {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    cfg = load_config(overrides={
        "acquisition": {"source": "simulator", "simulator": {"duration_s": 120.0}},
        "output": {"site": SITE, "asset": ASSET}, "mqtt": options,
        "store": {"path": str(tmp_path / "agent.db")},
    })  # fmt: skip
    sink = _make_sink(cfg, io.StringIO(), None, ts_offset=0.0, daemon=True)
    sink.start()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_service, args=(cfg, make_source(cfg), sink),
        kwargs={"scorer": None, "stop": stop}, daemon=True,
    )  # fmt: skip
    worker.start()
    other = MqttPublisher(MqttConfig(**options), site=SITE, asset=ASSET, outbox=None)

    def events(ms) -> list[dict]:  # a copy sent again after a lost PUBACK left out
        return list({m.json["id"]: m.json for m in ms if m.topic.endswith("/event")}.values())

    try:
        ours = sink.publisher.instance
        sub.wait_for(lambda ms: any(s.get("instance") == ours for s in payloads(sub, "status")),
                     60, "the daemon online")  # fmt: skip
        other.start()
        found = sub.wait_for(lambda ms: len(events(ms)) >= 1, 60, "the error")
        other.stop()
        found = sub.wait_for(lambda ms: len(events(ms)) >= 2, 60, "resolved")
    finally:
        stop.set()
        worker.join(30)
        sink.close()
    error, resolved = events(found)
    detail = {"source": "mqtt", "check": "asset_conflict", "host": socket.gethostname()}
    assert (error["event"], error["detail"]) == ("error", detail)
    assert (resolved["event"], resolved["ok"], resolved["detail"]) == ("resolved", True, detail)
    assert error["error"].endswith(f"on this computer (pid {os.getpid()}); each motor needs "
                                   "its own [output] asset")  # fmt: skip


def _daemon_in_process(cfg, source, stream: io.StringIO, **kw):
    """The daemon's loop over ``source`` in a thread of this process, its records also
    in ``stream``; returns (thread, stop, sink)."""
    from edge_agent.cli import _make_sink
    from edge_agent.service import run as run_service

    sink = _make_sink(cfg, stream, None, ts_offset=0.0, daemon=True)
    sink.start()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_service, args=(cfg, source, sink),
        kwargs={"scorer": None, "stop": stop, **kw}, daemon=True,
    )  # fmt: skip
    worker.start()
    return worker, stop, sink


def _windows(stream: io.StringIO) -> list[dict]:
    lines = stream.getvalue().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "window"]


def test_window_times_follow_the_system_clock_when_ntp_sets_it(
    broker, make_subscriber, tmp_path, monkeypatch, caplog
):
    """A Raspberry Pi has no real-time clock: it boots with the time it last saved, and
    NTP sets the clock once the network is up, here 3 days forward while the daemon runs.
    Before, every window of the run kept the boot's time, 3 days behind, for as long as it
    ran. Now the windows after the step carry the right time, the journal says so, and
    the plant hears of it on /event."""
    from edge_agent import service
    from edge_agent.acquisition.sources import make_source
    from edge_agent.clock import SampleClock
    from edge_agent.config import load_config

    step = 3 * 86400.0
    late = [step]  # the boot's clock: 3 days behind until NTP sets it

    def booted(fs: float) -> SampleClock:
        return SampleClock(fs, wall=lambda: time.time() - late[0])

    monkeypatch.setattr(service, "SampleClock", booted)
    sub = make_subscriber(broker, f"{ROOT}/#")
    options = {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    cfg = load_config(overrides={
        "acquisition": {"source": "simulator", "simulator": {"duration_s": 120.0}},
        "output": {"site": SITE, "asset": ASSET, "summary_interval_s": 2.0}, "mqtt": options,
        "store": {"path": str(tmp_path / "agent.db")},
    })  # fmt: skip
    stream = io.StringIO()
    worker, stop, sink = _daemon_in_process(cfg, make_source(cfg), stream)
    try:
        wait_until(lambda: len(_windows(stream)) >= 4, 60, "windows")
        late[0] = 0.0
        set_at = time.time()
        sub.wait_for(lambda ms: any(m.json["event"] == "clock" for m in ms
                                    if m.topic.endswith("/event")), 30, "clock")  # fmt: skip
        n = len(_windows(stream))
        wait_until(lambda: len(_windows(stream)) >= n + 4, 30, "windows after")
        sub.wait_for(lambda ms: any(m.json["t_start"] > set_at - 5 for m in ms
                                    if m.topic.endswith("/summary")), 30, "a summary")  # fmt: skip
    finally:
        stop.set()
        worker.join(30)
        sink.close()
    windows = _windows(stream)
    before = [w for w in windows if w["t_end"] < set_at - step / 2]
    after = windows[len(before) :]
    assert len(before) >= 4 and len(after) >= 4
    # Until the step, the boot's clock; from it on, the right time, the step between.
    assert before[-1]["t_end"] == pytest.approx(set_at - step, abs=2.0)
    assert after[-1]["t_end"] == pytest.approx(time.time(), abs=30.0)
    assert after[0]["t_end"] - before[-1]["t_end"] == pytest.approx(step + 0.5, abs=1.0)
    assert all(b["t_end"] - a["t_end"] == pytest.approx(0.5, abs=0.05)
               for a, b in itertools.pairwise(after))  # fmt: skip
    (event,) = [m.json for m in sub.on("event") if m.json["event"] == "clock"]
    assert event["ok"] and event["error"] is None
    assert event["detail"] == {"source": "clock", "step_s": pytest.approx(step, abs=0.5)}
    said = [r.getMessage() for r in caplog.records if "system clock was set" in r.getMessage()]
    assert said == [
        "the system clock was set forward by 3.0 d (NTP, or by hand): window times follow it "
        "from here; the records before it keep the times the clock gave then"
    ]
    # The summaries go on in the periods of the right time.
    summaries = payloads(sub, "summary")
    assert summaries[-1]["ts"] == pytest.approx(time.time(), abs=30.0)


def test_an_adc_sampling_off_its_configured_rate_is_told_to_the_installer_and_the_plant(
    broker, make_subscriber, tmp_path, monkeypatch, caplog
):
    """A board sampling at 15600 a second where the config says 15000 (a wrong setting,
    or its clock 4 % fast): every frequency reads 4 % low, and a window's time would run
    4 % fast, 58 minutes a day. The daemon measures the rate against the system clock
    (here after 6 s; 30 s in service), says so in the journal, systemctl status and on
    /event, and keeps window times on the system clock."""
    from edge_agent import service
    from edge_agent.acquisition.emulator import Emulator
    from edge_agent.acquisition.sources import make_source
    from edge_agent.config import load_config
    from edge_agent.systemd import Notifier
    from tests.test_acquisition import FRAME, Pty
    from tests.test_systemd import NotifySocket

    monkeypatch.setattr(service, "RATE_CHECK_S", 6.0)
    sub = make_subscriber(broker, f"{ROOT}/#")
    pty = Pty(tmp_path / "ttyADC")
    systemd = NotifySocket()
    options = {"url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
    cfg = load_config(overrides={
        "acquisition": {
            "source": "serial", "serial": {"device": str(pty.link)},
            "scaling": {ch: {"gain": 0.001} for ch in ("ia", "ib", "ic")},
        },
        "output": {"site": SITE, "asset": ASSET}, "mqtt": options,
        "store": {"path": str(tmp_path / "agent.db")},
    })  # fmt: skip
    spec = SimulationSpec(fs=15600.0, duration_s=20.0, seed=3)
    x = simulate_counts(spec)
    emu = Emulator(pty.write, spec.fs, 3, frame_samples=FRAME)
    stream = io.StringIO()
    notifier = Notifier(environ={"NOTIFY_SOCKET": systemd.address})
    worker, stop, sink = _daemon_in_process(cfg, make_source(cfg), stream, notifier=notifier)
    player = threading.Thread(
        target=emu.play_counts, args=([x[i : i + 1500] for i in range(0, len(x), 1500)],),
        daemon=True,
    )  # fmt: skip
    try:
        wait_until(lambda: sink.publisher is not None and sink.publisher.connected, 60, "MQTT")
        t0 = time.time()
        player.start()
        found = sub.wait_for(lambda ms: any(m.topic.endswith("/event") for m in ms), 60, "event")
        systemd.wait_for(lambda sd: any("SAMPLE RATE" in m["STATUS"]
                                        for _, m in sd.having("STATUS")), 30, "status")  # fmt: skip
        player.join(30)
        wait_until(lambda: len(_windows(stream)) >= 40, 30, "the 40 windows of 20 s")
    finally:
        stop.set()
        worker.join(30)
        sink.close()
        emu.stop()
        systemd.close()
        pty.close()
    (event,) = [m.json for m in found if m.topic.endswith("/event")]
    assert event["event"] == "error"
    assert event["detail"]["source"] == "acquisition" and event["detail"]["fs"] == 15000.0
    assert event["detail"]["rate"] == pytest.approx(15600, rel=0.002)
    said = re.search(r"every frequency reads (\S+) % low \(a 50 Hz supply as (\S+) Hz\)",
                     event["error"])  # fmt: skip
    assert said is not None, event["error"]
    assert (float(said[1]), float(said[2])) == (pytest.approx(3.85, abs=0.2),
                                                pytest.approx(48.08, abs=0.1))  # fmt: skip
    status = [m["STATUS"] for _, m in systemd.having("STATUS") if "SAMPLE RATE" in m["STATUS"]]
    said = re.search(r"; SAMPLE RATE (\d+)/s BY THE SYSTEM CLOCK, NOT fs = 15000: frequencies "
                     r"read wrong", status[0])  # fmt: skip
    assert said is not None and float(said[1]) == pytest.approx(15600, rel=0.002), status[0]
    assert sum("acquisition: the source delivers" in r.getMessage() for r in caplog.records) == 1
    # The windows' times are the system clock's: from the 21st window's end (sample
    # 165000) to the last's (307500), the board took 9.13 s (142500 / 15600), where
    # counting at fs would have said 9.5 s. (The first windows may come in one burst
    # here, the board, the acquisition and the analysis sharing one process: their times
    # are those of the burst until the fit has a few seconds of arrivals. From the 11th,
    # 5.8 s in, a loaded CI machine once read 58 ms short.)
    windows = _windows(stream)
    assert not any(w["flags"] for w in windows) and len(windows) == 40
    span = windows[-1]["t_end"] - windows[20]["t_end"]
    assert span == pytest.approx(142500 / 15600, abs=0.1)
    assert windows[-1]["t_end"] - t0 == pytest.approx(307500 / 15600, abs=0.5)
    assert windows[-1]["features"]["supply_hz"] == pytest.approx(48.08, abs=0.05)


def simulate_counts(spec: SimulationSpec) -> np.ndarray:
    """The simulated currents of ``spec`` as a 3-channel ADC's int16 counts (1 mA each)."""
    from edge_agent.acquisition.emulator import to_counts
    from edge_agent.acquisition.framing import Scaling
    from edge_agent.simulate import simulate

    x = simulate(spec, MotorConfig())[1]
    return to_counts(x, Scaling(offset=np.zeros(3), gain=np.full(3, 0.001)))[0]
