"""The daemon's main loop: a source thread fills the ring, this thread analyses it.

``edge-agent run`` calls :func:`run`. The acquisition thread (``edge-acq``) runs the
source's producer loop; the calling thread reads the ring, feeds the pipeline and hands
each record to a :class:`~edge_agent.publish.sink.RecordSink` (JSON Lines, event store,
outbox and MQTT), and carries out the commands received over MQTT between chunks. It ends
when the source ends (a recording, a simulated run) or when ``stop`` is set (SIGINT,
SIGTERM), after analysing every sample already received.

Under systemd (``Type=notify``, systemd/edge-agent.service) the loop reports through
:class:`edge_agent.systemd.Notifier`: ``READY=1`` once the kernels are compiled and the
source is open, a ``STATUS=`` line of counters every 10 s, ``WATCHDOG=1`` while the loop
turns (and the MQTT thread lives), ``RELOADING=1`` and ``READY=1`` around a reload
(SIGHUP, which ``systemctl reload`` sends), and ``STOPPING=1`` when it ends.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edge_agent.acquisition.ring import Chunk, RingStats, SampleRing
from edge_agent.acquisition.sources import Source, SourceStats
from edge_agent.clock import SampleClock, rate_warning
from edge_agent.config import Config
from edge_agent.errors import EdgeAgentError, StorageError
from edge_agent.history import lasted
from edge_agent.pipeline import ENERGISED_FOR, Pipeline, PipelineStats
from edge_agent.publish.schema import CommandError
from edge_agent.publish.sink import RecordSink
from edge_agent.recording import NpyWriter
from edge_agent.snapshot import RawHistory
from edge_agent.systemd import Notifier
from edge_agent.wiring import describe_wiring, nameplate_warning

if TYPE_CHECKING:
    from edge_agent.kernel_cache import Stamp
    from edge_agent.publish.mqtt import Conflict, MqttPublisher
    from edge_agent.scoring import Scorer

log = logging.getLogger(__name__)

# Tables whose changes a `reload` command cannot apply to a running pipeline.
RESTART_TABLES = ("acquisition", "motor", "windows", "output", "mqtt", "store")
STOP_POLL_S = 0.2  # a stop is seen this soon while the start waits for a compile


def compile_kernels_apart(stop: threading.Event) -> None:
    """Have a child process compile the kernels into numba's cache.

    LLVM keeps what a compile allocated (about 170 MB here) in the process for good, while
    loading the same kernels from the cache costs little. A daemon that compiled them
    itself on its first start would carry that for as long as it runs, which on a small
    board may be months; compiled apart, the daemon only loads them. If the child fails,
    the daemon compiles them itself, as before. The child's stdout is not the daemon's:
    that may be the records' stream.

    ``-P`` (Python 3.11+): the child must import the daemon's edge_agent, not a source
    tree in the working folder (``python -c`` would put it first on sys.path), e.g. when
    an installed edge-agent is run from the clone it was installed from.

    A stop (``stop`` set, by SIGTERM or Ctrl-C) ends the child and gives the compile up.
    systemd signals every process of the unit, so the child may be the first to go: a
    child that failed is taken for stopped if the stop comes within a second.
    """
    code = "from edge_agent import kernels; kernels.warm_up()"
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    with subprocess.Popen(
        [sys.executable, *safe_path, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    ) as child:
        while (rc := child.poll()) is None and not stop.wait(STOP_POLL_S):
            pass
        if rc is None:
            child.terminate()
            rc = child.wait()
    if rc != 0 and stop.wait(1.0):
        log.info("stopped while compiling the analysis kernels: the next start compiles them")
    elif rc != 0:
        log.warning("compiling the kernels in a child process failed (exit %d): compiling here", rc)


def load_kernels(backend: str, notifier: Notifier, stop: threading.Event) -> None:
    """Compile every kernel and load it, in a child (:func:`compile_kernels_apart`) unless
    numba's cache holds them all already (:mod:`edge_agent.kernel_cache`). Daemons sharing
    the cache compile one at a time; one that waited loads what the other compiled.

    A stop (``stop`` set) while waiting for another's compile or compiling returns at once,
    the kernels not loaded: a stop at a first start need not wait minutes for a compile
    that is given up anyway (systemd kills what has not stopped after 30 s)."""
    from edge_agent.kernel_cache import Stamp, cache_key

    key, stamp = cache_key(backend), Stamp()
    if stamp.holds(key):
        notifier.send("STATUS=loading the analysis kernels from the cache")
        _load_and_stamp(stamp, key, stamped=True)
        return

    def waiting() -> None:
        notifier.send("STATUS=waiting for another edge-agent compiling the analysis kernels")
        log.info(
            "another edge-agent is compiling the analysis kernels into the cache both use "
            "(%s): waiting for it, then loading them", stamp.path.parent,
        )  # fmt: skip

    with stamp.lock(waiting, stop):
        if stop.is_set():
            log.info("stopped while waiting for the other's compile")
            return
        stamped = stamp.holds(key)  # the one waited for stamped them
        if stamped:
            notifier.send("STATUS=loading the analysis kernels from the cache")
        else:
            notifier.send("STATUS=compiling the analysis kernels (minutes on a first start)")
            log.info(
                "compiling the analysis kernels into numba's cache, in a child process "
                "(minutes on a small board): the cache is new, or edge-agent, Python, numba "
                "or the CPU changed since a start last loaded them all from it"
            )
            compile_kernels_apart(stop)
            if stop.is_set():
                return
        _load_and_stamp(stamp, key, stamped)


def _load_and_stamp(stamp: Stamp, key: dict[str, Any], stamped: bool) -> None:
    """Load every kernel; stamp the cache when it held them all, or unstamp it when it
    was stamped but did not."""
    from edge_agent import kernels
    from edge_agent.kernel_cache import cache_misses

    kernels.warm_up()
    missed = cache_misses()
    if not missed:
        if not stamped:
            stamp.write(key)
    elif stamped:
        log.warning(
            "%d kernel signatures were not in numba's cache although %s says it holds them "
            "all: compiled here, so this process keeps the compiler's memory (about 170 MB) "
            "until it stops; the next start compiles them apart again",
            missed, stamp.path,
        )  # fmt: skip
        stamp.remove()


@dataclass
class RunResult:
    source: str
    fs: float
    pipeline: PipelineStats
    source_stats: SourceStats
    ring: RingStats
    wall_s: float
    wiring: dict[str, str] = field(default_factory=dict)  # Pipeline.wiring_seen
    energised: str | None = None  # Pipeline.energised_seen
    # (samples a second the source delivered by the system clock, over how many s), when
    # it delivers at the real rate and long enough to tell (edge_agent.clock)
    rate: tuple[float, float] | None = None

    def summary(self) -> str:
        p, s, r = self.pipeline, self.source_stats, self.ring
        parts = [
            f"{self.source}: {p.describe()}; {p.samples / self.fs:.1f} s of signal in "
            f"{self.wall_s:.1f} s",
            f"samples lost: {s.lost_samples} in transit, {r.overwritten} overwritten "
            f"(analysis fell behind)",
        ]
        if s.frames or s.crc_errors or s.bad_headers:
            parts.append(
                f"frames: {s.frames} ok, {s.crc_errors} bad CRC, {s.bad_headers} bad headers, "
                f"{s.bytes_skipped} bytes of garbage skipped"
            )
        if s.bad_lines:
            parts.append(f"lines: {s.bad_lines} bad")
        if s.reconnects:
            parts.append(f"reconnects: {s.reconnects} ({s.disconnected_s:.1f} s disconnected)")
        if self.wiring:
            parts.append(describe_wiring(p.wiring_windows, self.wiring))
        if self.energised:
            parts.append(f"nameplate: {self.energised}")
        said = rate_warning(self.fs, *self.rate) if self.rate is not None else None
        if said is not None:
            parts.append(f"acquisition: {said}")
        return "; ".join(parts)


def run(
    config: Config,
    source: Source,
    sink: RecordSink,
    *,
    scorer: Scorer | None,
    stop: threading.Event | None = None,
    record: NpyWriter | None = None,
    on_ready: Callable[[], None] | None = None,
    reload: Callable[[], tuple[Config, Scorer | None]] | None = None,
    notifier: Notifier | None = None,
    reload_requested: threading.Event | None = None,
) -> RunResult:
    """Analyse ``source`` until it ends or ``stop`` is set; records go to ``sink``.

    Window times are UNIX times: by the system clock (:class:`ClockWatch`) when the
    source delivers at the real rate, else counted from the start (a recording played
    faster). ``record`` also keeps every sample analysed, as received. ``on_ready`` is
    called once the kernels are compiled and the source is open, just before samples flow.
    ``reload`` reads the configuration and the model again, for the ``reload`` command.
    ``notifier`` tells systemd (default: from the environment; a no-op outside systemd).
    ``reload_requested``, set from any thread (the SIGHUP handler), has the loop reload as
    the ``reload`` command does.
    Raises whatever the source raised, after analysing what it delivered.
    """
    from edge_agent.features import fft_backend

    # Compile every kernel (in a child, see load_kernels) and load it, and build
    # the pipeline (which measures its FFT plans the first time on a machine), before the
    # source opens: a first compile takes longer than the ring holds, and the samples that
    # arrived meanwhile would be lost. Then open it here, so that a missing device or a
    # permission problem is an error at once. A bad EDGE_AGENT_FFT is a configuration
    # error before either.
    own_notifier = notifier is None
    notifier = Notifier() if notifier is None else notifier
    stop = stop or threading.Event()
    load_kernels(fft_backend(), notifier, stop)
    if stop.is_set():  # stopped before it was ready: nothing read, the source not opened
        notifier.stopping("stopping before the analysis kernels were ready")
        if own_notifier:
            notifier.close()
        empty = RingStats(0, 0, 0, 0, 0, 0)
        return RunResult(source.name, source.fs, PipelineStats(), source.stats, empty, 0.0)
    pipe = Pipeline(config, source.fs, source.roles, scorer)
    source.open()
    clock = ClockWatch(SampleClock(source.fs), sink) if source.real_time else None
    if clock is not None:
        clock.clock.start()
        pipe.clock = clock.clock
    else:
        pipe.t0 = time.time()
    # The alerts the last run left open carry on, but those this run cannot judge.
    sink.write(pipe.resume(sink.left_open))
    if on_ready is not None:
        on_ready()
    notifier.ready(f"reading {source.name}")
    t_wall = time.perf_counter()
    # float64: the samples reach the pipeline exactly as a replay of the same values would.
    capacity = max(1, round(config.acquisition.ring_s * source.fs))
    ring = SampleRing(len(source.roles), capacity, dtype="float64")
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            source.run(ring, stop)
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)
        finally:
            ring.close()

    # Snapshots are asked for over MQTT: without a broker, no samples are kept for them.
    takes_commands = sink.publisher is not None and sink.publisher.presence
    history = RawHistory(
        source.fs, source.roles, config.store.snapshot_s if takes_commands else 0.0
    )
    snapshots = config.store.resolved_path.parent / "snapshots"

    def snapshot(command: Any) -> dict[str, Any]:
        name = f"{config.output.site}-{config.output.asset}"
        return history.save(snapshots, name, command.seconds, config.store.snapshots_keep)

    def reload_command(_command: Any) -> dict[str, Any]:
        if reload is None:
            raise CommandError("reload: this run was not started from a configuration")
        new_config, new_scorer = reload()
        sink.write(pipe.reload(new_scorer, new_config.alerts))  # cleared under the old model
        sink.set_model(new_scorer)
        return {
            "model": sink.model_id,
            "threshold": None if new_scorer is None else new_scorer.threshold,
            "applied": ["model", "alerts"],
            "restart_needed": [
                t for t in RESTART_TABLES if getattr(new_config, t) != getattr(config, t)
            ],
        }

    def counters() -> dict[str, Any]:
        return {
            **{f"pipeline_{k}": v for k, v in asdict(pipe.stats).items()},
            **{f"source_{k}": v for k, v in asdict(source.stats).items()},
            "ring_overwritten": ring.stats.overwritten,
            **(clock.counters() if clock is not None else {}),
        }

    def status() -> str:
        p, s = pipe.stats, source.stats
        text = (
            f"{source.name}: {p.windows} windows ({p.anomalous_windows} anomalous, "
            f"{p.flagged_windows} flagged), {p.alerts_raised} alerts raised; samples lost: "
            f"{s.lost_samples + ring.stats.overwritten}"
        )
        if publisher is not None:
            if publisher.connected:
                text += "; MQTT connected"
            else:  # and why, so that the installer need not read the log
                why = publisher.last_error
                text += f"; MQTT disconnected ({why})" if why else "; MQTT disconnected"
            if publisher.conflict is not None:
                text += f"; ANOTHER AGENT PUBLISHES AS THIS ASSET: {publisher.conflict.who}"
        if pipe.scorer is None:
            text += "; no model: no anomaly alerts"
        if pipe.wiring:
            text += "; WIRING: " + "; ".join(pipe.wiring.values())
        if baseline.outside:
            text += "; outside the model's baseline: no anomaly alerts"
        if lines.unread:
            text += "; load or speed unsteady: rotor and bearing lines not read"
        if sink.disk_refused:
            text += f"; DISK FULL OR FAILING: {sink.held} records held in memory, not written"
        if pipe.energised >= ENERGISED_FOR:
            text += "; reads stopped with a running motor's current: check [motor] rated_current"
        if clock is not None and clock.wrong_rate is not None:
            text += (
                f"; SAMPLE RATE {clock.rate_hz:.0f}/s BY THE SYSTEM CLOCK, NOT fs = "
                f"{source.fs:g}: frequencies read wrong"
            )
        return text

    def reload_on_signal() -> None:
        try:
            detail = reload_command(None)
        except (CommandError, EdgeAgentError, ValueError, OSError) as exc:
            log.error("reload refused, going on as before: %s", exc)
            return
        later = ", ".join(detail["restart_needed"])
        log.info(
            "reloaded: model %s, threshold %s%s", detail["model"] or "none", detail["threshold"],
            f"; changes to {later} need a restart" if later else "",
        )  # fmt: skip

    sink.attach(handlers={"snapshot": snapshot, "reload": reload_command}, status_extra=counters)
    publisher = sink.publisher
    overloaded = False  # said so since the current last fell back under the nameplate's
    conflict: Conflict | None = None  # another agent as this asset, told to the plant
    baseline = BaselineWatch()
    lines = LinesWatch(config.windows.hop_s)
    producer = threading.Thread(target=produce, name="edge-acq", daemon=True)
    producer.start()
    try:
        while True:
            ring.wait(0.5)
            chunk = ring.read()
            if chunk:
                lost = sum(max(0, n) for n in chunk.gap_lost)  # known lost before them
                if clock is not None:  # before the windows of these samples are timed
                    clock.update(chunk, lost)
                if record is not None and record.failed is None:
                    try:
                        record.write(chunk.data, chunk.gaps, chunk.gap_lost)
                    except StorageError as exc:  # the recording stops; the analysis not
                        log.error("%s; the analysis goes on", exc)
                if history.capacity:
                    history.push(chunk.data, time.time(), chunk.gaps, chunk.gap_lost)
                before, energised = set(pipe.wiring), pipe.energised_seen
                records = pipe.update(chunk.data, chunk.gaps, chunk.gap_lost)
                sink.write(records, lost)
                report_wiring(before, pipe.wiring, sink)
                overloaded = report_nameplate(overloaded, records, config, sink)
                if energised is None and pipe.energised_seen is not None:  # once a run
                    log.warning("nameplate: %s", pipe.energised_seen)
                    sink.report(
                        f"nameplate: {pipe.energised_seen}",
                        {"source": "nameplate", "check": "energised_stopped"},
                    )
                baseline.update(records, pipe)
                lines.update(records)
            elif ring.closed:
                break
            sink.poll()
            conflict = report_conflict(conflict, publisher, sink)
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                notifier.reloading()
                reload_on_signal()
                notifier.ready(status())
            # A dead MQTT thread would leave alerts in the outbox for good: no ping, and
            # systemd restarts the daemon.
            if publisher is None or publisher.alive:
                notifier.tick(status)
    finally:
        notifier.stopping(f"stopping; {status()}")
        if own_notifier:
            notifier.close()
        stop.set()
        producer.join(timeout=5.0)
    if failure:
        raise failure[0]
    return RunResult(
        source.name, source.fs, pipe.stats, source.stats, ring.stats,
        time.perf_counter() - t_wall, pipe.wiring_seen, pipe.energised_seen,
        clock.clock.rate() if clock is not None else None,
    )  # fmt: skip


def report_wiring(before: set[str], now: Mapping[str, str], sink: RecordSink) -> None:
    """Log a wiring problem, and tell the plant on /event, when a window first shows it;
    and when a window of the running motor no longer does (edge_agent.wiring: a stop
    changes neither). Not at every window."""
    for check in now.keys() - before:
        log.warning("wiring: %s (windows flagged 'wiring', no faults diagnosed)", now[check])
        sink.report(f"wiring: {now[check]}", {"source": "wiring", "check": check})
    for check in sorted(before - now.keys()):
        log.info("wiring: %s no longer seen: the windows of the running motor read right", check)
        sink.resolved({"source": "wiring", "check": check})


def report_conflict(
    said: Conflict | None, publisher: MqttPublisher | None, sink: RecordSink
) -> Conflict | None:
    """Tell the plant on /event when another agent publishes as this asset (the
    publisher has logged it), and when it has not for a while. Returns what was told."""
    now = publisher.conflict if publisher is not None else None
    if now is None:
        if said is not None:
            sink.resolved({"source": "mqtt", "check": "asset_conflict", "host": said.host})
        return None
    if said is None:
        sink.report(
            f"mqtt: another agent publishes as this asset: {now.who}; each motor needs its "
            "own [output] asset",
            {"source": "mqtt", "check": "asset_conflict", "host": now.host},
        )
        return now
    return said


RATE_CHECK_S = 30.0  # the source's rate is judged once its arrivals span this, s
RATE_TELL_S = 600.0  # and logged, however right, once they span this


class ClockWatch:
    """Keeps a live run's window times on the system clock (edge_agent.clock), and says
    when the system clock is set (each step) and, once a run, when the source does not
    deliver ``[acquisition] fs`` samples a second: in the log, on /event, and (the rate)
    in ``systemctl status``. Its counters go into /status."""

    def __init__(self, clock: SampleClock, sink: RecordSink) -> None:
        self.clock, self.sink = clock, sink
        self.rate_hz: float | None = None  # the source's rate, once measured
        self.wrong_rate: str | None = None  # what was said of it, if it is not fs
        self._judged = self._told = False

    def update(self, chunk: Chunk, lost: int) -> None:
        """``chunk`` was just read, after ``lost`` samples known to be lost."""
        unknown = len(chunk.gap_lost) < len(chunk.gaps) or any(n <= 0 for n in chunk.gap_lost)
        step = self.clock.observe(len(chunk), lost, unknown)
        if step:
            log.warning(
                "the system clock was set %s by %s (NTP, or by hand): window times follow "
                "it from here; the records before it keep the times the clock gave then",
                "forward" if step > 0 else "back", lasted(abs(step)),
            )  # fmt: skip
            self.sink.clock_set(step)
        measured = self.clock.rate()
        if measured is None:
            return
        rate, span = measured
        self.rate_hz = rate
        fs = self.clock.fs
        if not self._judged and span >= RATE_CHECK_S:
            self._judged = True
            self.wrong_rate = rate_warning(fs, rate, span)
            if self.wrong_rate is not None:
                log.warning("acquisition: %s", self.wrong_rate)
                detail = {"source": "acquisition", "check": "sample_rate", "fs": fs}
                self.sink.report(
                    f"acquisition: {self.wrong_rate}", {**detail, "rate": round(rate, 1)}
                )
        if not self._told and span >= RATE_TELL_S:
            self._told = True
            log.info(
                "the source delivers %.1f samples a second per channel by the system clock "
                "(%+.0f ppm of fs = %g, over %.0f s); window times follow the system clock",
                rate, (rate / fs - 1.0) * 1e6, fs, span,
            )  # fmt: skip

    def counters(self) -> dict[str, Any]:
        return {
            "clock_rate_hz": None if self.rate_hz is None else round(self.rate_hz, 2),
            "clock_steps": self.clock.steps,
        }


# Scored windows in a row outside (within) the model's baseline before the daemon says the
# motor runs outside it (within it again): not at a stop's or a start's edge, nor at every
# wobble across the edge.
OUTSIDE_FOR = 20
INSIDE_AGAIN = 20


class Latch:
    """A state told once it has held for ``on_for`` observations in a row, and told over
    once its opposite has held for ``off_for``: not at every wobble across an edge."""

    def __init__(self, on_for: int, off_for: int) -> None:
        self.on = False
        self.on_for, self.off_for = on_for, off_for
        self._run = 0  # observations in a row on the other side than self.on says

    def update(self, seen: bool) -> bool:
        """Take one observation; True when the state has just turned (see :attr:`on`)."""
        if seen == self.on:
            self._run = 0
            return False
        self._run += 1
        if self._run < (self.off_for if self.on else self.on_for):
            return False
        self.on, self._run = seen, 0
        return True


class BaselineWatch:
    """Logs when the motor has run outside the model's baseline (windows flagged
    ``outside_baseline``: a lighter load or another supply frequency than the model's
    training windows, so no anomaly alerts) for :data:`OUTSIDE_FOR` scored windows, and
    when it has run within it again for :data:`INSIDE_AGAIN`. Windows of a stop, a start
    or a drive's ramp count neither way."""

    def __init__(self) -> None:
        self._latch = Latch(OUTSIDE_FOR, INSIDE_AGAIN)

    @property
    def outside(self) -> bool:
        return self._latch.on

    def update(self, records: list[dict[str, Any]], pipe: Pipeline) -> None:
        for rec in records:
            if (
                rec["type"] != "window"
                or rec["score"] is None
                or pipe.scorer is None
                or "starting" in rec["flags"]
                or "ramping" in rec["flags"]
            ):
                continue
            if not self._latch.update("outside_baseline" in rec["flags"]):
                continue
            if not self.outside:
                log.info("the motor runs within the model's baseline again: anomaly alerts resume")
            else:
                why = pipe.scorer.outside(rec["features"], pipe.config.alerts.baseline_margin)
                log.warning(
                    "no anomaly alerts while %s: the model's score says nothing of the motor "
                    "there (the other rules still judge it). If the motor runs so for good, "
                    "record a healthy run (edge-agent check-wiring --record, README) and "
                    "train again", why,
                )  # fmt: skip


# Windows in a row of the running motor flagged "unsteady" (5 minutes) before the daemon
# says that the rotor and bearing lines go unread (a load or speed change now and then
# leaves them unread for the 8 s after it, which is no news); read again, for 10 s.
UNSTEADY_FOR = 600
STEADY_AGAIN = 20


class LinesWatch:
    """Logs when the running motor's windows have been ``unsteady`` (the load or the speed
    changed across the long window, whose broken-bar, eccentricity and bearing lines are
    then not read) for :data:`UNSTEADY_FOR` windows in a row, and when they have not been
    for :data:`STEADY_AGAIN` again. Windows of a stopped motor, or without features, count
    neither way."""

    def __init__(self, hop_s: float) -> None:
        self.hop_s = hop_s
        self._latch = Latch(UNSTEADY_FOR, STEADY_AGAIN)

    @property
    def unread(self) -> bool:
        return self._latch.on

    def update(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            if (
                rec["type"] != "window"
                or "stopped" in rec["flags"]
                or rec["features"].get("i1") is None
            ):
                continue
            if not self._latch.update("unsteady" in rec["flags"]):
                continue
            if not self.unread:
                log.info(
                    "the load and the speed hold steady again: the broken-bar, eccentricity "
                    "and bearing lines are read"
                )
            else:
                log.warning(
                    "for %s the load or the speed has changed within every 8 s: the "
                    "broken-bar, eccentricity and bearing lines are not read, nor those faults "
                    "judged (windows flagged 'unsteady'; a drive that never holds its speed, or "
                    "a load that keeps changing). The other rules and the model judge as usual",
                    lasted(UNSTEADY_FOR * self.hop_s),
                )


def report_nameplate(
    overloaded: bool, records: list[dict[str, Any]], config: Config, sink: RecordSink
) -> bool:
    """Log, and tell the plant, when the motor's current (its rolling mean over the last
    windows) goes over wiring.OVERLOAD x the nameplate current; once, until it has fallen
    back under the nameplate current. Returns whether it is over."""
    rated = config.motor.rated_current
    for rec in records:
        if rec["type"] != "window":
            continue
        i1 = rec["features"].get("i1_roll")
        said = nameplate_warning(i1, rated)
        if said is not None and not overloaded:
            log.warning("nameplate: %s", said)
            sink.report(f"nameplate: {said}", {"source": "nameplate", "i1": i1})
            overloaded = True
        elif overloaded and i1 is not None and i1 <= rated:
            overloaded = False
    return overloaded
