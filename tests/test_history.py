"""The alerts a person reads on the machine: the daemon's log, `edge-agent alerts` and
`edge-agent label` on the real SQLite event store."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_agent import history
from edge_agent.cli import main
from edge_agent.config import AlertConfig, Config, MotorConfig
from edge_agent.diagnosis import AlertTracker, describe_alert, diagnose
from edge_agent.simulate import SimulationSpec, simulate
from edge_agent.store import EventStore

NOBODY = 65534


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> tuple[Path, list[str]]:
    """`run` over 12 s of a broken bar (-45 dB) and then 24 s of the healthy motor, with
    its event store; returns the store and the daemon's log lines (its journal)."""
    folder = tmp_path_factory.mktemp("daemon")
    motor = MotorConfig()
    _, faulty = simulate(SimulationSpec(duration_s=12.0, fault="broken-bar", severity=45.0), motor)
    _, healthy = simulate(SimulationSpec(duration_s=24.0), motor)
    np.save(folder / "bb-then-healthy.npy", np.concatenate([faulty, healthy]))
    store = folder / "edge-agent.db"
    env = {**os.environ, "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0",
           "EDGE_AGENT_STORE__PATH": str(store)}  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--source", "replay", "--recording",
         str(folder / "bb-then-healthy.npy"), "--no-model", "--out", str(folder / "run.jsonl")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return store, res.stderr.splitlines()


# --- the daemon's log -------------------------------------------------------------------


def test_the_daemon_logs_each_alert_with_what_its_evidence_says(daemon):
    _, lines = daemon
    raised = [line for line in lines if "alert raised" in line]
    cleared = [line for line in lines if "alert cleared" in line]
    assert len(raised) == 1 and len(cleared) == 1, lines
    assert " WARNING " in raised[0] and " INFO " in cleared[0]
    assert "alert raised: broken_rotor_bar watch: lower sideband -45." in raised[0]
    assert "re the fundamental; slip 0.0" in raised[0]
    assert "alert cleared: broken_rotor_bar watch: the windows read normal again" in cleared[0]
    # Both name the same alert, by the id the store and MQTT know it by.
    ident = raised[0].rsplit("(id ", 1)[1].rstrip(")")
    assert cleared[0].endswith(f"(id {ident})")


def test_an_alert_a_stopped_daemon_left_open_is_carried_on_and_cleared_once_read_normal(
    tmp_path,
):
    store = tmp_path / "edge-agent.db"
    with EventStore(store) as db:
        for ident, fault in [
            ("0b9e7f52-left", "broken_rotor_bar"),
            ("5d1c-anomaly", "anomaly"),
            ("77ae-bearing", "bearing"),
        ]:
            db.record_alert(
                {"id": ident, "state": "raised", "t": time.time() - 60, "fault": fault,
                 "severity": "alarm", "score": None, "evidence": {}},
                site="site", asset="motor", t0=0.0, model_id=None,
            )  # fmt: skip
    rec = tmp_path / "healthy.npy"
    np.save(rec, simulate(SimulationSpec(duration_s=30.0), MotorConfig())[1])
    env = {**os.environ, "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0",
           "EDGE_AGENT_STORE__PATH": str(store)}  # fmt: skip
    res = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--source", "replay", "--recording",
         str(rec), "--no-model", "--out", os.devnull],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    said = [line for line in res.stderr.splitlines() if "0b9e7f52-left" in line]
    # Carried on under its id at the start, not cleared for the restart; cleared by the
    # windows of the long window once it has filled (8 s) and read normal five times.
    assert len(said) == 2, res.stderr
    assert "alert still open from the last run: broken_rotor_bar alarm, raised " in said[0]
    assert (
        "alert cleared: broken_rotor_bar alarm: the windows read normal again "
        "(id 0b9e7f52-left)" in said[1]
    )
    # Faults this run cannot judge (no model: no score, no healthy line levels) are cleared
    # at the start, saying why, rather than as if their windows had read normal.
    cleared = [line for line in res.stderr.splitlines() if "alert cleared" in line]
    assert "alert cleared: anomaly alarm: not judged in this run: no model loaded" in cleared[0]
    assert (
        "alert cleared: bearing alarm: not judged in this run: no bearing geometry" in (cleared[1])
    )
    with EventStore(store) as db:
        alerts = {a["alert_id"]: a for a in db.alerts()}
    assert all(a["cleared_ts"] is not None for a in alerts.values())
    assert alerts["5d1c-anomaly"]["cleared_ts"] < alerts["0b9e7f52-left"]["cleared_ts"] - 8
    # `edge-agent alerts` says why each ended, but for the usual end.
    listing = cli("alerts", "--store", store).output.splitlines()
    assert [x.strip() for x in listing if x.startswith("    cleared: ")] == [
        "cleared: not judged in this run: no bearing geometry ([motor.bearing])",
        "cleared: not judged in this run: no model loaded",
    ]
    whole = cli("alerts", "0b9e7f52", "--store", store).output
    assert re.search(r"\ncleared +20\S+ \S+: the windows read normal again\n", whole), whole


# --- what an alert says -----------------------------------------------------------------

CFG = AlertConfig()


def said(features, **kwargs) -> dict[str, str]:
    return {
        fault: describe_alert(fault, f.evidence)
        for fault, f in diagnose(features, cfg=CFG, **kwargs).items()
    }


def test_each_fault_says_what_it_saw_in_one_line():
    brb = said({"brb_lsb_db": -40.04, "brb_usb_db": -41.26, "brb_prominence_db": 25.0,
                "slip": 0.0321, "supply_hz": 50.0}, score=None, threshold=None)  # fmt: skip
    assert brb == {"broken_rotor_bar": "lower sideband -40.0 dB, upper -41.3 dB re the "
                   "fundamental; slip 0.032"}  # fmt: skip
    supply = said({"v2_v1": 0.031, "i2_i1": 0.19, "i1": 8.0, "i2": 1.5}, score=None,
                  threshold=None, rated_current=10.0)  # fmt: skip
    assert supply == {"supply_unbalance": "voltage unbalance v2/v1 3.1 %; current i2/i1 0.190"}
    # The stator rule's three ways of taking the supply's share out: each says which.
    with_v = said({"v2_v1": 0.01, "i2_i1": 0.35, "i1": 8.0, "i2": 2.8}, score=None,
                  threshold=None, rated_current=10.0)  # fmt: skip
    assert with_v["stator_short"] == (
        "i2/i1 0.350, of which the supply's unbalance (1.0 %) explains 0.075; i1 8 A"
    )
    no_v = said({"i2_i1": 0.12, "i1": 8.0, "i2": 0.96}, score=None, threshold=None,
                rated_current=10.0)  # fmt: skip
    assert no_v["stator_short"] == "i2/i1 0.120 (no voltages and no model of this motor); i1 8 A"
    model = said({"i2_i1": 0.12, "i1": 8.0, "i2": 0.96}, score=None, threshold=None,
                 rated_current=10.0, negative_sequence=0.2)  # fmt: skip
    assert model["stator_short"] == (
        "i2 0.96 A against a healthy 0.2 A: a rise of 0.095 of i1; i1 8 A"
    )
    line = said({"ecc_lsb_db": -40.0, "ecc_lsb_floor_db": -70.0, "supply_hz": 50.0},
                score=None, threshold=None, baseline={"ecc_lsb_db": -52.5})  # fmt: skip
    assert line == {"eccentricity": "ecc_lsb_db -40.0 dB, 12.5 dB over its healthy -52.5 dB"}
    furthest = [
        {"feature": "i2_i1", "value": 0.105, "healthy_mean": 0.031, "deviation": 12.6},
        {"feature": "rms_a", "value": 4.9, "healthy_mean": 4.5, "deviation": -6.7},
    ]
    anomaly = said({}, score=3.2, threshold=1.1, furthest=furthest)
    assert anomaly == {"anomaly": "score 3.2 over the threshold 1.1; furthest from healthy (in "
                       "healthy spreads): i2_i1 +12.6, rms_a -6.7"}  # fmt: skip


def test_an_escalated_alert_names_the_one_it_replaces():
    tracker = AlertTracker(raise_after=1)
    brb = {"brb_lsb_db": -45.0, "brb_prominence_db": 25.0}
    (first,) = tracker.update(0.0, diagnose(brb, None, None, CFG), None)
    worse = diagnose({**brb, "brb_lsb_db": -35.0}, None, None, CFG)
    _, successor = tracker.update(1.0, worse, None)
    text = describe_alert("broken_rotor_bar", successor["evidence"])
    assert text.endswith(f"; escalated from watch (alert {first['id']})")


def test_evidence_an_older_version_wrote_still_reads():
    # Alerts in a store outlive versions: missing or null entries say less, never fail.
    assert describe_alert("stator_short", {"i2_i1": 0.2, "v2_v1": None}) == (
        "i2/i1 0.200 (no voltages and no model of this motor)"
    )
    assert describe_alert("bearing", {}) == ""
    assert describe_alert("anomaly", {"score": 2.0, "threshold": 1.0}) == (
        "score 2 over the threshold 1"
    )


# --- edge-agent alerts and edge-agent label ---------------------------------------------


def test_alerts_lists_what_the_daemon_raised_and_label_marks_it(daemon, tmp_path):
    store, _ = daemon
    res = cli("alerts", "--store", store)
    assert res.exit_code == 0, res.output
    head, blank, row, evidence = res.output.splitlines()
    assert blank == ""
    assert head.startswith(f"{store}: 1 alert of site/motor, 0 open; times in ")
    assert "broken_rotor_bar watch" in row and "cleared after " in row
    assert row.split()[-2:-1] == ["unlabelled"]
    ident = row.split()[-1]
    assert evidence.startswith("    lower sideband -45.")

    res = cli("label", ident[:8], "true_positive", "--by", "ana", "--note", "bar cracked",
              "--store", store)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"{ident} (broken_rotor_bar watch, raised 20")
    assert res.output.rstrip().endswith("labelled true_positive")
    # Kept where the MQTT label command keeps it.
    with EventStore(store) as db:
        kept = db.alert(ident)
    assert (kept["label"], kept["labelled_by"], kept["label_note"]) == (
        "true_positive", "ana", "bar cracked"
    )  # fmt: skip
    assert "true_positive" in cli("alerts", "--store", store).output

    whole = cli("alerts", ident[:6], "--store", store).output
    assert f"id       {ident}" in whole
    assert "label    true_positive by ana at 20" in whole and "note     bar cracked" in whole
    assert json.loads(whole.split("evidence:\n", 1)[1])["consecutive_windows"] == 3

    (line,) = cli("alerts", "--json", "--store", store).output.splitlines()
    assert json.loads(line)["alert_id"] == ident and json.loads(line)["label"] == "true_positive"


@pytest.fixture
def store3(tmp_path) -> Path:
    """A store with three alerts: a bearing alarm raised 3 days ago and still open, a
    broken bar of 2 hours ago cleared, and an anomaly of 10 minutes ago still open."""
    path = tmp_path / "edge-agent.db"
    now = time.time()
    alerts = [
        ("aaaa1111-bearing", now - 3 * 86400, "bearing", "alarm", None),
        ("aaaa2222-brb", now - 7200, "broken_rotor_bar", "warning", now - 3600),
        ("bbbb3333-anomaly", now - 600, "anomaly", "watch", None),
    ]
    with EventStore(path) as db:
        for ident, t, fault, severity, cleared in alerts:
            rec = {"id": ident, "state": "raised", "t": t, "fault": fault,
                   "severity": severity, "score": None, "evidence": {}}  # fmt: skip
            db.record_alert(rec, site="s", asset="m", t0=0.0, model_id=None)
            if cleared is not None:
                rec = {**rec, "state": "cleared", "t": cleared}
                db.record_alert(rec, site="s", asset="m", t0=0.0, model_id=None)
    return path


def ids(output: str) -> list[str]:
    return [line.split()[-1] for line in output.splitlines()[2:] if not line.startswith(" ")]


def test_alerts_filters_by_state_fault_age_and_count(store3):
    everything = cli("alerts", "--store", store3).output
    assert everything.startswith(f"{store3}: 3 alerts of s/m, 2 open")
    assert ids(everything) == ["bbbb3333-anomaly", "aaaa2222-brb", "aaaa1111-bearing"]
    assert "open for 3.0 d" in everything and "cleared after 60 min" in everything
    assert ids(cli("alerts", "--open", "--store", store3).output) == [
        "bbbb3333-anomaly", "aaaa1111-bearing"
    ]  # fmt: skip
    assert ids(cli("alerts", "--fault", "bearing", "--store", store3).output) == [
        "aaaa1111-bearing"
    ]
    assert ids(cli("alerts", "--since", "1d", "--store", store3).output) == [
        "bbbb3333-anomaly", "aaaa2222-brb"
    ]  # fmt: skip
    limited = cli("alerts", "--limit", "1", "--store", store3).output
    assert limited.startswith(f"{store3}: 1 alert (the newest) of s/m, 1 open")
    assert cli("alerts", "--since", "2099-01-01", "--store", store3).output == (
        f"{store3}: 0 alerts, 0 open\n"
    )


def test_an_id_must_name_one_alert(store3):
    res = cli("alerts", "aaaa", "--store", store3)
    assert res.exit_code == 65
    assert "alert id 'aaaa' fits 2 alerts (aaaa2222-brb, aaaa1111-bearing): give more" in res.output
    res = cli("label", "cccc", "false_positive", "--store", store3)
    assert res.exit_code == 65 and f"{store3}: no alert has an id starting 'cccc'" in res.output
    res = cli("label", "aa", "false_positive", "--store", store3)
    assert res.exit_code == 65 and "give at least its first 4 characters" in res.output
    assert cli("label", "AAAA1111", "false_positive", "--store", store3).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alerts", "--since", "yesterday"], "expected an age such as 30m, 12h, 7d or 2w"),
        (["alerts", "--fault", "overheating"], "'overheating' is not one of anomaly, "),
        (["label", "aaaa1111", "maybe"], "'maybe' is not one of 'true_positive'"),
        (["label", "aaaa1111", "true_positive", "--by", "x" * 201], "at most 200 characters"),
    ],
)
def test_a_wrong_option_is_a_usage_error_that_says_what_was_expected(store3, args, message):
    res = cli(*args, "--store", store3)
    assert res.exit_code == 2 and message in res.output, res.output
    with EventStore(store3) as db:
        assert db.alert("aaaa1111-bearing")["label"] is None  # nothing written


def test_a_missing_or_broken_store_is_a_clear_error(tmp_path):
    res = cli("alerts", "--store", tmp_path / "none.db")
    assert res.exit_code == 66
    assert f"no event store at {tmp_path / 'none.db'}: `edge-agent run` makes one" in res.output
    assert not (tmp_path / "none.db").exists()  # looking made none
    (tmp_path / "notes.db").write_text("not a database\n" * 100)
    res = cli("alerts", "--store", tmp_path / "notes.db")
    assert res.exit_code == 65 and "not a usable SQLite database" in res.output


def test_without_store_given_the_services_store_is_read(store3, tmp_path, monkeypatch):
    monkeypatch.setattr(history, "SERVICE_STATE", tmp_path / "var-lib")
    service = tmp_path / "var-lib" / "edge-agent" / "edge-agent.db"
    service.parent.mkdir(parents=True)
    shutil.copy(store3, service)
    assert history.locate_stores(Config()) == [service]
    # The config's [store] path, and the service's own $STATE_DIRECTORY, come first.
    mine = tmp_path / "mine.db"
    EventStore(mine).close()
    assert history.locate_stores(Config(store={"path": mine})) == [mine]
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    with pytest.raises(history.InputMissingError, match=str(tmp_path / "state" / "edge-agent")):
        history.locate_stores(Config())
    # Neither there: both places are named.
    monkeypatch.delenv("STATE_DIRECTORY")
    service.unlink()
    looked = (
        r"no event store at .*/var-lib/edge-agent/edge-agent.db or "
        r".*/var-lib/edge-agent-NAME/edge-agent.db or .*/edge-agent.db: "
    )
    with pytest.raises(history.InputMissingError, match=looked):
        history.locate_stores(Config())


def service_store(state: Path, unit: str, motor: str, alerts: list[tuple[str, float]]) -> Path:
    """The store a unit left in ``state`` (its StateDirectory's parent): the summaries of
    ``motor`` (site "plant") over the last two days, 10 minutes apart, and its alerts
    (id, hours ago; open)."""
    path = state / unit / "edge-agent.db"
    path.parent.mkdir(parents=True)
    now = time.time()
    with EventStore(path) as db:
        for k in range(2 * 144):
            db.add_trend("plant", motor, now - 2 * DAY + 600 * k, {"windows": 120, "i1": 5.0})
        for ident, hours in alerts:
            rec = {"id": ident, "state": "raised", "t": now - hours * 3600, "fault": "bearing",
                   "severity": "watch", "score": None, "evidence": {}}  # fmt: skip
            db.record_alert(rec, site="plant", asset=motor, t0=0.0, model_id=None)
    return path


def test_the_stores_of_several_motors_services_are_read_as_one(tmp_path, monkeypatch):
    """Several motors on one computer, each its own edge-agent@NAME.service and store
    (/var/lib/edge-agent-NAME): `alerts`, `label` and `trend` read them all unasked, as the
    store of one daemon that watched them all, and --asset picks one motor."""
    state = tmp_path / "var-lib"
    monkeypatch.setattr(history, "SERVICE_STATE", state)
    pump = service_store(state, "edge-agent-pump-1", "pump-1", [("aaaa-pump", 5), ("cccc-pump", 1)])
    fan = service_store(state, "edge-agent-fan-2", "fan-2", [("bbbb-fan", 3)])
    (state / "edge-agent-spare").mkdir()  # a unit that never started: no store
    (state / "other").mkdir()
    assert history.locate_stores(Config()) == [fan, pump]
    listed = cli("alerts").output.splitlines()
    assert listed[0].startswith(f"{fan}, {pump}: 3 alerts, 3 open (2 motors)"), listed
    assert ids("\n".join(listed)) == ["cccc-pump", "bbbb-fan", "aaaa-pump"]  # newest first
    assert [line.split()[2] for line in listed[2:]] == [
        "plant/pump-1",
        "plant/fan-2",
        "plant/pump-1",
    ]
    assert ids(cli("alerts", "--asset", "pump-1").output) == ["cccc-pump", "aaaa-pump"]
    assert ids(cli("alerts", "--limit", "1").output) == ["cccc-pump"]
    # An alert by its id, in whichever store holds it; a label goes to that store.
    assert re.search(r"^motor +plant/fan-2$", cli("alerts", "bbbb").output, re.M)
    res = cli("label", "bbbb", "true_positive", "--by", "ana")
    assert res.exit_code == 0 and res.output.startswith("bbbb-fan (bearing watch, raised")
    with EventStore(fan) as db:
        assert db.alert("bbbb-fan")["label"] == "true_positive"
    res = cli("alerts", "zzzz")
    assert (
        res.exit_code == 65 and f"{fan}, {pump}: no alert has an id starting 'zzzz'" in res.output
    )
    # A table per motor, each naming its store.
    heads = [line for line in cli("trend", "i1").output.splitlines() if "spans of" in line]
    assert [re.sub(r": \d+ spans of summaries of ", " ", h.split(",")[0]) for h in heads] == [
        f"{fan} plant/fan-2",
        f"{pump} plant/pump-1",
    ]
    assert re.match(f"{re.escape(str(pump))}: \\d+ spans", cli("trend", "--asset", "pump-1").output)
    spans = [json.loads(line) for line in cli("trend", "i1", "--json").output.splitlines()]
    assert {(s["asset"], s["store"]) for s in spans} == {("fan-2", str(fan)), ("pump-1", str(pump))}
    res = cli("trend", "--asset", "mill")
    assert res.exit_code == 65
    assert "no motor named 'mill'; it holds plant/fan-2, plant/pump-1" in res.output
    # The single unit's store is read beside them. Here it is a copy of the fan's (as if
    # its store had been copied when the fan moved to edge-agent@fan-2): a table of each,
    # and an alert in both is named by its store.
    old = state / "edge-agent" / "edge-agent.db"
    old.parent.mkdir()
    shutil.copy(fan, old)
    res = cli("alerts", "bbbb")
    assert res.exit_code == 65
    assert f"alert bbbb-fan is in 2 stores ({old}, {fan}): name one with --store" in res.output
    assert cli("label", "bbbb", "false_positive", "--store", old).exit_code == 0
    heads = [
        line for line in cli("trend", "--asset", "fan-2").output.splitlines() if "spans" in line
    ]
    assert [h.split(":")[0] for h in heads] == [str(old), str(fan)]


def as_nobody(fn) -> int:
    """Run ``fn`` in a forked child as 'nobody'; its exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 3
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def open_tmp():
    """A temporary folder that other users may enter (pytest's own are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="edge-agent-history-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_the_services_store_is_for_root_and_root_leaves_it_the_services(
    open_tmp, store3, monkeypatch
):
    tmp_path = open_tmp
    # As under systemd's DynamicUser: the store's folder is the service user's, mode 700.
    folder = tmp_path / "private"
    folder.mkdir(mode=0o700)
    db = folder / "edge-agent.db"
    db.write_bytes(store3.read_bytes())
    os.chown(folder, NOBODY, NOBODY)
    os.chown(db, NOBODY, NOBODY)
    # Another user may not see it: told to use sudo.
    private = tmp_path / "root-only"
    private.mkdir(mode=0o700)
    (private / "edge-agent.db").write_bytes(store3.read_bytes())

    def denied() -> int:
        res = CliRunner().invoke(main, ["alerts", "--store", str(private / "edge-agent.db")])
        return 0 if res.exit_code == 77 and "run this with sudo" in res.output else 2

    assert as_nobody(denied) == 0
    # Unasked too, when a motor's service keeps its store there (edge-agent@NAME).
    monkeypatch.setattr(history, "SERVICE_STATE", tmp_path)
    (tmp_path / "edge-agent-pump").symlink_to(private)

    def denied_unasked() -> int:
        res = CliRunner().invoke(main, ["alerts"])
        return 0 if res.exit_code == 77 and "run this with sudo" in res.output else 2

    assert as_nobody(denied_unasked) == 0
    # Root labels it; every file SQLite leaves is still the service user's.
    assert cli("label", "bbbb3333", "false_positive", "--store", db).exit_code == 0
    owners = {p.name: p.stat().st_uid for p in folder.iterdir()}
    assert "edge-agent.db" in owners and set(owners.values()) == {NOBODY}, owners

    def reads() -> int:
        with EventStore(db) as store:
            return 0 if store.alert("bbbb3333-anomaly")["label"] == "false_positive" else 2

    assert as_nobody(reads) == 0


# --- edge-agent trend -------------------------------------------------------------------


def test_summaries_carry_the_diagnosis_lines_and_the_daemon_keeps_them_by_the_hour(daemon):
    store, _ = daemon
    records = [json.loads(line) for line in (store.parent / "run.jsonl").read_text().splitlines()]
    windows = [r["features"] for r in records if r["type"] == "window"]
    summaries = [r for r in records if r["type"] == "summary"]
    # The 36 s run makes one or two minutes' summaries (live times: it depends on the
    # second it started). Each has the mean of its windows' broken-bar sideband: -45 dB
    # while faulty, lower once the healthy motor has filled the long window; none in a
    # first minute that ended before the long window first filled (8 s).
    assert len(summaries) in (1, 2) and sum(s["windows"] for s in summaries) == len(windows)
    brb = [w["brb_lsb_db"] for w in windows if w["brb_lsb_db"] is not None]
    assert min(brb) < -60.0 and max(brb) == pytest.approx(-45.0, abs=0.5)
    with_brb = [s for s in summaries if s["brb_lsb_db"] is not None]
    assert with_brb and (with_brb == summaries or summaries[0]["windows"] <= 14)
    for s in with_brb:  # (a mean of equal values may differ from them by rounding)
        assert min(brb) - 1e-9 <= s["brb_lsb_db"] <= max(brb) + 1e-9
    # The store keeps what the summaries said, hour by hour; trend gives it back: each
    # hour's sideband, the mean of its summaries' that have one.
    res = cli("trend", "--store", store, "--every", "1h", "--json")
    spans = [json.loads(line) for line in res.output.splitlines()]
    assert sum(s["windows"] for s in spans) == len(windows)
    assert sum(s["summaries"] for s in spans) == len(summaries)
    for span in spans:
        mine = [
            s["brb_lsb_db"]
            for s in with_brb
            if history.span_start(s["t_start"], 3600.0) == span["start"]
        ]
        want = sum(mine) / len(mine) if mine else None
        assert span["brb_lsb_db"] == pytest.approx(want, rel=1e-12)
    # Without voltages or a model, those columns are left out.
    assert all("v2_v1" not in s and "score_p95" not in s and "i1" in s for s in spans)


DAY = 86400.0


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC: days of 24 hours whatever the machine's zone and the date."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def weeks(tmp_path, utc) -> Path:
    """Three weeks of summaries, one every 10 minutes, of a broken bar growing 1 dB a day
    from -60 dB, up to midnight (local time, UTC) last night; the motor never stopped, ran
    outside the model's baseline for an hour the day before yesterday, and with its speed
    changing for an hour the day before that."""
    path = tmp_path / "edge-agent.db"
    t = time.localtime()
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    with EventStore(path) as db:
        for day in range(21):
            start = midnight - (21 - day) * DAY
            for k in range(144):
                db.add_trend("site", "motor", start + 600 * k, {
                    "windows": 1200, "anomalous_windows": 1 if k == 0 else 0,
                    "i1": 8.0, "brb_lsb_db": -60.0 + day, "score_max": 0.1 * day,
                    "i2_i1": None, "slip": float("nan"), "stopped_windows": 0,
                    "outside_baseline_windows": 120 if day == 19 and k < 6 else 0,
                    "unsteady_windows": 300 if day == 18 and k < 6 else 0,
                    "ramping_windows": 0,
                })  # fmt: skip
    return path


def test_trend_shows_a_fault_growing_day_by_day(weeks):
    res = cli("trend", "--store", weeks, "--since", "7d")
    assert res.exit_code == 0, res.output
    head, _, columns, *rows = res.output.splitlines()
    assert head.startswith(f"{weeks}: 7 spans of summaries of site/motor, oldest first")
    # The windows not judged as the others are shown when there were any.
    assert columns.split() == ["from", "windows", "i1", "brb_lsb_db", "anomalous_windows",
                               "outside_baseline_windows", "unsteady_windows"]  # fmt: skip
    assert [row.split()[3] for row in rows] == [f"{x:.1f}" for x in range(-46, -39)]
    assert {row.split()[1] for row in rows} == {str(144 * 1200)}
    assert {row.split()[4] for row in rows} == {"1"}
    assert [row.split()[5] for row in rows] == ["0"] * 5 + ["720", "0"]
    assert [row.split()[6] for row in rows] == ["0"] * 4 + ["1800", "0", "0"]
    # By week (Monday to Monday), a chosen column, and the greatest of a *_max field.
    weekly = [json.loads(line) for line in
              cli("trend", "brb_lsb_db", "score_max", "--every", "1w", "--since", "30d",
                  "--json", "--store", weeks).output.splitlines()]  # fmt: skip
    assert sum(w["summaries"] for w in weekly) == 21 * 144
    assert [time.localtime(w["start"]).tm_wday for w in weekly] == [0] * len(weekly)
    assert weekly[-1]["score_max"] == pytest.approx(2.0)
    # Yesterday (a local date), by 6 hours.
    yesterday = time.strftime("%Y-%m-%d", time.localtime(time.time() - DAY))
    hourly = cli("trend", "--every", "6h", "--since", yesterday, "--store", weeks).output
    assert hourly.splitlines()[0].startswith(f"{weeks}: 4 spans")
    assert [line.split()[1] for line in hourly.splitlines()[3:]] == [
        "00:00", "06:00", "12:00", "18:00"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["brb_db"], "brb_db: not kept in the trend; it keeps windows, "),
        (["--every", "5h"], "expected 1h, 2h, 3h, 4h, 6h, 8h, 12h, 1d or 1w"),
        (["--since", "last week"], "expected an age such as 30m"),
    ],
)
def test_trend_says_what_it_expected(weeks, args, message):
    res = cli("trend", *args, "--store", weeks)
    assert res.exit_code == 2 and message in res.output, res.output


def test_spans_follow_the_local_clock_across_a_daylight_saving_change(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        # 2026-03-29: clocks go from 02:00 to 03:00, a day of 23 hours.
        day = time.mktime((2026, 3, 29, 0, 0, 0, 0, 0, -1))
        hours = [{"hour": day + 3600 * h, "summaries": 1, "stats": {"windows": [1, 1, 1, 1]}}
                 for h in range(-1, 25)]  # fmt: skip
        days = history.trend_rows(hours, DAY, [])
        assert [time.strftime("%d %H:%M", time.localtime(d["start"])) for d in days] == [
            "28 00:00", "29 00:00", "30 00:00"
        ]  # fmt: skip
        assert [d["windows"] for d in days] == [1, 23, 2]
        weeks = history.trend_rows(hours, 7 * DAY, [])
        assert [time.strftime("%a %d", time.localtime(w["start"])) for w in weeks] == [
            "Mon 23", "Mon 30"
        ]  # fmt: skip
    finally:
        monkeypatch.undo()
        time.tzset()


def test_old_hours_of_trend_go_with_the_retention(weeks):
    t = time.localtime()
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    with EventStore(weeks) as db:
        deleted = db.prune(retention_days=7.0, max_mb=256.0, now=midnight)
        assert deleted["trend_by_age"] == 14 * 24
        assert len(db.trend()) == 7 * 24


def test_a_store_of_two_motors_never_mixes_them(weeks):
    """A store holds every motor its daemon watched under a name: the Pi moved to another
    motor in the cabinet, or [output] asset renamed. Their summaries are never averaged
    together, and --asset picks one (its asset alone, or SITE/ASSET)."""
    t = time.localtime()
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    with EventStore(weeks) as db:  # a fan, 2 A, healthy, watched the last 3 days
        for k in range(3 * 144):
            db.add_trend("site", "fan-2", midnight - 3 * DAY + 600 * k,
                         {"windows": 1200, "i1": 2.0, "brb_lsb_db": -70.0})  # fmt: skip
        for ident, asset, t0 in (("aaaa-motor", "motor", 5), ("bbbb-fan", "fan-2", 1)):
            rec = {"id": ident, "state": "raised", "t": midnight - t0 * 3600, "fault": "bearing",
                   "severity": "watch", "score": None, "evidence": {}}  # fmt: skip
            db.record_alert(rec, site="site", asset=asset, t0=0.0, model_id=None)
    both = cli("trend", "--since", "2d", "--store", weeks)
    assert both.exit_code == 0, both.output
    fan, motor = re.split(f"\n(?={re.escape(str(weeks))})", both.output)  # in name order
    assert fan.startswith(f"{weeks}: 2 spans of summaries of site/fan-2, oldest first")
    assert motor.startswith(f"{weeks}: 2 spans of summaries of site/motor, oldest first")
    assert [r.split()[2:4] for r in fan.splitlines()[3:]] == [["2", "-70.0"]] * 2
    assert [r.split()[2:4] for r in motor.splitlines()[3:]] == [["8", "-41.0"], ["8", "-40.0"]]
    for name in ("fan-2", "site/fan-2"):
        one = cli("trend", "--since", "2d", "--asset", name, "--store", weeks).output
        assert one == fan
    out = cli("trend", "i1", "--since", "2d", "--json", "--store", weeks).output
    spans = [json.loads(line) for line in out.splitlines()]
    assert [(s["asset"], s["i1"]) for s in spans] == [("fan-2", 2.0)] * 2 + [("motor", 8.0)] * 2
    assert {s["site"] for s in spans} == {"site"}
    # Alerts of several motors name theirs; --asset keeps one motor's.
    listed = cli("alerts", "--store", weeks).output.splitlines()
    assert listed[0].startswith(f"{weeks}: 2 alerts, 2 open (2 motors)")
    assert [line.split()[2] for line in listed[2:]] == ["site/fan-2", "site/motor"]
    only = cli("alerts", "--asset", "motor", "--store", weeks).output
    assert only.startswith(f"{weeks}: 1 alert of site/motor, 1 open") and "aaaa-motor" in only
    # A name the store does not hold says which it does.
    res = cli("trend", "--asset", "pump", "--store", weeks)
    assert res.exit_code == 65
    assert f"{weeks}: no motor named 'pump'; it holds site/fan-2, site/motor" in res.output


def test_an_asset_of_two_sites_needs_its_site(tmp_path):
    path = tmp_path / "edge-agent.db"
    with EventStore(path) as db:
        for site in ("north", "south"):
            db.register_asset(site, "pump", {})
    res = cli("alerts", "--asset", "pump", "--store", path)
    assert res.exit_code == 65
    assert "--asset 'pump' fits north/pump, south/pump: give SITE/ASSET" in res.output
    res = cli("alerts", "--asset", "south/pump", "--store", path)
    assert res.exit_code == 0 and res.output == f"{path}: 0 alerts, 0 open\n"
    res = cli("trend", "--asset", "south/pump", "--store", path)
    assert res.output == f"{path}: 0 spans of summaries of south/pump\n"
