"""An ADC board in software: plays samples out as protocol v1 frames or ASCII lines.

The emulator writes what a board running the firmware of ``docs/serial-protocol.md`` would
write, at the rate it would write it, to any byte sink: a serial port (a USB-UART adapter
looped to the edge box), one end of a pseudo-terminal, or a TCP socket. It is the
reference a firmware author can diff against, and the way to test the wiring, the baud
rate and the receiver without a motor.

Pacing. With ``realtime=True`` the samples are released in batches of about
``batch_s`` (10 ms): a batch leaves once its last sample has been "acquired", i.e. the
bytes of sample k never leave before ``k / fs`` after :meth:`Emulator.play` started,
and a whole frame is on the wire no more than about one batch after a real board would
have sent it. Deadlines are computed from the start time and the sample index, never by
adding up sleeps, so there is no drift however long it runs; a batch that could only be
sent more than one batch period after its deadline (a slow sink, a slow sample source, an
overloaded host) is counted in ``late_batches`` and the schedule catches up.

Lifecycle: the caller owns the sink; the emulator only calls ``write`` (from the thread
that called ``play``) and never closes it. :meth:`Emulator.stop` may be called from any
thread (or a signal handler); it ends ``play`` before the next batch, at once if ``play``
is waiting for a deadline. A ``write`` that blocks because the sink does not drain (a
pseudo-terminal or socket that nobody reads) is not interrupted: a real UART always
drains at its line rate, so that only happens with virtual sinks.

A counter signal (:func:`counter_blocks`, :func:`check_counter`) makes end-to-end checks
exact: every sample carries its own index, so a lost, repeated or reordered sample
anywhere between the emulator and the receiver is found and located.
"""

from __future__ import annotations

import binascii
import math
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from edge_agent.acquisition.framing import (
    CRC_SIZE,
    MAX_CHANNELS,
    MAX_SAMPLES,
    SEQ_MODULUS,
    SYNC,
    VERSION,
    Scaling,
    encode_frame,
    frame_size,
)
from edge_agent.acquisition.ports import open_port
from edge_agent.errors import EdgeAgentError

__all__ = [
    "PROTOCOLS",
    "Emulator",
    "EmulatorStats",
    "SinkError",
    "check_counter",
    "counter_blocks",
    "line_rate",
    "open_sink",
    "to_counts",
]

PROTOCOLS = ("binary", "ascii")
INT16_MIN, INT16_MAX = -32768, 32767
DEFAULT_BATCH_S = 0.010
# Longest ASCII value: "-32768".
_ASCII_VALUE_BYTES = 6


class SinkError(EdgeAgentError):
    """The byte sink (serial device, pseudo-terminal, socket URL) cannot be opened or written."""


# --------------------------------------------------------------------------------------
# Counts


def to_counts(samples: np.ndarray, scaling: Scaling) -> tuple[np.ndarray, int]:
    """Physical samples -> int16 ADC counts, the inverse of :meth:`Scaling.apply`.

    ``samples`` has shape (n, channels) in A or V; ``scaling`` holds one value per channel
    (or one for all). Each value becomes ``rint(x / (gain * ratio) + offset)``, so
    ``scaling.apply(counts)`` is within half a count of ``x``. Values outside the int16
    range saturate at -32768 or 32767, as a real ADC's output does at full scale; NaN
    (which no ADC can send) becomes the offset, the count of a zero input. Returns
    ``(counts, clipped)`` where ``clipped`` is how many values saturated or were NaN.

    Example: ``to_counts(np.array([[0.161, -330.0]]), Scaling(2048, 3.3 / 4096 / 10, 2000))``
    gives counts ``[[2049, 0]]``, none clipped.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"samples has shape {x.shape}; expected (n_samples, channels)")
    if scaling.channels not in (1, x.shape[1]):
        raise ValueError(
            f"scaling has {scaling.channels} channels and samples have {x.shape[1]}; "
            "expected the same number (or a scaling of one channel for all)"
        )
    scale = scaling.gain * scaling.ratio
    if np.any(scale == 0):
        raise ValueError(f"gain * ratio = {scale.tolist()} has a zero; cannot invert the scaling")
    with np.errstate(over="ignore", invalid="ignore"):
        q = np.rint(x / scale + scaling.offset)
    nan = np.isnan(q)
    clipped = int(np.count_nonzero((q < INT16_MIN) | (q > INT16_MAX) | nan))
    if nan.any():
        q = np.where(nan, np.rint(np.broadcast_to(scaling.offset, x.shape)), q)
    np.clip(q, INT16_MIN, INT16_MAX, out=q)
    return q.astype(np.int16), clipped


def counter_blocks(
    channels: int, n_samples: int, block: int, *, start: int = 0
) -> Iterator[np.ndarray]:
    """A counter signal in int16 blocks of up to ``block`` samples, ``n_samples`` in all.

    Sample k of channel c is ``(k * channels + c) mod 65536`` read as int16, so each value
    names its sample and channel: whatever the framing, batching or line does to the
    stream, :func:`check_counter` finds it. ``start`` is the index of the first sample.
    The signal repeats every ``65536 / gcd(65536, channels)`` samples, so a loss of a
    whole number of periods is invisible to it (the protocol's ``seq`` still shows it).
    """
    if block < 1:
        raise ValueError(f"{block=} must be at least 1")
    if n_samples < 0:
        raise ValueError(f"{n_samples=} must not be negative")
    for k0 in range(start, start + n_samples, block):
        k1 = min(k0 + block, start + n_samples)
        v = np.arange(k0 * channels, k1 * channels, dtype=np.int64) & 0xFFFF
        yield v.astype(np.uint16).view(np.int16).reshape(k1 - k0, channels)


def check_counter(samples: np.ndarray, start_index: int | None, channels: int) -> list[int]:
    """Rows of ``samples`` where the counter of :func:`counter_blocks` breaks.

    ``samples`` has shape (n, channels), any numeric dtype (int16 from
    :class:`FrameParser`, float64 from :class:`AsciiParser`). A row is a break when it
    does not follow the row before it (a loss, a repeat, a reordering: each shows up where
    the stream resumes, not at every later row), when its channels do not belong to one
    sample (then the next row is a break too, as it does not follow a corrupt one), or,
    for row 0, when it is not sample ``start_index`` (None: not checked).
    Returns the sorted row indices; an intact stream gives ``[]``.
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[1] != channels:
        raise ValueError(f"samples has shape {x.shape}; expected (n, {channels})")
    if x.shape[0] == 0:
        return []
    v = x.astype(np.int64) & 0xFFFF
    bad = np.zeros(x.shape[0], dtype=bool)
    bad |= np.any(((v - v[:, :1]) & 0xFFFF) != np.arange(channels), axis=1)
    bad[1:] |= ((v[1:, 0] - v[:-1, 0]) & 0xFFFF) != channels % 65536
    if start_index is not None:
        bad[0] |= v[0, 0] != (start_index * channels) & 0xFFFF
    return np.flatnonzero(bad).tolist()


# --------------------------------------------------------------------------------------
# Encoding


@cache
def _frame_dtype(n_samples: int, channels: int) -> np.dtype:
    """One packed protocol v1 frame, so a batch of frames is one numpy array."""
    return np.dtype(
        [
            ("sync", "<u2"),
            ("version", "u1"),
            ("n_channels", "u1"),
            ("n_samples", "<u2"),
            ("seq", "<u4"),
            ("t_us", "<u8"),
            ("payload", "<i2", (n_samples * channels,)),
            ("crc", "<u2"),
        ]
    )


def _encode_frames(counts: np.ndarray, n: int, seq: np.ndarray, t_us: np.ndarray) -> bytes:
    """Frames of ``n`` samples each from ``counts`` (m * n, channels): the bytes
    ``encode_frame`` would give frame by frame, built in one array (Python runs once per
    frame, for its CRC)."""
    frames, channels = counts.shape[0] // n, counts.shape[1]
    a = np.empty(frames, dtype=_frame_dtype(n, channels))
    a["sync"], a["version"], a["n_channels"], a["n_samples"] = SYNC, VERSION, channels, n
    a["seq"], a["t_us"] = seq, t_us
    a["payload"] = counts.reshape(frames, n * channels)
    raw = a.view(np.uint8).reshape(frames, -1)
    a["crc"] = [binascii.crc_hqx(row[:-CRC_SIZE], 0xFFFF) for row in raw]
    return a.tobytes()


def _encode_lines(counts: np.ndarray) -> bytes:
    """One ``v0,v1,...\\n`` line per sample; a single C-level format call for the batch."""
    m, channels = counts.shape
    line = ",".join(["%d"] * channels) + "\n"
    return ((line * m) % tuple(counts.ravel().tolist())).encode("ascii")


def line_rate(fs: float, channels: int, protocol: str = "binary", frame_samples: int = 64) -> int:
    """Bytes per second the stream needs on the wire (ASCII: the worst case, 6-character
    values). Multiply by 10 for the baud rate of an 8N1 UART: 6 channels at 15 kS/s in
    64-sample frames need 184 688 B/s, about 1.85 Mbaud."""
    if protocol == "ascii":
        return math.ceil(fs * (channels * (_ASCII_VALUE_BYTES + 1)))
    return math.ceil(fs * frame_size(frame_samples, channels) / frame_samples)


# --------------------------------------------------------------------------------------
# The emulator


@dataclass
class EmulatorStats:
    """What :class:`Emulator` has sent since it was made (cumulative over ``play`` calls).

    ``frames`` (binary mode; 0 in ASCII mode), ``samples`` (per channel), ``bytes``,
    ``clipped`` (physical values that saturated the int16 range or were NaN), ``batches``,
    ``late_batches`` (sent more than one batch period after their deadline: the host or
    the sample source could not keep up) and ``max_late_s`` (the worst lateness, s).
    """

    frames: int = 0
    samples: int = 0
    bytes: int = 0
    clipped: int = 0
    batches: int = 0
    late_batches: int = 0
    max_late_s: float = 0.0


def _block_of(item: object) -> np.ndarray:
    """The samples of one item of ``play``'s iterable: an array, a ``(t_s, samples)`` pair
    (``simulate.iter_blocks``) or an object with ``.samples`` (``recording.Chunk``)."""
    if isinstance(item, tuple) and len(item) == 2:
        item = item[1]
    return np.asarray(getattr(item, "samples", item))


class Emulator:
    """Plays ADC samples to ``write`` as a board would: frames (or lines) at ``fs``.

    ``write`` takes bytes, e.g. ``serial.Serial(...).write``, ``functools.partial(os.write,
    fd)`` or the first item of :func:`open_sink`; a return value that is an int smaller
    than the data (``os.write``, ``socket.send``) means a partial write, and the rest is
    sent again. ``fs`` is the sample rate (Hz) and ``channels`` the channel count (1..16).
    ``protocol`` is ``"binary"`` (protocol v1 frames of ``frame_samples`` samples per
    channel, the last one shorter if the data end mid-frame) or ``"ascii"`` (one line of
    integer counts per sample). Frame i of the stream has ``seq = start_seq + i`` (mod 2³²)
    and ``t_us = k * 1e6 // fs`` for its first sample k, counted from the first sample this
    emulator sent: consecutive ``play`` calls continue the stream, like a free-running
    board. ``realtime=False`` sends as fast as the sink takes it; ``speed`` scales the
    real-time pace (2.0 plays twice as fast; ``t_us`` still follows ``fs``).

    One thread plays at a time; :meth:`stop` and :attr:`stats` may be used from any thread.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        fs: float,
        channels: int,
        protocol: str = "binary",
        frame_samples: int = 64,
        realtime: bool = True,
        start_seq: int = 0,
        *,
        speed: float = 1.0,
        batch_s: float = DEFAULT_BATCH_S,
    ) -> None:
        if not callable(write):
            raise TypeError(f"write={write!r} is not callable; expected e.g. serial.Serial.write")
        if not (isinstance(fs, numbers.Real) and math.isfinite(fs) and fs > 0):
            raise ValueError(f"{fs=} must be a positive sample rate in Hz")
        if not (isinstance(channels, numbers.Integral) and 1 <= channels <= MAX_CHANNELS):
            raise ValueError(f"{channels=}; expected 1..{MAX_CHANNELS}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"{protocol=}; expected one of {', '.join(PROTOCOLS)}")
        if not (isinstance(frame_samples, numbers.Integral) and 1 <= frame_samples <= MAX_SAMPLES):
            raise ValueError(f"{frame_samples=}; expected 1..{MAX_SAMPLES}")
        if not (isinstance(start_seq, numbers.Integral) and 0 <= start_seq < SEQ_MODULUS):
            raise ValueError(f"{start_seq=}; expected 0..2**32-1")
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"{speed=} must be a positive factor")
        if not (math.isfinite(batch_s) and batch_s > 0):
            raise ValueError(f"{batch_s=} must be a positive number of seconds")
        self.write = write
        self.fs = float(fs)
        self.channels = int(channels)
        self.protocol = protocol
        self.frame_samples = int(frame_samples)
        self.realtime = bool(realtime)
        self.speed = float(speed)
        self.stats = EmulatorStats()
        self._seq = int(start_seq)
        self._index = 0  # stream index of the next sample to send
        self._fs_int = int(fs) if float(fs).is_integer() else None
        # A batch is a whole number of frames (binary) or of lines, about batch_s long.
        unit = self.frame_samples if protocol == "binary" else 1
        self.batch_samples = max(1, round(batch_s * self.fs / unit)) * unit
        self._stop = threading.Event()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called (then every ``play`` returns at once)."""
        return self._stop.is_set()

    @property
    def next_seq(self) -> int:
        """The ``seq`` of the next frame."""
        return self._seq

    def stop(self) -> None:
        """End ``play`` before its next batch; final for this emulator. Thread-safe."""
        self._stop.set()

    def play_counts(self, blocks: Iterable[np.ndarray] | np.ndarray) -> None:
        """Send blocks of ADC counts, each of shape (n, channels), integers in the int16
        range, in order; return when all are sent or :meth:`stop` was called. A single
        (n, channels) array is one block."""
        if isinstance(blocks, np.ndarray):
            blocks = [blocks]
        self._play(self._checked_counts(_block_of(b)) for b in blocks)

    def play(self, blocks: Iterable[object] | np.ndarray, scaling: Scaling) -> None:
        """Send blocks of physical samples (A, V), shape (n, channels), converted to counts
        with :func:`to_counts`; saturated values are counted in ``stats.clipped``.

        An item may also be a ``(t_s, samples)`` pair as ``simulate.iter_blocks`` yields, or
        an object with ``.samples`` such as ``recording.Chunk``. Keep blocks short (0.1 s,
        say) in real time: the time to produce a block delays the batch after it.
        """
        if scaling.channels not in (1, self.channels):
            raise ValueError(
                f"scaling has {scaling.channels} channels; expected {self.channels} (or 1)"
            )
        if isinstance(blocks, np.ndarray):
            blocks = [blocks]

        def converted() -> Iterator[np.ndarray]:
            for item in blocks:
                x = _block_of(item)
                self._check_shape(x)
                counts, clipped = to_counts(x, scaling)
                self.stats.clipped += clipped
                yield counts

        self._play(converted())

    def _check_shape(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"block has shape {x.shape}; expected (n, {self.channels})")

    def _checked_counts(self, x: np.ndarray) -> np.ndarray:
        self._check_shape(x)
        if x.dtype == np.int16:
            return x
        if x.dtype.kind not in "iu":
            raise TypeError(
                f"block has dtype {x.dtype}; expected integer ADC counts "
                "(use play() with a Scaling for physical values)"
            )
        if x.size and (x.min() < INT16_MIN or x.max() > INT16_MAX):
            raise ValueError(f"block range {x.min()}..{x.max()} does not fit int16")
        return x.astype(np.int16)

    def _t_us(self, k: np.ndarray) -> np.ndarray:
        """ADC timestamps (µs) of stream sample indices ``k`` (int64): exact integer
        arithmetic for an integer ``fs``."""
        if self._fs_int is not None:
            return k * 1_000_000 // self._fs_int
        return np.floor(k * (1e6 / self.fs)).astype(np.int64)

    def _encode(self, counts: np.ndarray) -> tuple[bytes, int]:
        """Bytes of a batch that starts at sample ``self._index``, and its frame count."""
        if self.protocol == "ascii":
            return _encode_lines(counts), 0
        n, m = self.frame_samples, counts.shape[0]
        full = m // n
        parts, frames = [], full + (m % n > 0)
        k = self._index + n * np.arange(frames, dtype=np.int64)
        seq = (self._seq + np.arange(frames, dtype=np.int64)) % SEQ_MODULUS
        t_us = self._t_us(k)
        if full:
            parts.append(_encode_frames(counts[: full * n], n, seq[:full], t_us[:full]))
        if m % n:
            parts.append(encode_frame(counts[full * n :], int(seq[-1]), int(t_us[-1])))
        return b"".join(parts), frames

    def _play(self, blocks: Iterable[np.ndarray]) -> None:
        t0 = time.perf_counter()
        k0 = self._index
        rate = self.fs * self.speed
        batch = self.batch_samples
        period = batch / rate  # of one batch, s
        held: np.ndarray | None = None  # samples short of a whole batch
        for block in blocks:
            if self._stop.is_set():
                return
            if block.shape[0] == 0:
                continue
            x = block if held is None else np.concatenate([held, block])
            whole = x.shape[0] // batch * batch
            for i in range(0, whole, batch):
                if not self._send(x[i : i + batch], t0, k0, rate, period):
                    return
            held = x[whole:] if whole < x.shape[0] else None
        if held is not None:
            self._send(held, t0, k0, rate, period)

    def _send(self, counts: np.ndarray, t0: float, k0: int, rate: float, period: float) -> bool:
        """Encode, wait for the deadline, write; False if stopped."""
        data, frames = self._encode(counts)
        m = counts.shape[0]
        if self.realtime:
            # The batch leaves when its last sample has been acquired.
            deadline = t0 + (self._index + m - k0) / rate
            now = time.perf_counter()
            while now < deadline:
                if self._stop.wait(deadline - now):
                    return False
                now = time.perf_counter()
            late = now - deadline
            if late > period:
                self.stats.late_batches += 1
            self.stats.max_late_s = max(self.stats.max_late_s, late)
        elif self._stop.is_set():
            return False
        if not self._write_all(data):
            return False
        self._index += m
        self._seq = (self._seq + frames) % SEQ_MODULUS
        s = self.stats
        s.frames += frames
        s.samples += m
        s.bytes += len(data)
        s.batches += 1
        return True

    def _write_all(self, data: bytes) -> bool:
        """Write all of ``data``; False if stopped while the sink took nothing."""
        n = self.write(data)
        # None (sendall, some file objects) or the full length: all written.
        while isinstance(n, int) and 0 <= n < len(data):
            data = data[n:]
            if n == 0 and self._stop.wait(0.001):
                return False
            n = self.write(data)
        return True


# --------------------------------------------------------------------------------------
# Sinks


def open_sink(device: str, baud: int) -> tuple[Callable[[bytes], object], Callable[[], None]]:
    """Open a serial device path or a pyserial URL for writing: ``(write, close)``.

    ``device`` is a path (``/dev/ttyUSB0``, a pseudo-terminal's ``/dev/pts/N``) or a URL
    that ``serial.serial_for_url`` knows (``socket://host:port``, ``rfc2217://host:port``,
    ``loop://``). ``baud`` sets the line rate of a real UART (see :func:`line_rate`; it
    means nothing to a pseudo-terminal, a socket or USB CDC). Opening raises the errors of
    :func:`~edge_agent.acquisition.ports.port_error`, naming the device: missing, busy,
    not a serial port or connection refused (exit 66), permission denied (77: the user
    must be in the ``dialout`` group). ``write`` raises :class:`SinkError` when the device
    goes away. ``close`` waits for the
    bytes still queued (a UART's transmit buffer) before closing; calling it twice is fine.
    """
    # Here, so that importing the emulator needs neither pyserial nor termios.
    import termios

    import serial

    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"baud={baud!r} must be a positive integer")
    port = open_port(device, baud, write_timeout=None)

    def write(data: bytes) -> int:
        try:
            return port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise SinkError(f"{device}: cannot write, device gone? ({exc})") from None

    def close() -> None:
        if not port.is_open:
            return
        try:
            port.flush()
        except (serial.SerialException, OSError, termios.error):
            pass  # the device is gone: nothing left to wait for
        finally:
            port.close()

    return write, close
