"""ADC emulator: what it plays over a real pseudo-terminal or socket arrives complete, in
order and at the real rate, and parses back to the samples that were played."""

from __future__ import annotations

import errno
import functools
import math
import os
import selectors
import socket
import threading
import time
import tty

import numpy as np
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_agent.acquisition.emulator import (
    Emulator,
    SinkError,
    check_counter,
    counter_blocks,
    line_rate,
    open_sink,
    to_counts,
)
from edge_agent.acquisition.framing import (
    AsciiParser,
    FrameParser,
    Scaling,
    encode_frame,
    frame_size,
)
from edge_agent.acquisition.ports import port_error
from edge_agent.config import MotorConfig
from edge_agent.errors import AccessDeniedError, InputMissingError
from edge_agent.simulate import SimulationSpec, iter_blocks

SEQ_MOD = 2**32


@pytest.fixture
def pty_pair():
    """(master, slave) file descriptors of a pseudo-terminal, both ends raw."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    yield master, slave
    for fd in (master, slave):
        try:
            os.close(fd)
        except OSError:
            pass


class Reader(threading.Thread):
    """Reads a file descriptor (a pty master, a socket) and feeds a parser as bytes come."""

    def __init__(self, fd, parser):
        super().__init__(name="test-reader", daemon=True)
        self.fd, self.parser = fd, parser
        self.parts, self.nbytes = [], 0
        self.done = threading.Event()

    def run(self):
        with selectors.DefaultSelector() as sel:
            sel.register(self.fd, selectors.EVENT_READ)
            while True:
                if not sel.select(timeout=0.05):
                    if self.done.is_set():
                        return
                    continue
                try:
                    data = os.read(self.fd, 1 << 16)
                except OSError:  # EIO: the other end closed
                    return
                if not data:
                    return
                self.nbytes += len(data)
                got = self.parser.feed(data)
                if got.samples.shape[0]:
                    self.parts.append(got.samples)

    def finish(self, expected_bytes, timeout=10.0):
        """Wait for ``expected_bytes``, then stop; the samples received."""
        end = time.monotonic() + timeout
        while self.nbytes < expected_bytes and time.monotonic() < end and self.is_alive():
            time.sleep(0.01)
        self.done.set()
        self.join(timeout)
        if not self.parts:
            return np.empty((0, self.parser.channels))
        return np.concatenate(self.parts)


def counter(channels, n, start=0):
    return np.concatenate(list(counter_blocks(channels, n, max(n, 1), start=start)))


# --------------------------------------------------------------------------------------
# Over a pseudo-terminal at the real rate


def test_three_seconds_of_6ch_15ks_arrive_complete_at_real_rate(pty_pair):
    master, slave = pty_pair
    fs, ch, duration, seq0 = 15000, 6, 3.0, 4_000_000_000
    n = round(fs * duration)
    parser = FrameParser(ch)
    reader = Reader(master, parser)
    reader.start()
    # pyserial opens the pty by name, as it would open /dev/ttyUSB0.
    write, close = open_sink(os.ttyname(slave), 2_000_000)
    try:
        emu = Emulator(write, fs, ch, start_seq=seq0)
        t0, c0 = time.perf_counter(), time.thread_time()
        emu.play_counts(counter_blocks(ch, n, 1500))
        elapsed, cpu = time.perf_counter() - t0, time.thread_time() - c0
        got = reader.finish(emu.stats.bytes)
    finally:
        close()
    print(f"played {duration} s in {elapsed:.3f} s, emulator thread CPU {cpu / elapsed:.1%}")

    assert elapsed >= 0.95 * duration  # paced: never faster than the signal
    frames = math.ceil(n / 64)  # 704: 703 full frames and one of 8 samples
    st = emu.stats
    assert (st.frames, st.samples, st.clipped) == (frames, n, 0)
    assert st.bytes == (frames - 1) * frame_size(64, ch) + frame_size(n % 64, ch)
    assert reader.nbytes == st.bytes
    assert got.shape == (n, ch)
    assert check_counter(got, 0, ch) == []
    assert parser.frames == frames
    assert (parser.crc_errors, parser.bad_headers, parser.bytes_skipped) == (0, 0, 0)
    assert (parser.lost_frames, parser.lost_samples, parser.seq_restarts) == (0, 0, 0)
    assert parser.last_seq == (seq0 + frames - 1) % SEQ_MOD
    assert parser.last_t_us == (frames - 1) * 64 * 10**6 // fs
    assert emu.next_seq == (seq0 + frames) % SEQ_MOD


def test_no_byte_leaves_before_its_sample_time():
    """Each write carries whole frames of ~10 ms; none goes out before the last of its
    samples would have been acquired, and the schedule does not drift."""
    fs, ch, n = 4000, 3, 4000
    times, sizes = [], []

    def write(data):
        times.append(time.perf_counter())
        sizes.append(len(data))

    emu = Emulator(write, fs, ch, frame_samples=20)
    t0 = time.perf_counter()
    emu.play_counts(counter_blocks(ch, n, 333))
    assert emu.batch_samples == 40  # 10 ms at 4 kHz, a whole number of frames
    assert sizes == [2 * frame_size(20, ch)] * (n // 40)
    sent = np.cumsum(sizes) // frame_size(20, ch) * 20  # samples out after each write
    assert np.all(np.array(times) - t0 >= sent / fs)
    assert times[-1] - t0 >= n / fs


def test_ascii_round_trip_over_pty(pty_pair):
    master, slave = pty_pair
    fs, ch, n = 2000, 3, 1000
    start = 10_800  # the counter crosses 32767 -> -32768 on the way
    parser = AsciiParser(ch)
    reader = Reader(master, parser)
    reader.start()
    emu = Emulator(functools.partial(os.write, slave), fs, ch, protocol="ascii")
    t0 = time.perf_counter()
    emu.play_counts(counter_blocks(ch, n, 128, start=start))
    elapsed = time.perf_counter() - t0
    got = reader.finish(emu.stats.bytes)

    assert elapsed >= 0.95 * n / fs
    assert (emu.stats.samples, emu.stats.frames) == (n, 0)
    assert reader.nbytes == emu.stats.bytes
    assert (parser.lines, parser.bad_lines) == (n, 0)
    np.testing.assert_array_equal(got, counter(ch, n, start))
    assert check_counter(got, start, ch) == []
    assert got.min() < 0 < got.max()


# --------------------------------------------------------------------------------------
# What the bytes are


def test_bytes_are_encode_frame_frame_by_frame_and_the_stream_continues():
    buf = bytearray()
    fs, ch, seq0 = 1000, 2, SEQ_MOD - 3  # seq wraps 2**32-1 -> 0
    emu = Emulator(buf.extend, fs, ch, frame_samples=16, realtime=False, start_seq=seq0)
    x = counter(ch, 300)
    emu.play_counts(x[:100])  # 6 full frames and a short one of 4
    emu.play_counts(x[100:])  # a second call continues seq and t_us
    starts = [*range(0, 100, 16), *range(100, 300, 16)]
    ends = [*starts[1:], 300]
    expected = b"".join(
        encode_frame(x[a:b], (seq0 + i) % SEQ_MOD, a * 10**6 // fs)
        for i, (a, b) in enumerate(zip(starts, ends, strict=True))
    )
    assert bytes(buf) == expected
    assert emu.stats.frames == len(starts)
    parser = FrameParser(ch)
    got = parser.feed(bytes(buf))
    assert check_counter(got.samples, 0, ch) == []
    assert (parser.lost_frames, parser.seq_restarts, parser.crc_errors) == (0, 0, 0)


def test_t_us_for_a_non_integer_rate():
    buf = bytearray()
    fs = 1000 / 3  # 3000 µs per sample, not exact in binary
    emu = Emulator(buf.extend, fs, 1, frame_samples=10, realtime=False)
    emu.play_counts(counter(1, 100))
    parser = FrameParser(1)
    parser.feed(bytes(buf))
    assert parser.last_t_us in (89 * 3000 + 2999, 90 * 3000)  # floor of 90 * 3000.0000...


def test_physical_samples_round_trip_within_half_a_count():
    spec = SimulationSpec(fs=15000.0, duration_s=0.5, voltages=True, seed=3)
    scaling = Scaling(
        offset=[2048, 2048, 2048, 0, 0, 0], gain=[8e-5, 8e-5, 8e-5, 0.05, 0.05, 0.05], ratio=400
    )
    blocks = list(iter_blocks(spec, MotorConfig(), block_s=0.1))
    buf = bytearray()
    emu = Emulator(buf.extend, spec.fs, 6, realtime=False)
    emu.play(iter(blocks), scaling)  # (t_s, samples) pairs as iter_blocks yields them
    x = np.concatenate([b[1] for b in blocks])
    got = scaling.apply(FrameParser(6).feed(bytes(buf)).samples)
    assert emu.stats.clipped == 0
    assert got.shape == x.shape
    assert np.all(np.abs(got - x) <= 0.5 * scaling.gain * scaling.ratio + 1e-12)

    # A range too small for the signal saturates, and the emulator counts it.
    small = Scaling(0, 1e-4, 1)  # +-3.3 A and V: the currents of 10 A rated clip
    emu = Emulator(bytearray().extend, spec.fs, 6, realtime=False)
    emu.play(x, small)
    assert emu.stats.clipped == to_counts(x, small)[1] > 0


# --------------------------------------------------------------------------------------
# Counts and the counter signal


@settings(max_examples=60, deadline=None)
@given(
    data=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 50), st.just(3)),
        elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    ),
    offset=st.lists(st.integers(-2048, 4096), min_size=3, max_size=3),
    gain=st.lists(
        st.floats(1e-3, 10.0).flatmap(lambda g: st.sampled_from([g, -g])), min_size=3, max_size=3
    ),
    ratio=st.floats(0.01, 100.0),
)
def test_to_counts_inverts_scaling_and_counts_saturation(data, offset, gain, ratio):
    scaling = Scaling(offset, gain, ratio)
    counts, clipped = to_counts(data, scaling)
    assert counts.dtype == np.int16
    exact = data / (np.array(gain) * ratio) + np.array(offset)
    inside = (exact >= -32768.5) & (exact <= 32767.5)
    assert np.all(np.abs(counts[inside] - exact[inside]) <= 0.5 + 1e-9)
    back = scaling.apply(counts)
    step = np.abs(scaling.gain * scaling.ratio)
    assert np.all((np.abs(back - data) <= 0.5 * step + 1e-9 * np.abs(data) + 1e-12)[inside])
    assert np.all(counts[exact > 32767.5] == 32767)
    assert np.all(counts[exact < -32768.5] == -32768)
    # Exactly at a half count, rint may round either way: count only the sure ones.
    sure = np.abs(np.abs(exact - 0.5) - 32768) > 1e-6
    assert np.count_nonzero(~inside & sure) <= clipped <= np.count_nonzero(~inside | ~sure)


def test_to_counts_saturates_infinities_and_sends_nan_as_zero_input():
    scaling = Scaling([2048, 0], 0.01)
    x = np.array([[np.inf, -np.inf], [np.nan, np.nan], [0.0, 327.67], [-20.48, -327.68]])
    counts, clipped = to_counts(x, scaling)
    assert counts.tolist() == [[32767, -32768], [2048, 0], [2048, 32767], [0, -32768]]
    assert clipped == 4
    with pytest.raises(ValueError, match="zero"):
        to_counts(x, Scaling(0, [1.0, 0.0]))
    with pytest.raises(ValueError, match="channels"):
        to_counts(x, Scaling([0, 0, 0], 1.0))


@pytest.mark.parametrize("block", [1, 7, 64, 100_000])
def test_counter_is_the_same_whatever_the_block(block):
    x = np.concatenate(list(counter_blocks(6, 20_000, block)))  # wraps 65536 once
    assert x.dtype == np.int16 and x.shape == (20_000, 6)
    assert x[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert x[5462].tolist() == [32772 - 65536 + i for i in range(6)]  # 5462 * 6 = 32772
    assert check_counter(x, 0, 6) == []


def test_check_counter_finds_loss_repeat_reorder_and_a_wrong_start():
    x = counter(3, 1000, start=500)
    assert check_counter(x, 500, 3) == []
    assert check_counter(x, 501, 3) == [0]
    assert check_counter(x, None, 3) == []
    lost = np.concatenate([x[:100], x[164:]])  # one 64-sample frame missing
    assert check_counter(lost, 500, 3) == [100]
    repeated = np.concatenate([x[:164], x[100:]])
    assert check_counter(repeated, 500, 3) == [164]
    swapped = x.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    assert check_counter(swapped, 500, 3) == [10, 11, 12]
    mixed = x.copy()
    mixed[20, [0, 1]] = mixed[20, [1, 0]]  # channels crossed within a sample
    assert check_counter(mixed, 500, 3) == [20, 21]  # 20 is corrupt; 21 does not follow it
    assert check_counter(x.astype(np.float64), 500, 3) == []  # as AsciiParser returns it


# --------------------------------------------------------------------------------------
# Pace, stop, slow and partial sinks


def test_realtime_false_sends_as_fast_as_possible():
    buf = bytearray()
    fs, n = 100, 1000  # 10 s of signal
    emu = Emulator(buf.extend, fs, 4, realtime=False)
    t0 = time.perf_counter()
    emu.play_counts(counter_blocks(4, n, 250))
    assert time.perf_counter() - t0 < n / fs / 2  # milliseconds in practice
    assert check_counter(FrameParser(4).feed(bytes(buf)).samples, 0, 4) == []


def test_stop_ends_play_early_and_what_was_sent_is_intact():
    buf = bytearray()
    fs, ch, n = 1000, 3, 60_000  # a minute of signal
    emu = Emulator(buf.extend, fs, ch)
    player = threading.Thread(
        target=emu.play_counts, args=(counter_blocks(ch, n, 100),), name="test-play"
    )
    player.start()
    time.sleep(0.3)
    emu.stop()
    player.join(timeout=5)
    assert not player.is_alive()
    assert emu.stopped
    assert 0 < emu.stats.samples < n
    got = FrameParser(ch).feed(bytes(buf)).samples
    assert got.shape[0] == emu.stats.samples
    assert check_counter(got, 0, ch) == []
    sent = emu.stats.bytes
    emu.play_counts(counter_blocks(ch, 1000, 100))  # stopped for good: returns at once
    assert emu.stats.bytes == sent


def test_a_slow_sink_makes_late_batches():
    def slow_write(data):
        time.sleep(0.03)  # three batch periods per batch: the host cannot keep up

    emu = Emulator(slow_write, 1000, 1, frame_samples=10)  # batches of 10 samples, 10 ms
    emu.play_counts(counter_blocks(1, 200, 200))
    assert emu.stats.batches == 20
    assert emu.stats.late_batches > 0
    assert emu.stats.max_late_s > 0.01


def test_partial_writes_are_completed():
    buf = bytearray()

    def write_some(data):  # like socket.send or os.write on a full buffer
        take = min(len(data), 100)
        buf.extend(data[:take])
        return take

    emu = Emulator(write_some, 15000, 6, realtime=False)
    emu.play_counts(counter_blocks(6, 3000, 500))
    assert len(buf) == emu.stats.bytes
    assert check_counter(FrameParser(6).feed(bytes(buf)).samples, 0, 6) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fs": 0}, "fs"),
        ({"channels": 17}, "channels"),
        ({"protocol": "hex"}, "protocol"),
        ({"frame_samples": 0}, "frame_samples"),
        ({"start_seq": SEQ_MOD}, "start_seq"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    args = {"write": bytearray().extend, "fs": 1000, "channels": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        Emulator(**args)


def test_bad_blocks_are_refused():
    emu = Emulator(bytearray().extend, 1000, 3, realtime=False)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        emu.play_counts([np.zeros((10, 2), dtype=np.int16)])
    with pytest.raises(TypeError, match="Scaling"):
        emu.play_counts([np.zeros((10, 3))])
    with pytest.raises(ValueError, match="int16"):
        emu.play_counts([np.full((10, 3), 40000)])


def test_line_rate_matches_the_link_budget_of_the_spec():
    assert line_rate(15000, 6) == 184_688  # docs/serial-protocol.md: 184.7 kB/s
    assert line_rate(15000, 6, "ascii") == 15000 * 6 * 7


# --------------------------------------------------------------------------------------
# Sinks


def test_open_sink_on_a_missing_device_names_it():
    with pytest.raises(InputMissingError, match=r"/dev/ttyUSB-none: no such serial device"):
        open_sink("/dev/ttyUSB-none", 115200)


def test_open_sink_on_something_that_is_not_a_serial_port():
    with pytest.raises(InputMissingError, match="/dev/null: not a serial port"):
        open_sink("/dev/null", 115200)


def test_open_sink_without_permission_names_the_dialout_group(pty_pair):
    name = os.ttyname(pty_pair[1])
    os.chmod(name, 0)
    if os.geteuid() != 0:
        with pytest.raises(AccessDeniedError, match="dialout"):
            open_sink(name, 115200)
        return
    # Root opens any device: try it as 'nobody', as a service user without 'dialout' would,
    # in a forked child (everything it needs is already imported).
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                open_sink(name, 115200)
            except AccessDeniedError as exc:
                code = 0 if "permission denied" in str(exc) and "dialout" in str(exc) else 2
            except BaseException:
                code = 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_permission_denied_message_names_the_dialout_group():
    # The exception pyserial raises for EACCES (as a non-root user gets it).
    exc = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: denied")
    err = port_error("/dev/ttyUSB0", exc)
    assert isinstance(err, AccessDeniedError) and err.exit_code == 77
    assert str(err).startswith("/dev/ttyUSB0: permission denied")
    assert "dialout" in str(err)


def test_open_sink_socket_url_round_trip():
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"socket://127.0.0.1:{server.getsockname()[1]}"
        write, close = open_sink(url, 115200)
        conn, _ = server.accept()
        with conn:
            parser = FrameParser(3)
            reader = Reader(conn.fileno(), parser)
            reader.start()
            emu = Emulator(write, 15000, 3, realtime=False)
            emu.play_counts(counter_blocks(3, 5000, 1000))
            close()
            got = reader.finish(emu.stats.bytes)
    assert reader.nbytes == emu.stats.bytes
    assert check_counter(got, 0, 3) == [] and got.shape == (5000, 3)


def test_open_sink_refused_connection_names_the_url():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    with pytest.raises(InputMissingError, match=rf"socket://127.0.0.1:{port}: connection refused"):
        open_sink(f"socket://127.0.0.1:{port}", 115200)


def test_a_device_that_goes_away_raises_a_named_error(pty_pair):
    master, slave = pty_pair
    name = os.ttyname(slave)
    write, close = open_sink(name, 115200)
    os.close(master)
    with pytest.raises(SinkError, match=f"{name}: cannot write"):
        write(b"x" * 100)
    close()
    close()
