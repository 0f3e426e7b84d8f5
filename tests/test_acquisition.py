"""Serial acquisition end to end: the emulator writes a pseudo-terminal at the real rate,
`edge-agent run` (or the SerialSource under it) reads the other end.

The pty stands in for a USB serial adapter: the test writes the master end as the ADC
board would, and edge-agent opens the slave end through a symlink, as it would open
/dev/serial/by-id/... . Unplugging is closing the pair; replugging makes a new pair and
points the symlink at it, as udev does.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from edge_agent.acquisition.emulator import Emulator, check_counter, counter_blocks, to_counts
from edge_agent.acquisition.framing import Scaling, encode_frame
from edge_agent.acquisition.ring import SampleRing
from edge_agent.acquisition.sources import SerialSource
from edge_agent.config import Config, MotorConfig
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import SimulationSpec, iter_blocks

FS = 15000.0
ROLES6 = ["ia", "ib", "ic", "va", "vb", "vc"]
FRAME = 64


class Pty:
    """A pseudo-terminal pair in raw mode, reached through a stable symlink."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.lock = threading.Lock()
        self.master: int | None = None
        self.slave: int | None = None
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        with self.lock:
            self.master, self.slave = master, slave
            tmp = self.link.with_suffix(".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(os.ttyname(slave))
            tmp.replace(self.link)

    def unplug(self) -> None:
        with self.lock:
            self.link.unlink(missing_ok=True)
            for fd in (self.master, self.slave):
                if fd is not None:
                    os.close(fd)
            self.master = self.slave = None

    def write(self, data: bytes) -> int:
        """Write to the board's end; bytes written while unplugged are lost on the cable."""
        with self.lock:
            fd = self.master
        if fd is None:
            return len(data)
        try:
            return os.write(fd, data)
        except OSError:
            return len(data)

    def close(self) -> None:
        self.unplug()


@pytest.fixture
def pty(tmp_path):
    p = Pty(tmp_path / "ttyADC")
    yield p
    p.close()


def identity(channels: int) -> Scaling:
    return Scaling(offset=np.zeros(channels), gain=np.ones(channels), ratio=np.ones(channels))


def start_source(pty: Pty, channels: int, capacity: int, **kw):
    src = SerialSource(str(pty.link), FS, ROLES6[:channels], identity(channels), **kw)
    src.open()
    ring = SampleRing(channels, capacity, dtype=np.float64)
    stop = threading.Event()
    thread = threading.Thread(target=src.run, args=(ring, stop), daemon=True)
    thread.start()
    return src, ring, stop, thread


def drain(ring: SampleRing, until: int, timeout: float, lost: list[int] | None = None):
    """Read the ring until ``until`` samples have come (or timeout): the data and the gap
    rows; ``lost`` (a list) collects the samples lost at each gap."""
    parts, gaps, got = [], [], 0
    deadline = time.monotonic() + timeout
    while got < until and time.monotonic() < deadline:
        ring.wait(0.2)
        chunk = ring.read()
        if chunk:
            gaps += [got + g for g in chunk.gaps]
            if lost is not None:
                lost += chunk.gap_lost
            parts.append(chunk.data)
            got += len(chunk)
    return (np.concatenate(parts) if parts else np.empty((0, ring.channels))), gaps


def test_every_sample_of_a_counter_arrives_once_and_in_order(pty):
    n = int(5 * FS)
    src, ring, stop, thread = start_source(pty, 6, int(10 * FS))
    emu = Emulator(pty.write, FS, 6, frame_samples=FRAME)
    player = threading.Thread(target=emu.play_counts, args=(counter_blocks(6, n, 1500),))
    player.start()
    data, gaps = drain(ring, n, timeout=60)
    player.join()
    stop.set()
    thread.join(5)
    assert data.shape == (n, 6)
    assert check_counter(data, 0, 6) == []  # each sample once, in order
    assert gaps == []
    s = src.stats
    assert (s.crc_errors, s.bad_headers, s.bytes_skipped, s.lost_samples) == (0, 0, 0, 0)
    assert s.frames == -(-n // FRAME)
    assert ring.stats.overwritten == 0


def _stream(n_frames: int, channels: int) -> list[bytes]:
    counts = np.concatenate(list(counter_blocks(channels, n_frames * FRAME, FRAME)))
    return [
        encode_frame(counts[i * FRAME : (i + 1) * FRAME], seq=i, t_us=round(i * FRAME / FS * 1e6))
        for i in range(n_frames)
    ]


def test_garbage_bad_crc_and_dropped_frames_are_counted_exactly_and_flagged(pty):
    frames = _stream(938, 3)  # 4 s
    garbage = [bytes(range(7, 44)), b"\xa5\x5a\x01\x03", b"\x00" * 19]  # incl. a false sync
    bad = bytearray(frames[300])
    bad[40] ^= 0x10  # one bit flipped in the payload
    stream = [garbage[0], *frames[:300], bytes(bad), *frames[301:450], garbage[1]]
    stream += [*frames[450:600], *frames[602:], garbage[2]]  # frames 600, 601 never sent
    src, ring, stop, thread = start_source(pty, 3, int(10 * FS))
    for piece in stream:
        pty.write(piece)
    received = (938 - 3) * FRAME
    lost: list[int] = []
    data, gaps = drain(ring, received, timeout=30, lost=lost)
    time.sleep(0.3)  # let the trailing garbage through
    stop.set()
    thread.join(5)
    s = src.stats
    assert data.shape == (received, 3)
    assert s.crc_errors == 1
    assert s.lost_samples == 3 * FRAME  # the bad frame and the two dropped ones
    assert s.bytes_skipped == sum(map(len, garbage)) + len(bad)
    # A gap before the first sample after each loss, in received-sample numbering.
    assert gaps == [300 * FRAME, 599 * FRAME]
    assert lost == [FRAME, 2 * FRAME]  # and how many samples each cost
    # Windows spanning a loss are flagged; the others are not. Window times count the lost
    # samples: after the first loss they run 64 samples later than the received count.
    recs = Pipeline(Config(), FS, ROLES6[:3]).update(data, gaps, lost)
    w = [r for r in recs if r["type"] == "window"]
    assert [round(r["t_start"] * FS) for r in w] == [0, 7500, 15000, 22564, 30064, 37564]
    assert [round(r["t_end"] * FS) for r in w][-1] == 52500 + 3 * FRAME
    flagged = [round(r["t_start"] * FS) for r in w if "gap" in r["flags"]]
    assert flagged == [7500, 15000, 30064, 37564]
    assert len(w) == 6


def test_an_unplugged_and_replugged_adapter_is_survived_and_the_loss_counted(pty, caplog):
    n_frames = 700  # 3 s
    frames = _stream(n_frames, 3)
    src, ring, stop, thread = start_source(pty, 3, int(10 * FS), reconnect_max_s=0.2)
    for f in frames[:200]:
        pty.write(f)
    first, _ = drain(ring, 200 * FRAME, timeout=10)
    pty.unplug()
    for f in frames[200:260]:  # sent while the cable is out: lost
        pty.write(f)
    time.sleep(1.0)  # several attempts to reopen: the journal hears of it once
    missing = [r for r in caplog.records if "no such serial device" in r.getMessage()]
    assert len(missing) == 1 and missing[0].levelname == "WARNING"
    pty.plug()
    time.sleep(1.0)  # the source finds the port again (backoff at most 0.2 s)
    for f in frames[260:]:
        pty.write(f)
    lost: list[int] = []
    rest, gaps = drain(ring, (n_frames - 260) * FRAME, timeout=20, lost=lost)
    stop.set()
    thread.join(5)
    s = src.stats
    assert s.reconnects == 1 and s.disconnected_s > 0.4
    assert first.shape[0] == 200 * FRAME
    assert rest.shape[0] == (n_frames - 260) * FRAME
    assert gaps == [0]  # the first sample after the outage follows a gap
    assert lost == [60 * FRAME]  # of this many samples
    assert s.lost_samples == 60 * FRAME  # counted from the frame sequence
    assert check_counter(np.concatenate([first, rest]), 0, 3) == [200 * FRAME]


def test_an_adapter_back_under_another_kernel_name_is_followed_through_its_by_id_name(
    tmp_path, monkeypatch, caplog
):
    """/dev/ttyACM0 in the config; the adapter comes back as /dev/ttyACM1 (the old name
    was still held, or another adapter took it), while udev's by-id name follows it. Here
    the kernel names are the ptys' /dev/pts/N and the by-id folder is the test's."""
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    monkeypatch.setattr("edge_agent.acquisition.ports.BY_ID", by_id)
    adc = Pty(by_id / "usb-edge_ADC_3ph_0042-if00")
    try:
        kernel_name = os.ttyname(adc.slave)
        src = SerialSource(kernel_name, FS, ROLES6[:3], identity(3), reconnect_max_s=0.2)
        src.open()
        (advice,) = [r.getMessage() for r in caplog.records if "keep it across" in r.getMessage()]
        assert advice.startswith(f"{kernel_name} is {adc.link}: a name such as {kernel_name} ")
        ring = SampleRing(3, int(10 * FS), dtype=np.float64)
        stop = threading.Event()
        thread = threading.Thread(target=src.run, args=(ring, stop), daemon=True)
        thread.start()
        frames = _stream(400, 3)
        for f in frames[:100]:
            adc.write(f)
        first, _ = drain(ring, 100 * FRAME, timeout=10)
        adc.unplug()
        time.sleep(0.5)  # the source lets go of the old device
        squatter = os.openpty()  # another adapter takes its name: ours gets a new one
        assert os.ttyname(squatter[1]) == kernel_name
        adc.plug()
        new_name = os.ttyname(adc.slave)
        assert new_name != kernel_name
        time.sleep(1.0)
        os.set_blocking(adc.master, False)  # read by no one, it would block: fail instead
        for f in frames[100:]:
            assert select.select([], [adc.master], [], 5.0)[1], "the new device is not read"
            assert os.write(adc.master, f) == len(f)
        rest, gaps = drain(ring, 300 * FRAME, timeout=20)
        stop.set()
        thread.join(5)
        for fd in squatter:
            os.close(fd)
    finally:
        adc.close()
    # Nothing was sent while it was out: the frames' sequence goes on, without a gap.
    assert first.shape[0] == 100 * FRAME and rest.shape[0] == 300 * FRAME and gaps == []
    assert check_counter(np.concatenate([first, rest]), 0, 3) == []
    assert src.stats.reconnects == 1 and src.url == new_name
    (back,) = [r.getMessage() for r in caplog.records if "the adapter is back as" in r.getMessage()]
    assert back.startswith(f"{kernel_name}: the adapter is back as {new_name} ({adc.link} points")


def _counts_recording(tmp_path: Path, duration_s: float) -> tuple[Path, Path, np.ndarray]:
    """A simulated 6-channel motor as int16 counts, its scaled .npy twin and a config."""
    cfg_path = tmp_path / "adc.toml"
    lines = ["[acquisition]", 'channels = ["ia", "ib", "ic", "va", "vb", "vc"]']
    for ch, gain in zip(ROLES6, [0.001] * 3 + [0.02] * 3, strict=True):
        lines += [f"[acquisition.scaling.{ch}]", f"gain = {gain}"]
    cfg_path.write_text("\n".join(lines) + "\n")
    scaling = Scaling(offset=np.zeros(6), gain=np.array([0.001] * 3 + [0.02] * 3))
    spec = SimulationSpec(duration_s=duration_s, fault="broken-bar", severity=45.0,
                          voltages=True, seed=7)  # fmt: skip
    counts = np.concatenate([to_counts(x, scaling)[0] for _, x in iter_blocks(spec, MotorConfig())])
    npy = tmp_path / "adc.npy"
    np.save(npy, scaling.apply(counts))  # what the ADC's counts mean, in A and V
    return cfg_path, npy, counts


def start_recording(pty: Pty, cfg: Path, out: Path, raw: Path) -> subprocess.Popen:
    """`edge-agent run --record` reading the ADC on ``pty``, once it reads (start-up:
    imports, the kernels compiled or loaded, the port opened, ends with a line)."""
    env = dict(os.environ, EDGE_AGENT_ACQUISITION__SERIAL__DEVICE=str(pty.link))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg), "--no-model",
         "--out", str(out), "--record", str(raw)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    for line in proc.stderr:
        if "edge-agent run: reading serial" in line:
            break
    assert proc.poll() is None, "edge-agent run ended before reading"
    return proc


def replayed(recording: Path, cfg: Path, out: Path) -> Path:
    """`edge-agent replay` of ``recording`` (15 kS/s) into ``out``."""
    subprocess.run(
        [sys.executable, "-m", "edge_agent", "replay", str(recording), "--fs", "15000",
         "--config", str(cfg), "--no-model", "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def test_run_over_a_serial_line_for_60_s_equals_replay(pty, tmp_path):
    """The issue's acceptance run: 15 kS/s × 6 channels for 60 s through `edge-agent run`."""
    cfg, npy, counts = _counts_recording(tmp_path, 60.0)
    out, raw = tmp_path / "run.jsonl", tmp_path / "raw.npy"
    proc = start_recording(pty, cfg, out, raw)
    emu = Emulator(pty.write, FS, 6, frame_samples=FRAME)
    t0 = time.monotonic()
    emu.play_counts(counts[i : i + 1500] for i in range(0, counts.shape[0], 1500))
    assert time.monotonic() - t0 >= 0.95 * 60  # the real rate
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "samples lost: 0 in transit, 0 overwritten" in err
    assert "frames: 14063 ok, 0 bad CRC, 0 bad headers, 0 bytes of garbage skipped" in err
    # Every sample arrived once, in order: what was received is exactly what was sent.
    got = np.load(raw)
    assert got.shape == counts.shape
    np.testing.assert_array_equal(got, np.load(npy))
    # And the analysis is that of replaying the same samples.
    rep = replayed(npy, cfg, tmp_path / "rep.jsonl")
    live = [json.loads(x) for x in out.read_text().splitlines()]
    offline = [json.loads(x) for x in rep.read_text().splitlines()]
    fl = [r["features"] for r in live if r["type"] == "window"]
    fo = [r["features"] for r in offline if r["type"] == "window"]
    assert len(fl) == len(fo) == 119
    assert fl == fo
    assert all(not r["flags"] for r in live if r["type"] == "window")
    assert fl[-1]["brb_lsb_db"] == pytest.approx(-45.0, abs=0.5)


def test_a_recording_of_a_run_that_lost_frames_replays_as_the_run_went(pty, tmp_path):
    """`run --record` while frames are lost on the line: the recording keeps each lost
    sample as a row of NaN, so that its replay flags the same windows, at the same times,
    with the same features, as the live run. Before, the recording joined the samples
    across each loss, unseen: its replay analysed a phase jump as a motor's signal."""
    cfg, npy, counts = _counts_recording(tmp_path, 8.0)
    frames = [
        encode_frame(counts[i : i + FRAME], seq=k, t_us=round(i / FS * 1e6))
        for k, i in enumerate(range(0, counts.shape[0], FRAME))
    ]
    dropped = {400, 401, 402, 1200}  # 3 frames 1.7 s in, 1 frame 5.1 s in
    out, raw = tmp_path / "run.jsonl", tmp_path / "raw.npy"
    proc = start_recording(pty, cfg, out, raw)
    t0 = time.monotonic()
    for k, frame in enumerate(frames):  # at the real rate, in bursts of 0.1 s
        if k % 23 == 0:
            time.sleep(max(0.0, t0 + k * FRAME / FS - time.monotonic()))
        if k not in dropped:
            pty.write(frame)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"samples lost: {4 * FRAME} in transit" in err
    # The recording: every sample sent, a NaN row in place of each one lost.
    got = np.load(raw)
    lost_rows = np.isnan(got).all(axis=1)
    assert got.shape == counts.shape and np.flatnonzero(lost_rows).tolist() == [
        i for k in sorted(dropped) for i in range(k * FRAME, (k + 1) * FRAME)
    ]
    np.testing.assert_array_equal(got[~lost_rows], np.load(npy)[~lost_rows])
    rep = replayed(raw, cfg, tmp_path / "rep.jsonl")
    live, offline = (
        [r for r in map(json.loads, f.read_text().splitlines()) if r["type"] == "window"]
        for f in (out, rep)
    )
    assert len(live) == len(offline) == 14  # (8 s - 4 frames - 1 s) / 0.5 s + 1
    assert [r["flags"] for r in offline] == [r["flags"] for r in live]
    assert sum("gap" in r["flags"] for r in live) == 4
    assert [r["features"] for r in offline] == [r["features"] for r in live]
    # The live times are the system clock's (edge_agent.clock: fitted to when the samples
    # arrive); the replay's count samples, the lost ones too. So they differ by a constant,
    # the writer's bursts of 0.1 s blurring the first windows.
    shift = [r["t_start"] - o["t_start"] for r, o in zip(live, offline, strict=True)]
    assert shift == pytest.approx([shift[2]] * len(shift), abs=0.15)
    assert shift[2:] == pytest.approx([shift[2]] * (len(shift) - 2), abs=0.006)


def test_adc_emulate_command_writes_scaled_frames_to_a_device(pty, tmp_path):
    from click.testing import CliRunner

    from edge_agent.acquisition.framing import FrameParser
    from edge_agent.cli import main

    cfg = tmp_path / "adc.toml"
    scaling = [f"[acquisition.scaling.{c}]\ngain = 0.001\n" for c in ("ia", "ib", "ic")]
    cfg.write_text("".join(scaling))
    got = bytearray()
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                got.extend(os.read(pty.master, 1 << 16))
            except BlockingIOError:
                time.sleep(0.01)

    os.set_blocking(pty.master, False)
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    # The emulator opens the device end, as it would a USB serial adapter's; the test reads
    # the other end, where the analysis would be.
    res = CliRunner().invoke(main, ["adc-emulate", os.ttyname(pty.slave), "--duration", "2",
                                    "--speed", "0", "--config", str(cfg)])  # fmt: skip
    time.sleep(0.5)
    done.set()
    thread.join(2)
    assert res.exit_code == 0, res.output
    assert "30000 samples in 469 frames" in res.output and "0 values saturated" in res.output
    parser = FrameParser(3)
    counts = parser.feed(bytes(got)).samples
    assert counts.shape == (30000, 3) and parser.crc_errors == 0
    # 0.001 A per count: the simulated motor's 8 A rms (11.3 A peak) spans about ±11300.
    assert 9000 < np.abs(counts).max() < 14000
