"""`edge-agent check-wiring`: the installer's report, on recordings of a right and of
miswired installations, and live from an emulated ADC on a pseudo-terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_agent.acquisition.emulator import Emulator, to_counts
from edge_agent.acquisition.framing import Scaling
from edge_agent.acquisition.ports import open_port
from edge_agent.cli import main
from edge_agent.config import Config
from edge_agent.simulate import SimulationSpec, simulate
from tests.test_acquisition import FRAME, ROLES6, Pty

FS = 15000.0
FAST = {"EDGE_AGENT_ACQUISITION__REPLAY__SPEED": "0"}  # as fast as the analysis goes


def recording(tmp_path: Path, name: str, *, voltages: bool = True, load: float = 0.8,
              change=None) -> Path:  # fmt: skip
    """6 s of a healthy motor (seed 1), changed by ``change(x)`` in place, as .npy."""
    spec = SimulationSpec(duration_s=6.0, voltages=voltages, load=load, seed=1)
    x = simulate(spec, Config().motor)[1]
    if change is not None:
        change(x)
    path = tmp_path / f"{name}.npy"
    np.save(path, x)
    return path


def check(path: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(
        main,
        ["check-wiring", "--source", "replay", "--recording", str(path), "--seconds", "4", *args],
        env={**FAST, **(env or {})},
        catch_exceptions=False,
    )


def line(output: str, head: str) -> str:
    (found,) = [x for x in output.splitlines() if x.startswith(head)]
    return found


def test_a_right_installation_reads_right_and_says_what_it_read(tmp_path):
    res = check(recording(tmp_path, "right"))
    assert res.exit_code == 0, res.output
    assert float(line(res.output, "supply ").split()[1]) == pytest.approx(50.0, abs=0.02)
    assert "(83 % of the nameplate's 10 A)" in line(res.output, "currents ")
    assert line(res.output, "angles ") == (
        "angles      ib lags ia by 120.0°, ic by 240.0° (120°, 240° when right)"
    )
    assert "vb lags va by 120.0°, vc by 240.0°" in line(res.output, "voltages ")
    pairing = line(res.output, "pairing ")
    assert all(f"i{p} lags v{p} by 3" in pairing or f"i{p} lags v{p} by 2" in pairing
               for p in "abc"), pairing  # fmt: skip
    assert line(res.output, "data ") == (
        "data        0 samples lost, 0 windows clipped, 0 flagged (0 for wiring)"
    )
    assert res.output.rstrip().endswith("`systemctl enable --now edge-agent` next")
    assert "problem" not in res.output and "warning" not in res.output


def reverse_ib(x):
    x[:, 1] *= -1


def swap_ib_ic(x):
    x[:, [1, 2]] = x[:, [2, 1]]


def voltages_turned(x):
    x[:, 3:] = x[:, [4, 5, 3]]  # the channel read as va holds vb, and so on


def open_ic(x):
    x[:, 2] = 0.002 * np.random.default_rng(0).standard_normal(x.shape[0])


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (reverse_ib, "the CT of ib is reversed (ib, ic lag ia by 300°, 240°"),
        (swap_ib_ic, "the currents rotate a-c-b"),
        (voltages_turned, "the channels read as va, vb, vc hold vb, vc, va"),
        (open_ic, "ic reads under 10% of the largest phase current"),
    ],
    ids=["reversed CT", "swapped leads", "voltages turned", "open CT"],
)
def test_a_miswired_installation_is_told_what_to_fix(tmp_path, change, said):
    res = check(recording(tmp_path, change.__name__, change=change))
    assert res.exit_code == 65, res.output
    (problem,) = [x for x in res.output.splitlines() if x.startswith("problem: ")]
    assert said in problem
    assert "wiring OK" not in res.output


def test_a_stopped_motor_is_not_judged(tmp_path):
    def stopped(x):
        x[:, :3] *= 0.01  # 0.08 A: a motor at standstill, its CTs reading noise

    res = check(recording(tmp_path, "stopped", change=stopped))
    assert res.exit_code == 75, res.output
    assert "not checked: the motor is not running (its largest phase current is 0.0" in res.output
    assert "start it and run this again" in res.output and "wiring OK" not in res.output


def test_a_nameplate_current_far_over_the_motors_is_said_not_taken_for_a_stop(tmp_path):
    # The motor draws 8.4 A: under 10 % of a 100 A nameplate, it would read stopped.
    res = check(recording(tmp_path, "right"), env={"EDGE_AGENT_MOTOR__RATED_CURRENT": "100"})
    assert res.exit_code == 65, res.output
    problem = line(res.output, "problem: ")
    assert problem.startswith("problem: the motor reads stopped (every phase under 10% of")
    assert "a balanced three-phase set of 8.3" in problem and "8 % of the nameplate's" in problem
    assert "start it and run this again" not in res.output and "wiring OK" not in res.output


def test_a_clipping_adc_and_a_wrong_nameplate_are_said(tmp_path):
    def clipped(x):
        rail = 0.9 * np.abs(x[:, 0]).max()
        x[:, 0] = np.clip(x[:, 0], -rail, rail)

    res = check(recording(tmp_path, "clipped", voltages=False, change=clipped))
    assert res.exit_code == 65, res.output
    assert "windows clipped: a signal reaches the ADC's full scale" in res.output
    assert "voltages " not in res.output  # none wired
    res = check(recording(tmp_path, "right", voltages=False),
                env={"EDGE_AGENT_MOTOR__RATED_CURRENT": "4"})  # fmt: skip
    assert res.exit_code == 0, res.output  # a warning: the wiring itself reads right
    assert "warning: the motor draws 8.3" in res.output and "wiring OK" in res.output


def test_the_installer_is_told_when_the_model_is_of_another_motor(tmp_path):
    """The bundled model is a simulated 10 A motor's: on a 30 A nameplate the service
    would run without it. The wiring itself reads right."""
    big = Config().motor.model_copy(update={"rated_current": 30.0, "rated_rpm": 1470.0})
    path = tmp_path / "big.npy"
    np.save(path, simulate(SimulationSpec(duration_s=6.0, seed=1), big)[1])
    env = {"EDGE_AGENT_MOTOR__RATED_CURRENT": "30", "EDGE_AGENT_MOTOR__RATED_RPM": "1470"}
    res = check(path, env=env)
    assert res.exit_code == 0, res.output
    assert line(res.output, "warning: model ").endswith(
        "trained for a motor of 10 A, 50 Hz, 2 pole pairs; [motor] here is 30 A, 50 Hz, 2 "
        "pole pairs. Its scores and line levels say nothing of this motor (if the model is "
        "this motor's, set [motor] right), so the service will run without it, raising no "
        "anomaly alert, until `edge-agent train` learns this motor's own baseline"
    )
    assert "wiring OK" in res.output
    res = check(path, env={**env, "EDGE_AGENT_MODEL__PATH": str(tmp_path / "none")})
    assert res.exit_code == 0 and "warning: the model does not load, and `run` refuses it: " \
        "model bundle" in res.output  # fmt: skip
    assert "warning: model" not in check(recording(tmp_path, "right")).output


def test_the_check_records_what_it_read_for_train(tmp_path):
    """The installer records a healthy run as they check the wiring (the service stopped:
    it holds the ADC): the samples as read, in A and V, and whether to learn from them."""
    source = recording(tmp_path, "right")
    out = tmp_path / "healthy-1.npy"
    res = check(source, "--record", str(out))
    assert res.exit_code == 0, res.output
    kept = np.load(out)  # at least the 4 s checked (all 6, as a replay runs ahead)
    assert kept.shape[1] == 6 and len(kept) >= 4 * FS
    np.testing.assert_array_equal(kept, np.load(source)[: len(kept)])
    assert line(res.output, "recorded ") == (
        f"recorded {out}: {len(kept) / FS:.1f} s at 15000 Hz; a healthy run to learn from: "
        f"edge-agent train {out} [more runs] --fs 15000 --out DIR"
    )
    res = check(recording(tmp_path, "reversed", change=reverse_ib), "--record",
                str(tmp_path / "bad.npy"))  # fmt: skip
    assert res.exit_code == 65
    assert line(res.output, "recorded ").endswith("not one to learn from until the above is mended")
    # 10 ms lost at 3 s (the times of a CSV show it): the .npy, which has no times, keeps
    # them as rows of NaN, so that train sees the gap and leaves its windows out.
    x = np.load(source)[:, :3]
    t = np.arange(len(x)) / FS
    keep = (t < 3.0) | (t >= 3.01)
    gap = tmp_path / "gap.csv"
    np.savetxt(gap, np.column_stack([t, x])[keep], fmt="%.6f", delimiter=",",
               header="t_s,ia,ib,ic", comments="")  # fmt: skip
    res = check(gap, "--record", str(tmp_path / "gap.npy"))
    assert res.exit_code == 0, res.output  # the wiring reads right
    said = line(res.output, "recorded ").split("; ", 1)[1]
    assert said.startswith("a healthy run to learn from (train leaves out the ")
    assert "windows that hold a gap or samples missing): edge-agent train " in said
    lost = np.flatnonzero(np.isnan(np.load(tmp_path / "gap.npy")).all(axis=1))
    assert lost.tolist() == list(range(45000, 45150))  # 150 samples, where they were
    # An adapter not plugged in: nothing read, and no empty recording left for train.
    none = tmp_path / "none.npy"
    args = ["--source", "serial", "--device", str(tmp_path / "ttyNONE"), "--record", str(none)]
    res = CliRunner().invoke(main, ["check-wiring", *args])
    assert res.exit_code == 66 and "no such serial device" in res.output and not none.exists()


@pytest.fixture
def pty(tmp_path):
    p = Pty(tmp_path / "ttyADC")
    yield p
    p.close()


def test_an_adc_the_service_holds_is_busy_and_the_installer_is_told_to_stop_it(pty):
    """The service keeps its ADC open (exclusively): check-wiring, run by the installer
    beside it, must say what to stop rather than read half the frames."""
    held = open_port(str(pty.link), 115200, exclusive=True)
    try:
        res = CliRunner().invoke(
            main, ["check-wiring", "--source", "serial", "--device", str(pty.link)]
        )
    finally:
        held.close()
    assert res.exit_code == 66, res.output
    assert (
        f"{pty.link}: device busy; another program has it open: another edge-agent? (its "
        "service: " in res.output
    )
    assert "systemctl stop edge-agent, or edge-agent@NAME for one of several motors" in res.output


def live_check(pty, tmp_path, x: np.ndarray, seconds: float, fs_board: float = FS):
    """check-wiring (configured for 15 kS/s) reading ``seconds`` of an ADC board of 6
    channels on ``pty`` that samples at ``fs_board`` and plays ``x`` (A and V) once.
    Returns the process (ended), its stdout and stderr, and how long the board played."""
    config = tmp_path / "adc.toml"
    lines = ["[acquisition]", 'source = "serial"', f"channels = {ROLES6}".replace("'", '"')]
    for ch, gain in zip(ROLES6, [0.001] * 3 + [0.02] * 3, strict=True):
        lines += [f"[acquisition.scaling.{ch}]", f"gain = {gain}"]
    config.write_text("\n".join(lines) + "\n")
    scaling = Scaling(offset=np.zeros(6), gain=np.array([0.001] * 3 + [0.02] * 3))
    counts = to_counts(x, scaling)[0]

    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "check-wiring", "--config", str(config),
         "--device", str(pty.link), "--seconds", f"{seconds:g}"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for said in proc.stderr:  # start-up ends with this line, the port open
        if "edge-agent check-wiring: reading serial" in said:
            break
    assert proc.poll() is None, "check-wiring ended before reading"
    emu = Emulator(pty.write, fs_board, 6, frame_samples=FRAME)
    played: list[float] = []

    def play() -> None:
        t0 = time.monotonic()
        emu.play_counts(counts[i : i + 1500] for i in range(0, counts.shape[0], 1500))
        played.append(time.monotonic() - t0)

    player = threading.Thread(target=play, daemon=True)
    player.start()
    out, err = proc.communicate(timeout=120)
    # The check stops reading after its seconds; the board goes on: drain the line.
    os.set_blocking(pty.slave, False)
    while player.is_alive():
        try:
            os.read(pty.slave, 1 << 16)
        except BlockingIOError:
            time.sleep(0.01)
    return proc, out, err, played[0]


def test_the_installer_checks_a_live_adc_on_its_serial_port(pty, tmp_path):
    # An ADC board whose voltage inputs take the phases in the order vb, vc, va: only the
    # voltages show it.
    x = simulate(SimulationSpec(duration_s=8.0, voltages=True, seed=1), Config().motor)[1]
    voltages_turned(x)
    proc, out, err, played = live_check(pty, tmp_path, x, 4.0)
    assert played >= 0.95 * 8.0  # the real rate
    assert proc.returncode == 65, out + err
    assert out.startswith("serial: ")
    assert line(out, "data ").startswith("data        0 samples lost, 0 windows clipped")
    assert "problem: " in out and "hold vb, vc, va: give them those roles" in out
    # No model of this motor yet: the bundled one learned a simulated motor, and the service
    # would not use it on this ADC.
    assert "learned a simulated motor (its card says so), and the serial source reads a " \
        "real one" in line(out, "warning: model ")  # fmt: skip


def test_a_board_sampling_faster_than_fs_is_found_by_the_system_clock(pty, tmp_path):
    """A board whose clock runs 4 % fast (or set to 15600 samples a second where the
    config says 15000): a 50 Hz supply reads 48.08 Hz, every line 4 % off its frequency,
    and nothing in the signal can tell. The check measures the rate against the system
    clock, and says so; a board at its rate passes."""
    spec = SimulationSpec(fs=15600.0, duration_s=12.0, voltages=True, seed=1)
    x = simulate(spec, Config().motor)[1]
    proc, out, err, played = live_check(pty, tmp_path, x, 8.0, fs_board=15600.0)
    assert played == pytest.approx(12.0, rel=0.05)
    assert proc.returncode == 65, out + err
    assert float(line(out, "supply ").split()[1]) == pytest.approx(48.08, abs=0.03)
    rate = float(line(out, "sampling ").split()[1])
    assert rate == pytest.approx(15600, rel=0.002)
    said = re.fullmatch(
        r"problem: the source delivers (\d+) samples a second per channel by the system "
        r"clock \(over \d+ s\), but \[acquisition\] fs = 15000: every frequency reads "
        r"(\S+) % low \(a 50 Hz supply as (\S+) Hz\)\. Set fs to the board's rate, or "
        r"mend the board's clock",
        line(out, "problem: the source "),
    )
    assert said is not None, out
    assert (float(said[1]), float(said[2]), float(said[3])) == (
        pytest.approx(rate, abs=1),
        pytest.approx(3.85, abs=0.2),
        pytest.approx(48.08, abs=0.1),
    )
    # a board at the configured rate: the rate is said, and nothing is to fix
    x = simulate(SimulationSpec(duration_s=12.0, voltages=True, seed=1), Config().motor)[1]
    proc, out, err, _ = live_check(pty, tmp_path, x, 8.0)
    assert proc.returncode == 0, out + err
    assert float(line(out, "sampling ").split()[1]) == pytest.approx(15000, rel=0.003)
    assert "problem" not in out


@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P is 3.11's")
def test_run_from_a_source_tree_compiles_the_installed_kernels_apart(tmp_path):
    # An installed edge-agent started in the clone it came from (as the README's service
    # section has it): the kernel-compiling child must not import the clone's edge_agent.
    decoy = tmp_path / "edge_agent"
    decoy.mkdir()
    (decoy / "__init__.py").write_text('raise ImportError("the source tree, not the install")\n')
    res = subprocess.run(
        [sys.executable, "-P", "-m", "edge_agent", "check-wiring", "--source", "simulator",
         "--seconds", "2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "in a child process failed" not in res.stderr
    assert "wiring OK" in res.stdout
