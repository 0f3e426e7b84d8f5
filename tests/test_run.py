"""`edge-agent run`: the live loop over each source, as a user starts and stops it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_agent.cli import main
from edge_agent.config import Config, MotorConfig
from edge_agent.simulate import SimulationSpec, write_recording


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def features(recs: list[dict]) -> list[dict]:
    return [r["features"] for r in recs if r["type"] == "window"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """12 s of currents and voltages with a broken bar, as .npy."""
    path = tmp_path_factory.mktemp("run") / "bb.npy"
    spec = SimulationSpec(duration_s=12.0, fault="broken-bar", severity=45.0, voltages=True)
    write_recording(path, spec, MotorConfig())
    return path


def test_a_recording_played_live_gives_the_records_replay_gives(recording, tmp_path):
    env = {"EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0"}  # as fast as the analysis takes it
    res = cli("run", "--source", "replay", "--recording", recording, "--no-model",
              "--out", tmp_path / "run.jsonl", env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "samples lost: 0 in transit, 0 overwritten" in res.output
    cli("replay", recording, "--fs", "15000", "--no-model", "--out", tmp_path / "rep.jsonl")
    live, offline = records(tmp_path / "run.jsonl"), records(tmp_path / "rep.jsonl")
    assert features(live) == features(offline)  # the same samples, bit for bit
    assert len(features(live)) == 23
    assert features(live)[-1]["brb_lsb_db"] == pytest.approx(-45.0, abs=0.5)
    # Live records carry UNIX times.
    assert live[0]["t_start"] > 1.7e9


def test_the_simulator_runs_at_the_real_rate(tmp_path):
    env = {"EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S": "3"}
    t0 = time.monotonic()
    res = cli("run", "--source", "simulator", "--no-model", "--out", tmp_path / "sim.jsonl",
              env=env)  # fmt: skip
    elapsed = time.monotonic() - t0
    assert res.exit_code == 0, res.output
    assert elapsed >= 2.9  # paced: never faster than the signal (no upper bound asserted)
    w = features(records(tmp_path / "sim.jsonl"))
    assert len(w) == 5  # 1 s windows every 0.5 s over 3 s
    assert all(f["i1"] == pytest.approx(Config().motor.rated_current * 0.8, rel=0.2) for f in w)


def test_sigterm_stops_cleanly_with_every_record_whole(tmp_path):
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--source", "simulator", "--no-model",
         "--out", str(out)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and out.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    recs = records(out)  # every line parses: nothing half-written
    assert len(features(recs)) >= 2
    assert "simulator:" in err and "windows" in err


def test_a_restarted_daemon_appends_to_its_records(tmp_path):
    """systemd restarts the daemon after a crash or an update: the records of the run
    before must still be there."""
    out = tmp_path / "live.jsonl"
    env = {"EDGE_AGENT_ACQUISITION__SIMULATOR__DURATION_S": "1.5"}
    for _ in range(2):
        res = cli("run", "--source", "simulator", "--no-model", "--out", out, env=env)
        assert res.exit_code == 0, res.output
    t = [r["t_start"] for r in records(out) if r["type"] == "window"]
    assert len(t) == 2 * 2  # 1 s windows every 0.5 s over 1.5 s, twice
    assert t[2] > t[1]  # the second run's, after the first's


def test_a_missing_serial_device_is_a_clear_error(tmp_path):
    res = cli("run", "--device", tmp_path / "ttyUSB9", "--no-model")
    assert res.exit_code == 66
    assert "ttyUSB9: no such serial device" in res.output


def test_an_unknown_source_is_a_config_error():
    res = cli("run", "--no-model", env={"EDGE_AGENT_ACQUISITION__SOURCE": "usb"})
    assert res.exit_code == 78
    assert "acquisition.source" in res.output


def test_an_unknown_fft_library_is_a_config_error_before_the_source_opens(tmp_path):
    res = cli("run", "--device", tmp_path / "ttyUSB9", "--no-model",
              env={"EDGE_AGENT_FFT": "fastest"})  # fmt: skip
    assert res.exit_code == 78
    assert "EDGE_AGENT_FFT='fastest': expected auto, fftw or scipy" in res.output


def test_on_a_new_machine_the_fft_plans_are_measured_before_the_source_opens(
    recording, tmp_path, monkeypatch, caplog
):
    """FFTW measures its plans (about 2 s here) when the pipeline is built, the first time
    on a machine: before the source opens, or the samples arriving meanwhile would wait."""
    import pyfftw
    from edge_agent.kernels import fft

    from edge_agent.acquisition.sources import ReplaySource

    wisdom = tmp_path / "cache" / "fftw-wisdom"
    pyfftw.forget_wisdom()  # as on a machine where FFTW never measured anything
    monkeypatch.setattr(fft, "_loaded_wisdom", set())
    at_open = []
    monkeypatch.setattr(ReplaySource, "open", lambda self: at_open.append(wisdom.exists()))
    env = {"EDGE_AGENT_FFT": "fftw", "EDGE_AGENT_FFT_WISDOM": str(wisdom),
           "EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0"}  # fmt: skip
    with caplog.at_level("INFO", logger="edge_agent.features"):
        res = cli("run", "--source", "replay", "--recording", recording, "--no-model",
                  "--out", tmp_path / "run.jsonl", env=env)  # fmt: skip
    assert res.exit_code == 0, res.output
    assert at_open == [True]
    assert "measured the FFTW plans of 15000- and 16384-point windows in" in caplog.text
    assert f"kept in {wisdom} (once per machine)" in caplog.text


def test_replay_source_without_a_path_is_a_config_error():
    res = cli("run", "--source", "replay", "--no-model")
    assert res.exit_code == 78
    assert "[acquisition.replay] path" in res.output


def test_a_missing_recording_is_exit_66(tmp_path):
    res = cli("run", "--source", "replay", "--recording", tmp_path / "nope.npy", "--no-model")
    assert res.exit_code == 66
