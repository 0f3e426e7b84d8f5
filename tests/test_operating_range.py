"""The model's operating range: a motor running at a lighter load, or at another supply
frequency, than the healthy windows its model learnt raises no anomaly alert there
(``Scorer.outside``); a heavier load, as a fault can draw, is still judged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.config import Config
from edge_agent.errors import InputDataError
from edge_agent.pipeline import Pipeline
from edge_agent.scoring import Scorer
from edge_agent.service import INSIDE_AGAIN, OUTSIDE_FOR, BaselineWatch
from edge_agent.simulate import SimulationSpec, simulate, write_recording
from edge_agent.summary import Summarizer

FS = 5000.0
LOADS = (0.7, 0.8, 0.9)  # of the training runs: a pump that has only run at 70-90 %


def run(*args: object) -> tuple[int, str]:
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A model trained with `edge-agent train` on three healthy runs at 70-90 % load, and
    what train said."""
    d = tmp_path_factory.mktemp("narrow")
    files = []
    for i, load in enumerate(LOADS):
        files.append(d / f"healthy{i}.npy")
        spec = SimulationSpec(fs=FS, duration_s=12.0, load=load, seed=10 + i)
        write_recording(files[-1], spec, Config().motor)
    code, said = run("train", *files, "--fs", FS, "--epochs", 300, "--out", d / "model")
    assert code == 0, said
    return d / "model", said


def signal(*parts: tuple[float, float], fault: str | None = None, supply_hz: float = 50.0):
    """Currents of a healthy motor (or ``fault``) at each (load, seconds) in turn."""
    out = []
    for i, (load, seconds) in enumerate(parts):
        spec = SimulationSpec(fs=FS, duration_s=seconds, load=load, seed=30 + i,
                              supply_hz=supply_hz, fault=fault,
                              severity=30.0 if fault else None)  # fmt: skip
        out.append(simulate(spec, Config().motor)[1])
    return np.concatenate(out)


def replay(model: Path, x: np.ndarray, margin: float | None = None) -> tuple[list, Pipeline]:
    cfg = Config()
    if margin is not None:
        cfg = cfg.model_copy(
            update={"alerts": cfg.alerts.model_copy(update={"baseline_margin": margin})}
        )
    pipe = Pipeline(cfg, FS, scorer=Scorer.load(model))
    return pipe.update(x), pipe


def alerts(recs: list[dict]) -> list[tuple[str, str, float]]:
    return [(r["fault"], r["state"], r["t"]) for r in recs if r["type"] == "alert"]


def test_train_keeps_the_range_of_its_windows_and_says_what_it_means(narrow):
    model, said = narrow
    card = json.loads((model / "model.json").read_text())
    rng = card["operating_range"]
    # The simulated motor draws i1 of about 7.5 A at 70 % load and 9.2 A at 90 %.
    assert 7.3 < rng["i1"][0] < 7.8 and 9.0 < rng["i1"][1] < 9.4
    assert rng["supply_hz"][0] == pytest.approx(50.0, abs=0.05)
    assert rng["windows"] == card["training"]["windows_train"] + card["training"]["windows_val"]
    low = rng["i1"][0] * 0.9
    assert f"operating range kept: i1 {rng['i1'][0]:.3g}-{rng['i1'][1]:.3g} A (" in said
    assert f"A window under {low:.3g} A or outside 45.0-55.0 Hz" in said
    assert "ran at one load" not in said  # 7.5 to 9.2 A is a span of loads


def test_a_lighter_load_than_the_model_learnt_raises_no_anomaly_alert(narrow):
    model, _ = narrow
    x = signal((0.2, 20.0))  # the pump throttled back to 20 %
    # As before the range existed (a margin of 1 turns it off): every window anomalous,
    # and an anomaly alert, of a healthy motor.
    recs, pipe = replay(model, x, margin=1.0)
    assert pipe.stats.anomalous_windows == pipe.stats.windows
    assert alerts(recs)[0][:2] == ("anomaly", "raised")

    recs, pipe = replay(model, x)
    windows = [r for r in recs if r["type"] == "window"]
    assert alerts(recs) == []
    assert all(r["flags"] == ["outside_baseline"] for r in windows)
    # Still scored (the score is in the record), but not anomalous.
    assert all(r["score"] > Scorer.load(model).threshold and not r["anomalous"] for r in windows)
    assert pipe.stats.outside_baseline_windows == len(windows)
    assert pipe.stats.flagged_windows == 0 and pipe.stats.anomalous_windows == 0
    assert f"{len(windows)} outside the model's baseline" in pipe.stats.describe()
    # Summaries count them apart, and keep their scores out of the score fields.
    summary = Summarizer(1000.0)
    out = summary.update(recs) + summary.flush()
    assert out[0]["outside_baseline_windows"] == out[0]["windows"] == len(windows)
    assert out[0]["flagged_windows"] == 0 and out[0]["score_max"] is None


def test_a_heavier_load_or_a_fault_that_raises_the_current_is_still_judged(narrow):
    model, _ = narrow
    # A 30 % turn short at full load draws more current than any training window.
    recs, pipe = replay(model, signal((1.0, 12.0), fault="stator-short"))
    i1_high = Scorer.load(model).operating_range["i1"][1]
    assert max(r["features"]["i1"] for r in recs if r["type"] == "window") > i1_high
    assert pipe.stats.outside_baseline_windows == 0
    assert ("anomaly", "raised") in [a[:2] for a in alerts(recs)]


def test_an_open_anomaly_alert_stays_open_while_the_load_is_light(narrow):
    model, _ = narrow
    x = np.concatenate([signal((0.8, 8.0), fault="stator-short"), signal((0.2, 10.0), (0.8, 8.0))])
    said = alerts(replay(model, x)[0])
    raised = [t for f, state, t in said if f == "anomaly" and state == "raised"]
    cleared = [t for f, state, t in said if f == "anomaly" and state == "cleared"]
    # Raised during the short; the 10 s at 20 % load (20 windows, beyond clear_after's 5)
    # count neither way; the healthy motor back at 80 % clears it.
    assert len(raised) == 1 and raised[0] < 8.0
    assert len(cleared) == 1 and cleared[0] > 18.0


def test_another_supply_frequency_is_outside_the_baseline(narrow):
    model, _ = narrow
    recs, pipe = replay(model, signal((0.8, 12.0), supply_hz=40.0))  # a drive slowed it
    windows = [r for r in recs if r["type"] == "window"]
    assert pipe.stats.outside_baseline_windows == len(windows)
    why = pipe.scorer.outside(windows[-1]["features"], 0.1)
    assert why.startswith("the supply frequency, 40.0 Hz, is outside the 50.0-50.0 Hz")
    assert alerts(recs) == []


def test_a_card_without_a_range_judges_every_window(narrow, tmp_path):
    """A bundle from a version before the range works as it did."""
    model, _ = narrow
    old = tmp_path / "old"
    old.mkdir()
    card = json.loads((model / "model.json").read_text())
    del card["operating_range"]
    (old / "model.json").write_text(json.dumps(card))
    (old / "model.onnx").write_bytes((model / "model.onnx").read_bytes())
    _, pipe = replay(old, signal((0.2, 6.0)))
    assert pipe.stats.outside_baseline_windows == 0
    assert pipe.stats.anomalous_windows == pipe.stats.windows


@pytest.mark.parametrize(
    "bad",
    [
        {"i1": [9.0, 7.0], "supply_hz": [50.0, 50.0]},
        {"i1": [7.0, 9.0]},
        {"i1": [7.0, "9"], "supply_hz": [50.0, 50.0]},
        [7.0, 9.0],
    ],
)
def test_a_broken_range_is_refused_naming_the_card(narrow, tmp_path, bad):
    model, _ = narrow
    card = json.loads((model / "model.json").read_text())
    card["operating_range"] = bad
    (tmp_path / "model.json").write_text(json.dumps(card))
    (tmp_path / "model.onnx").write_bytes((model / "model.onnx").read_bytes())
    with pytest.raises(InputDataError, match=r"'operating_range' is .*expected") as err:
        Scorer.load(tmp_path)
    assert err.value.exit_code == 65 and str(tmp_path / "model.json") in str(err.value)


def test_train_warns_when_its_windows_ran_at_one_load(tmp_path):
    f = tmp_path / "one.npy"
    write_recording(f, SimulationSpec(fs=FS, duration_s=12.0, load=0.8, seed=1), Config().motor)
    code, said = run("train", f, "--fs", FS, "--epochs", 50, "--out", tmp_path / "m")
    assert code == 0
    assert "warning: the training windows ran at one load; a lighter one will raise no " in said


def test_the_daemon_says_when_the_motor_leaves_the_baseline_and_when_it_is_back(narrow, caplog):
    model, _ = narrow
    _, pipe = replay(model, signal((0.8, 2.0)))
    watch = BaselineWatch()
    caplog.set_level(logging.INFO, logger="edge_agent.service")
    # Fed hop by hop as the daemon does: at 80 %, a stop (whose edge window reads a
    # lighter load) and a start, 15 s at 20 %, 3 s back at 80 %, a 1 s dip to 20 %, then
    # 15 s at 80 %.
    x = signal((0.8, 8.0), (0.0, 3.0), (0.8, 15.0), (0.2, 15.0), (0.8, 3.0), (0.2, 1.0),
               (0.8, 15.0))  # fmt: skip
    x[int(8 * FS) : int(11 * FS)] *= 0.01  # the stop: the CTs read 1 % of the current
    hop = int(FS / 2)
    said = []
    for i in range(0, len(x), hop):
        watch.update(pipe.update(x[i : i + hop]), pipe)
        said.extend((r.levelname, r.getMessage(), (i + hop) / FS) for r in caplog.records)
        caplog.clear()
    assert pipe.stats.outside_baseline_windows > 30 and pipe.stats.stopped_windows > 0
    # Once 10 s into the light load (from 26 s), and once 10 s after it is back for good
    # (from 45 s; the rise of the current within a minute of the start is taken for part
    # of it until it settles, about 2 s): not at the stop's edge (8 s), and the 3 s back
    # at 80 % (6 windows) were too short to say so.
    assert [level for level, _, _ in said] == ["WARNING", "INFO"], said
    assert 35.5 <= said[0][2] <= 37.0 and 55.0 <= said[1][2] <= 58.0
    assert said[0][1].startswith("no anomaly alerts while the current, i1 ")
    assert "record a healthy run (edge-agent check-wiring --record, README) and train " \
        "again" in said[0][1]  # fmt: skip
    assert said[1][1] == "the motor runs within the model's baseline again: anomaly alerts resume"
    assert not watch.outside and OUTSIDE_FOR == INSIDE_AGAIN == 20


def test_evaluate_says_which_windows_ran_outside_the_baseline(narrow, tmp_path):
    model, _ = narrow
    for name, load in (("light.npy", 0.2), ("usual.npy", 0.8)):
        spec = SimulationSpec(fs=FS, duration_s=10.0, load=load, seed=7)
        write_recording(tmp_path / name, spec, Config().motor)
    (tmp_path / "labels.csv").write_text("file,label\nlight.npy,healthy\nusual.npy,healthy\n")
    code, said = run(
        "evaluate", tmp_path / "labels.csv", "--model", model, "--fs", FS,
        "--out", tmp_path / "report.json",
    )  # fmt: skip
    assert code == 0, said
    report = json.loads((tmp_path / "report.json").read_text())
    light, usual = report["recordings"]
    assert light["outside_baseline"] == light["windows"] == 19 and usual["outside_baseline"] == 0
    # By score, the light run's windows are false positives; in the pipeline, no alert.
    assert report["windows"]["false_positives"] == 19 and light["false_alarms"] == []
    assert "19 windows of 1 recording ran outside the model's baseline" in said
    assert "false alarms: 0 of 2 healthy recordings raised an alert" in said


def plate(**changes: float) -> dict:
    """The default [motor] settings, as Scorer.another_motor takes them, with ``changes``."""
    return Config().motor.model_copy(update=changes).model_dump()


def test_a_model_knows_the_motor_it_was_trained_for():
    scorer = Scorer.load()  # the bundled default: a simulated 10 A, 50 Hz, 4-pole motor
    assert scorer.another_motor(plate()) is None
    assert scorer.another_motor(plate(rated_current=12.0)) is None  # a nameplate corrected
    assert scorer.another_motor(plate(rated_current=13.0)) == (
        "trained for a motor of 10 A, 50 Hz, 2 pole pairs; [motor] here is 13 A, 50 Hz, "
        "2 pole pairs"
    )
    assert scorer.another_motor(plate(rated_current=7.9)) is not None
    assert "60 Hz" in scorer.another_motor(plate(rated_hz=60.0, rated_rpm=1740.0))
    assert "3 pole pairs" in scorer.another_motor(plate(pole_pairs=3, rated_rpm=960.0))
    del scorer.card["motor"]  # a bundle whose card names no motor is not second-guessed
    assert scorer.another_motor(plate(rated_current=30.0)) is None


def test_a_model_of_another_motor_is_not_used(tmp_path, caplog):
    """The bundled model, trained on a simulated 10 A motor, on a healthy 30 A one whose
    [motor] says so: before, every window was anomalous and an anomaly alarm was raised
    2 s in, on a healthy motor, from the first day of an installation that had not yet
    trained its own model. Now the model is not used, and the log says why and what to do."""
    config = tmp_path / "motor.toml"
    config.write_text("[motor]\nrated_current = 30.0\nrated_rpm = 1470.0\n")
    big = Config().motor.model_copy(update={"rated_current": 30.0, "rated_rpm": 1470.0})
    rec = tmp_path / "healthy.npy"
    write_recording(rec, SimulationSpec(fs=15000.0, duration_s=8.0, seed=3), big)
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING):
        code, said = run("replay", rec, "--fs", 15000, "--config", config, "--out", out)
    assert code == 0, said
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "models/default: trained for a motor of 10 A" in warned[0]
    assert "[motor] here is 30 A" in warned[0] and "`edge-agent train`" in warned[0]
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    windows = [r for r in recs if r["type"] == "window"]
    assert len(windows) == 15 and all(r["score"] is None for r in windows)
    assert not [r for r in recs if r["type"] == "alert"]
    # `evaluate` measures the model asked for, saying that replay would not use it.
    (tmp_path / "labels.csv").write_text("file,label\nhealthy.npy,healthy\n")
    code, said = run("evaluate", tmp_path / "labels.csv", "--fs", 15000, "--config", config)
    assert code == 0 and "`run` and `replay` would not use it with this [motor]" in said
    # Its nameplate current set 4 % off the model's motor: the model is used.
    config.write_text("[motor]\nrated_current = 10.4\n")
    code, said = run("replay", rec, "--fs", 15000, "--config", config, "--out", out)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and all(r["score"] is not None for r in recs if r["type"] == "window")


def test_the_daemon_says_it_runs_without_the_model_of_another_motor(tmp_path, caplog):
    """`run` (as under systemd) on that 30 A motor: the journal says why the model is not
    used, and `systemctl status` that no anomaly alert can come."""
    from tests.test_systemd import NotifySocket

    big = Config().motor.model_copy(update={"rated_current": 30.0, "rated_rpm": 1470.0})
    rec = tmp_path / "healthy.npy"
    write_recording(rec, SimulationSpec(fs=15000.0, duration_s=4.0, seed=3), big)
    config = tmp_path / "motor.toml"
    config.write_text(
        "[motor]\nrated_current = 30.0\nrated_rpm = 1470.0\n"
        f'[acquisition]\nsource = "replay"\nfs = 15000.0\n[acquisition.replay]\npath = "{rec}"\n'
        f'speed = 0\n[store]\npath = "{tmp_path / "edge-agent.db"}"\n'
    )
    systemd = NotifySocket()
    try:
        with caplog.at_level(logging.WARNING):
            res = CliRunner(env={"NOTIFY_SOCKET": systemd.address}).invoke(
                main, ["run", "--config", str(config), "--out", str(tmp_path / "out.jsonl")]
            )
        assert res.exit_code == 0, res.output
        systemd.wait_for(lambda s: s.having("STOPPING"), 10, "STOPPING=1")
    finally:
        systemd.close()
    assert any("[motor] here is 30 A" in r.getMessage() for r in caplog.records)
    stopping = systemd.having("STOPPING")[-1][1]["STATUS"]
    assert "; no model: no anomaly alerts" in stopping, stopping


def test_a_model_of_a_simulated_motor_judges_no_real_one(itsc_model, tmp_path):
    """The bundled model learned simulated runs of the default nameplate; a real motor of
    that nameplate, read from an ADC, is no simulation (its harmonics, asymmetry and Park's
    vector differ), so its card says so and `run` does not use it on a serial or tcp
    source. A recording and the simulator are judged as asked (the README's first command)."""
    default = Scorer.load()
    assert default.simulated is True
    for source in ("serial", "tcp"):
        said = default.refusal(plate(), source)
        assert said is not None and said.startswith(
            f"it learned a simulated motor (its card says so), and the {source} source reads "
            "a real one"
        )
    for source in (None, "replay", "simulator"):
        assert default.refusal(plate(), source) is None
    # A model of another motor is refused whatever the source, saying why.
    assert default.refusal(plate(rated_current=30.0), None).endswith(
        "[motor] here is 30 A, 50 Hz, 2 pole pairs. Its scores and line levels say nothing "
        "of this motor (if the model is this motor's, set [motor] right)"
    )
    # A model trained on the motor's own recordings judges it on its ADC.
    own = Scorer.load(itsc_model)
    itsc = Config.model_validate(
        {"motor": {"rated_current": 3.0, "rated_hz": 60.0, "rated_rpm": 1725.0}}
    ).motor.model_dump()
    assert own.simulated is False and own.refusal(itsc, "serial") is None
    # A card whose "simulated" is no boolean is refused, naming the key.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes((itsc_model / "model.onnx").read_bytes())
    card = json.loads((itsc_model / "model.json").read_text())
    (bad / "model.json").write_text(json.dumps({**card, "simulated": "yes"}))
    with pytest.raises(InputDataError, match=r"model.json: 'simulated' is 'yes'; expected true"):
        Scorer.load(bad)


def test_the_daemon_on_an_adc_runs_without_the_bundled_model(tmp_path):
    """`run` reading an emulated ADC on a serial port, with no model of its own ([model]
    path unset): the journal says the bundled model learned a simulated motor and is not
    used, and no window is scored; every window is analysed all the same."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from edge_agent.acquisition.emulator import Emulator, to_counts
    from edge_agent.acquisition.framing import Scaling
    from tests.test_acquisition import FRAME, Pty

    adc = Pty(tmp_path / "ttyADC")
    config = tmp_path / "adc.toml"
    config.write_text(
        '[acquisition]\nsource = "serial"\nchannels = ["ia", "ib", "ic"]\n'
        f'[acquisition.serial]\ndevice = "{adc.link}"\n'
        + "".join(f"[acquisition.scaling.{ch}]\ngain = 0.001\n" for ch in ("ia", "ib", "ic"))
    )
    scaling = Scaling(offset=np.zeros(3), gain=np.full(3, 0.001))
    counts = to_counts(simulate(SimulationSpec(duration_s=4.0, seed=2), Config().motor)[1],
                       scaling)[0]  # fmt: skip
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--out", str(out)],
        env=dict(os.environ), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        said = []
        for line in proc.stderr:  # start-up ends with this line, the port open
            said.append(line)
            if "edge-agent run: reading serial" in line:
                break
        assert proc.poll() is None, "".join(said)
        Emulator(adc.write, 15000.0, 3, frame_samples=FRAME).play_counts(
            counts[i : i + 1500] for i in range(0, counts.shape[0], 1500)
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        adc.close()
    said = "".join(said) + err
    assert proc.returncode == 0, said
    (warned,) = [x for x in said.splitlines() if "learned a simulated motor" in x]
    assert "models/default: it learned a simulated motor (its card says so), and the serial " \
        "source reads a real one" in warned  # fmt: skip
    assert "so it is not used: no anomaly alerts until `edge-agent train`" in warned
    windows = [r for r in map(json.loads, out.read_text().splitlines()) if r["type"] == "window"]
    assert len(windows) >= 6 and all(r["score"] is None for r in windows)
    assert all(r["features"]["i1"] > 0 for r in windows)  # analysed all the same
