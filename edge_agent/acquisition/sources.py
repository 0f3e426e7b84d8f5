"""Where samples come from: a serial ADC, a TCP socket, a recording, or the simulator.

Every source is a producer for a :class:`~edge_agent.acquisition.ring.SampleRing`: its
:meth:`Source.run` loop (the acquisition thread) writes blocks of samples in amperes and
volts, marks a gap before the first sample after any loss, and returns when the data end
or ``stop`` is set. The processing thread reads the ring; it never sees which source it is.

- :class:`SerialSource` reads protocol frames (docs/serial-protocol.md) or ASCII lines
  from a device path or a pyserial URL (``socket://``, ``rfc2217://``). It survives an
  unplugged cable: it reopens with a capped, doubling backoff, counts the reconnects and
  marks a gap, and never stitches across the outage. An adapter given by its kernel name
  (/dev/ttyACM0) that comes back under another is followed through its
  ``/dev/serial/by-id`` name.
- :class:`ReplaySource` plays a recording at ``speed`` times real time (0 = as fast as
  the consumer takes it; then it waits for room rather than overrun the ring).
- :class:`SimulatorSource` runs the motor simulator at the real rate.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_agent.acquisition.framing import AsciiParser, FrameParser, Scaling
from edge_agent.acquisition.ports import open_port, stable_name
from edge_agent.acquisition.ring import SampleRing
from edge_agent.config import Config
from edge_agent.errors import ConfigError, EdgeAgentError
from edge_agent.recording import gaps_in

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.1
REMIND_EVERY = 20  # a failed reopen, said once, is said again every this many attempts
READ_TIMEOUT_S = 0.05
PACE_BLOCK_S = 0.01  # live sources release samples in 10 ms blocks


@dataclass
class SourceStats:
    """Counters of one source, cumulative (the daemon reports them)."""

    samples: int = 0  # samples delivered to the ring
    frames: int = 0
    crc_errors: int = 0
    bad_headers: int = 0
    bad_lines: int = 0
    bytes_skipped: int = 0  # garbage between frames
    lost_samples: int = 0  # known from frame sequence gaps
    gaps: int = 0  # gap marks written to the ring
    reconnects: int = 0
    disconnected_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the acquisition thread so far
    errors: list[str] = field(default_factory=list)  # last few distinct problems


class Source(ABC):
    """A producer of samples in ``roles`` order at ``fs`` Hz."""

    name = "source"
    # Samples arrive as they are taken (an ADC; a recording or the simulator played at
    # speed 1): window times then follow the system clock (edge_agent.clock), else they
    # count samples from the start.
    real_time = True

    def __init__(self, fs: float, roles: list[str]) -> None:
        self.fs = float(fs)
        self.roles = list(roles)
        self.stats = SourceStats()

    def open(self) -> None:  # noqa: B027 - an optional hook: most sources need no opening
        """Acquire what the source reads from, before :meth:`run` (nothing by default)."""

    @abstractmethod
    def run(self, ring: SampleRing, stop: threading.Event) -> None:
        """Write samples to ``ring`` until the data end or ``stop`` is set."""

    def _deliver(
        self,
        ring: SampleRing,
        samples: np.ndarray,
        gaps: Iterable[int],
        gap_lost: Iterable[int] = (),
    ) -> None:
        """Write ``samples`` (n, channels) to the ring, a gap mark before each ``gaps`` row;
        ``gap_lost`` says how many samples each gap lost, where known."""
        lost: dict[int, int] = {}
        counts = itertools.chain(gap_lost, itertools.repeat(0))  # unknown: 0
        for g, n_lost in zip(gaps, counts, strict=False):
            if 0 <= g < samples.shape[0]:
                lost[int(g)] = lost.get(int(g), 0) + int(n_lost)
        cuts = sorted(lost)
        start = 0
        for cut in [*cuts, samples.shape[0]]:
            if cut > start:
                ring.write(samples[start:cut], gap_before=start in lost,
                           lost_before=lost.get(start, 0))  # fmt: skip
                self.stats.gaps += start in lost
            start = cut
        self.stats.samples += samples.shape[0]


def scaling_for(config: Config, roles: list[str] | None = None) -> Scaling:
    """Counts to amperes and volts for ``roles`` (default: the configured channels), from
    ``[acquisition.scaling]`` (identity where a channel has none)."""
    acq = config.acquisition
    rows = [acq.scaling.get(ch) for ch in (roles or acq.channels)]
    return Scaling(
        offset=np.array([r.offset if r else 0.0 for r in rows]),
        gain=np.array([r.gain if r else 1.0 for r in rows]),
        ratio=np.array([r.ratio if r else 1.0 for r in rows]),
    )


# --- serial and TCP ------------------------------------------------------------------


class SerialSource(Source):
    """Frames or ASCII lines from a serial port (or any pyserial URL), with reconnects."""

    name = "serial"

    def __init__(
        self,
        url: str,
        fs: float,
        roles: list[str],
        scaling: Scaling,
        *,
        baud: int = 2_000_000,
        protocol: str = "binary",
        exclusive: bool = True,
        reconnect_max_s: float = 10.0,
    ) -> None:
        super().__init__(fs, roles)
        if protocol not in ("binary", "ascii"):
            raise ConfigError(f"protocol={protocol!r}: expected 'binary' or 'ascii'")
        self.url, self.baud, self.exclusive = url, int(baud), exclusive
        self.protocol = protocol
        self.reconnect_max_s = float(reconnect_max_s)
        self.scaling = scaling
        channels = len(roles)
        self.parser = FrameParser(channels) if protocol == "binary" else AsciiParser(channels)
        self.port = None
        self.by_id: str | None = None  # the adapter's /dev/serial/by-id name, if url is not

    def open(self) -> None:
        """Open the port now: a missing device or a permission problem is an error here,
        at start-up, rather than a silent retry loop."""
        if self.port is not None:
            return
        self.port = open_port(self.url, self.baud, exclusive=self.exclusive, timeout=READ_TIMEOUT_S)
        self.by_id = stable_name(self.url)
        if self.by_id is not None:
            log.warning(
                "%s is %s: a name such as %s can change when the adapter is plugged in "
                "again (while running, edge-agent follows it); set [acquisition.serial] "
                "device = \"%s\" to keep it across restarts", self.url, self.by_id,
                self.url, self.by_id,
            )  # fmt: skip

    def run(self, ring: SampleRing, stop: threading.Event) -> None:
        import serial

        if self.port is None:
            self.open()
        gap_next = False
        cpu0 = time.thread_time()
        while not stop.is_set():
            self.stats.cpu_s = time.thread_time() - cpu0
            try:
                data = self.port.read(max(1, min(self.port.in_waiting, 1 << 16)) or 4096)
            except (serial.SerialException, OSError) as exc:
                self._note(f"{self.url}: read failed: {exc}")
                self._close()
                if not self._reopen(stop):
                    break
                # Bytes in flight are lost. Frames carry a sequence number: the next one
                # tells how many frames the outage cost (counted, and a gap). ASCII lines
                # carry none, so their next sample always follows a gap.
                if isinstance(self.parser, FrameParser):
                    self.parser.resync()
                else:
                    self.parser.reset()
                    gap_next = True
                continue
            if not data:
                continue
            parsed = self.parser.feed(data)
            self._count()
            if parsed.samples.shape[0]:
                gaps, gap_lost = list(parsed.gaps), list(parsed.gap_lost)
                if gap_next:
                    gaps.insert(0, 0)
                    gap_lost.insert(0, 0)  # an ASCII line carries no count of what was lost
                    gap_next = False
                self._deliver(ring, self.scaling.apply(parsed.samples), gaps, gap_lost)
        self._close()

    def _count(self) -> None:
        """Copy the parser's cumulative counters into the source's."""
        p, s = self.parser, self.stats
        if isinstance(p, FrameParser):
            s.frames, s.crc_errors, s.bad_headers = p.frames, p.crc_errors, p.bad_headers
            s.bytes_skipped, s.lost_samples = p.bytes_skipped, p.lost_samples
        else:
            s.bad_lines = p.bad_lines

    def _note(self, message: str) -> None:
        log.warning(message)
        self.stats.errors = [*self.stats.errors[-4:], message]

    def _close(self) -> None:
        if self.port is not None:
            try:
                self.port.close()
            except Exception:  # closing a port that vanished may fail in any way
                pass
            self.port = None

    def _reopen(self, stop: threading.Event) -> bool:
        """Reopen with a doubling backoff capped at reconnect_max_s; False if stopped.

        A failure is said once (and every REMIND_EVERY attempts at INFO), not at every
        attempt. An adapter whose by-id name was found at open is reopened by that name:
        back under another kernel name (ttyACM0 became ttyACM1), it is followed, and a
        device that took its old name (another adapter) is not read in its place."""
        t0 = time.monotonic()
        delay = BACKOFF_START_S
        said, attempts = None, 0
        while not stop.wait(delay):
            attempts += 1
            device = self.url if self.by_id is None else self.by_id
            try:
                self.port = open_port(
                    device, self.baud, exclusive=self.exclusive, timeout=READ_TIMEOUT_S
                )
            except EdgeAgentError as exc:
                message = str(exc)
                if message != said:
                    self._note(message)
                    said = message
                elif attempts % REMIND_EVERY == 0:
                    log.info("%s: not reopened after %d attempts (%.0f s): %s", self.url,
                             attempts, time.monotonic() - t0, message)  # fmt: skip
                delay = min(2 * delay, self.reconnect_max_s)
                continue
            self.stats.reconnects += 1
            self.stats.disconnected_s += time.monotonic() - t0
            moved = None if self.by_id is None else os.path.realpath(self.by_id)
            if moved is not None and moved != os.path.realpath(self.url):
                log.warning(
                    "%s: the adapter is back as %s (%s points there now): reading it; set "
                    "[acquisition.serial] device = \"%s\" to keep it across restarts",
                    self.url, moved, self.by_id, self.by_id,
                )  # fmt: skip
                self.url = moved
            log.warning("%s: reconnected after %.1f s", self.url, time.monotonic() - t0)
            return True
        self.stats.disconnected_s += time.monotonic() - t0
        return False


# --- paced sources: replay and simulator ---------------------------------------------


class _Paced(Source):
    speed = 1.0

    @property
    def real_time(self) -> bool:  # type: ignore[override]
        return self.speed == 1.0


class _Pacer:
    """Releases sample ``k`` no earlier than ``k / (fs · speed)`` after the first call."""

    def __init__(self, fs: float, speed: float) -> None:
        self.rate = fs * speed
        self.t0: float | None = None

    def wait(self, k: int, stop: threading.Event) -> bool:
        if self.rate <= 0:
            return not stop.is_set()
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        ahead = self.t0 + k / self.rate - now
        return not (ahead > 0 and stop.wait(ahead)) and not stop.is_set()


def _blocks(x: np.ndarray, n: int) -> Iterator[tuple[int, np.ndarray]]:
    for i in range(0, x.shape[0], n):
        yield i, x[i : i + n]


class ReplaySource(_Paced):
    """A recording played at ``speed`` times real time (0 = as fast as it is consumed)."""

    name = "replay"

    def __init__(self, path: str | Path, speed: float = 1.0, **open_kw) -> None:
        from edge_agent.recording import open_recording

        self.recording = open_recording(path, **open_kw)
        super().__init__(self.recording.fs, self.recording.roles)
        self.speed = float(speed)

    def run(self, ring: SampleRing, stop: threading.Event) -> None:
        pacer = _Pacer(self.fs, self.speed)
        block = max(1, round(PACE_BLOCK_S * self.fs))
        try:
            for chunk in self.recording.chunks():
                for i, piece in _blocks(chunk.samples, block):
                    gaps, lost = gaps_in(chunk, i, i + piece.shape[0])
                    if not pacer.wait(self.stats.samples, stop):
                        return
                    if self.speed <= 0:  # as fast as possible, but never overrun the ring
                        while ring.capacity - ring.available < piece.shape[0]:
                            if stop.wait(0.002):
                                return
                    self._deliver(ring, piece, gaps, lost)
        finally:
            self.recording.close()


class SimulatorSource(_Paced):
    """The motor simulator (edge_agent.simulate) delivering samples at the real rate."""

    name = "simulator"

    def __init__(self, config: Config, speed: float = 1.0) -> None:
        from edge_agent.simulate import SimulationSpec, channel_names, validate_spec

        sim = config.acquisition.simulator
        self.spec = SimulationSpec(
            fs=config.acquisition.fs,
            duration_s=sim.duration_s,
            supply_hz=config.motor.supply_hz or config.motor.rated_hz,
            load=sim.load,
            fault=sim.fault,
            severity=sim.severity,
            onset_s=sim.onset_s,
            voltages=sim.voltages,
            seed=sim.seed,
        )
        try:
            validate_spec(self.spec, config.motor)
        except ValueError as exc:
            raise ConfigError(f"[acquisition.simulator]: {exc}") from None
        self.motor = config.motor
        super().__init__(self.spec.fs, channel_names(self.spec))
        self.speed = float(speed)

    def run(self, ring: SampleRing, stop: threading.Event) -> None:
        from edge_agent.simulate import iter_blocks

        pacer = _Pacer(self.fs, self.speed)
        for _, x in iter_blocks(self.spec, self.motor, block_s=PACE_BLOCK_S):
            if not pacer.wait(self.stats.samples, stop):
                return
            if self.speed <= 0:
                while ring.capacity - ring.available < x.shape[0]:
                    if stop.wait(0.002):
                        return
            self._deliver(ring, x, ())


def make_source(config: Config, *, replay_path: str | Path | None = None) -> Source:
    """The source that ``[acquisition] source`` names, built from the config."""
    acq = config.acquisition
    kind = "replay" if replay_path is not None else acq.source
    if kind == "serial":
        s = acq.serial
        return SerialSource(
            s.device, acq.fs, list(acq.channels), scaling_for(config), baud=s.baud,
            protocol=s.protocol, exclusive=s.exclusive, reconnect_max_s=s.reconnect_max_s,
        )  # fmt: skip
    if kind == "tcp":
        t = acq.tcp
        return SerialSource(
            f"socket://{t.host}:{t.port}", acq.fs, list(acq.channels), scaling_for(config),
            protocol=t.protocol, exclusive=False, reconnect_max_s=t.reconnect_max_s,
        )  # fmt: skip
    if kind == "replay":
        path = replay_path if replay_path is not None else acq.replay.path
        if path is None:
            raise ConfigError("[acquisition] source = 'replay' needs [acquisition.replay] path")
        # A .npy file has no time column: its rate is the configured one. A CSV's t_s
        # column gives its own (a CSV without one needs --fs on replay instead).
        fs = acq.fs if Path(path).suffix.lower() == ".npy" else None
        return ReplaySource(path, speed=acq.replay.speed, fs=fs)
    return SimulatorSource(config)
