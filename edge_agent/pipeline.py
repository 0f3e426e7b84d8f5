"""Windowing and the per-window chain: features, score, diagnosis, alerts.

The same :class:`Pipeline` serves ``replay``, the daemon and notebooks: feed it chunks of
samples with :meth:`Pipeline.update` and it returns the records (ARCHITECTURE.md) that the
chunk completes. Work happens once per hop: the last ``length_s`` of signal make the short
window, and the same hop is decimated into the long window used for rotor features.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_agent.config import CURRENT_CHANNELS, VOLTAGE_CHANNELS, AlertConfig, Config
from edge_agent.diagnosis import (
    BASELINE_LINES,
    FAULTS,
    LONG_WINDOW_FAULTS,
    AlertTracker,
    diagnose,
)
from edge_agent.features import ROLLING_FEATURES, FeatureExtractor, Rolling, empty_features
from edge_agent.kernels import SpaceVectorDecimator
from edge_agent.kernels.quality import detect_clipping, fill_gaps
from edge_agent.summary import flagged
from edge_agent.wiring import energised_warning, wiring_problems
from edge_agent.wiring import running as wiring_running

if TYPE_CHECKING:
    from edge_agent.scoring import Scorer

# A start lasts at least [alerts] start_s, and then until i1 differs by at most this share
# of itself from its value START_SETTLED_S before, but no longer than MAX_START_S.
START_SETTLED = 0.05
START_SETTLED_S = 2.0
MAX_START_S = 60.0
# A rise of i1 by more than this share over START_SETTLED_S, once a start has settled and
# within MAX_START_S of it, is a second step of the start (star to delta), not the load.
START_STEP = 0.2
# A start draws 5-7 times the nameplate current at first. While the load accelerates it
# stays over START_LOCKED times it, nearly flat (for seconds with a fan's or a
# centrifuge's inertia), and then falls in a fraction of a second; a lighter load's start
# decays sooner, with a time constant of 0.5-3 s. So a start has not settled while i1 is
# over START_LOCKED x the nameplate. A run whose first window of the motor draws more
# than START_CURRENT times the nameplate current begins in a start (the agent started
# with the motor, or the recording with its start) when that current is a start's: over
# START_LOCKED x the nameplate, or falling within the window as a start's does (the rms of
# its last fifth under START_DECAY times its first fifth's; at a time constant of 3 s it
# reads 0.8). A running motor, even overloaded, or one whose nameplate current is set
# too low, draws a steady current.
START_CURRENT = 1.5
START_LOCKED = 3.0
START_DECAY = 0.9
# Stopped windows in a row that carry a running motor's current (wiring.energised_warning)
# before the pipeline says so: 10 s, not the edge windows of a stop.
ENERGISED_FOR = 20
# Largest (max - min) / mean of i1 across the long window for rotor features to be read.
MAX_LOAD_VARIATION = 0.05
# The supply frequency across the long window, for its lines to be read: within
# MAX_SUPPLY_WOBBLE_HZ of a straight line through the short windows' (steady, or drifting
# at a steady rate as the grid does), and changing by at most MAX_SUPPLY_CHANGE_HZ. A
# drive that changes speed, even by a step of 0.03-0.05 Hz, smears the fundamental into
# the broken-bar bands: a healthy motor's lower sideband read -48 to -40 dB, a watch or
# a warning (+24 dB after steps of 1-2 Hz). Within these limits it read at most -74 dB,
# and the eccentricity and bearing lines within 1 dB of a steady supply's
# (benchmarks/steady_supply.py, benchmarks/README.md "Steady supply").
MAX_SUPPLY_WOBBLE_HZ = 0.005
MAX_SUPPLY_CHANGE_HZ = 0.1
# A drive ramping its frequency faster than this (Hz/s, from the supply frequencies of two
# windows in a row) smears the 1 s window's lines too: its phasors and harmonics read low,
# i1 by 0.03 % at 0.2 Hz/s, 0.2 % at 0.5, 0.7 % at 1, 2.9 % at 2 and 15 % at 5 Hz/s, THD
# by 0.8 % at 1 and 6.8 % at 2 Hz/s (the rms does not change; benchmarks/steady_supply.py).
# A model of a motor trained at steady speeds scored accelerations at 0.4-2 Hz/s anomalous
# and raised an anomaly alert. Such a window is flagged "ramping": scored, but not judged
# for an anomaly. Slower changes (a flow loop trimming the speed) are judged; the grid's
# are far slower.
MAX_RAMP_HZ_PER_S = 0.2
# NaN runs up to this long are filled by interpolation (window flagged "filled"); longer
# ones leave the window without features (flagged "nan").
MAX_FILL_S = 0.001


@dataclass
class PipelineStats:
    samples: int = 0
    windows: int = 0
    flagged_windows: int = 0
    alerts_raised: int = 0
    alerts_cleared: int = 0
    anomalous_windows: int = 0
    wiring_windows: int = 0  # flagged "wiring" (edge_agent.wiring)
    stopped_windows: int = 0  # flagged "stopped": not counted in flagged_windows
    # Flagged "outside_baseline" (Scorer.outside) and "starting" (Pipeline._starting):
    # not counted in flagged_windows either.
    outside_baseline_windows: int = 0
    starting_windows: int = 0
    # Flagged "unsteady": the load or the supply frequency changed across the long window,
    # so its rotor, air-gap and bearing lines were not read; "ramping": the supply
    # frequency changed within the window itself (a drive ramping), so it was not judged
    # for an anomaly. Neither is counted in flagged_windows.
    unsteady_windows: int = 0
    ramping_windows: int = 0

    def describe(self) -> str:
        """The windows and alerts, for a run's or a replay's summary line."""
        more = f", {self.stopped_windows} with the motor stopped" if self.stopped_windows else ""
        if self.starting_windows:
            more += f", {self.starting_windows} starting"
        if self.unsteady_windows:
            more += f", {self.unsteady_windows} with the load or speed changing"
        if self.ramping_windows:
            more += f", {self.ramping_windows} with the drive ramping"
        if self.outside_baseline_windows:
            more += f", {self.outside_baseline_windows} outside the model's baseline"
        return (
            f"{self.windows} windows ({self.flagged_windows} flagged, {self.anomalous_windows} "
            f"anomalous{more}), alerts: {self.alerts_raised} raised, {self.alerts_cleared} "
            "cleared"
        )


class Pipeline:
    """Stateful analysis of one motor's sample stream.

    Parameters
    ----------
    config : resolved configuration (nameplate, windows, alert debouncing)
    fs : sample rate of the stream, Hz
    roles : channel role of each column fed to :meth:`update`, e.g. ``["ia", "ib", "ic"]``
    scorer : autoencoder scorer, or None to compute features only
    t0 : time of the first sample, s (0 for a recording); window times count samples
        from it, unless :attr:`clock` is set (live: UNIX time by the system clock)
    """

    def __init__(
        self,
        config: Config,
        fs: float,
        roles: Sequence[str] = CURRENT_CHANNELS,
        scorer: Scorer | None = None,
        t0: float = 0.0,
    ) -> None:
        self.config = config
        self.fs = float(fs)
        self.roles = list(roles)
        missing = [c for c in CURRENT_CHANNELS if c not in self.roles]
        if missing:
            raise ValueError(f"roles {self.roles} lack {', '.join(missing)}")
        self._cols = [self.roles.index(c) for c in CURRENT_CHANNELS]
        self.voltages = all(v in self.roles for v in VOLTAGE_CHANNELS)
        if self.voltages:
            self._cols += [self.roles.index(c) for c in VOLTAGE_CHANNELS]
        self.scorer = scorer
        self.t0 = float(t0)
        # A live run's edge_agent.clock.SampleClock: window times by the system clock.
        self.clock: Callable[[float], float] | None = None
        w = config.windows
        self.length = round(w.length_s * self.fs)
        self.hop = round(w.hop_s * self.fs)
        if self.length < 64:
            raise ValueError(
                f"windows.length_s={w.length_s} s at fs={self.fs:g} Hz is {self.length} "
                "samples; expected at least 64"
            )
        nch = len(self._cols)
        self._all_cols = list(range(len(self.roles)))
        # The short window in single precision: 24 bits of mantissa hold a 16-bit ADC's
        # samples exactly (to 6e-8 of full scale after scaling), and every kernel sums in
        # double precision. Half the bytes to shift and read each hop.
        self._recent = np.zeros((nch, self.length), dtype=np.float32)
        self._filled = 0
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._n = 0  # samples moved into the window so far
        self._gaps: list[int] = []  # absolute indices of samples preceded by a gap
        self._nan_until = -1  # last absolute index of a NaN sample left after filling
        self._filled_until = -1  # last absolute index of a hop with filled samples
        self._clipped_until = -1  # last absolute index of a hop with clipped samples
        # Samples known lost before the ones received: (index of the first sample after
        # a loss, total lost up to there). Window times count them.
        self._skipped = 0
        self._time_shifts: deque[tuple[int, int]] = deque()
        self._max_fill = max(1, round(MAX_FILL_S * self.fs))
        factor = max(1, int(self.fs // w.long_fs))
        # The long window holds the space vector i_α + j·i_β, decimated.
        self._decimator = SpaceVectorDecimator(self.fs, factor)
        self.fs_long = self._decimator.fs_out
        # A power-of-two length: the long FFT is the largest one, and 17143 points (8 s at
        # 15 kS/s / 7) cost twice 16384.
        n_long = 2 ** round(math.log2(w.long_length_s * self.fs_long))
        # A mirrored ring: sample r of the ring is stored at r and r + n_long, so the last
        # n_long samples are always one contiguous slice and a hop writes only its own.
        self._n_long = n_long
        self._long_ring = np.zeros(2 * n_long, dtype=np.complex128)
        self._long_next = 0  # ring index the next sample goes to (= the oldest one's)
        self._long_filled = 0
        # i1 of the short windows the long window spans: lines are only read off a steady
        # load, since a load step smears the fundamental into the sideband bands.
        self._i1_history: deque[float] = deque(maxlen=math.ceil(n_long / self.fs_long / w.hop_s))
        # And their supply frequency: a drive changing speed smears it likewise.
        self._hz_history: deque[float] = deque(maxlen=self._i1_history.maxlen)
        # The long window moves by under 7 % per hop; it is analysed every _long_every-th
        # window (windows.long_hop_s: at 2 s a quarter of its length, where Blackman-Harris
        # windows overlapping by 75 % already weigh every sample about equally), and the
        # windows in between carry its features.
        self._long_every = max(1, round(w.long_hop_s / w.hop_s))
        self._long_features: dict[str, float | None] | None = None
        self._long_age = 0  # windows since _long_features were computed
        self.extractor = FeatureExtractor(config.motor, self.fs, self.fs_long)
        # FFTW's fastest plans for these windows: measured the first time on a machine
        # (about 2 s for the defaults), then read from the wisdom file (kernels.fft.tune).
        self.fft_plans = self.extractor.tune_ffts(self.length, n_long)
        self.rolling = Rolling(ROLLING_FEATURES, w.rolling_windows)
        self.tracker = AlertTracker.from_config(config.alerts)
        self._t_end: float | None = None  # the last window's end
        self.stats = PipelineStats()
        # What the last window that could be checked (the motor running) said is miswired,
        # by check (edge_agent.wiring), {} when nothing is: kept while the motor stands, so
        # that a stop does not read as mended; and the first message of each check since
        # the start.
        self.wiring: dict[str, str] = {}
        self.wiring_seen: dict[str, str] = {}
        # Stopped windows in a row with a running motor's current, and what the first
        # ENERGISED_FOR of them said (wiring.energised_warning): the nameplate current or
        # the sensors' scale is wrong. Kept once said.
        self.energised = 0
        self.energised_seen: str | None = None
        # A start: running windows since the last stopped one (None: no start to watch,
        # MAX_START_S after it), whether its current has settled, and i1 over the last
        # START_SETTLED_S.
        self._start_windows: int | None = None
        self._start_settled = False
        self._motor_seen = False  # a window of the motor, stopped or running, was judged
        # The supply frequency of the window before, when it was of the running motor and
        # the two are a hop apart (no gap, no window without features between them).
        self._last_hz: float | None = None
        self._start_i1: deque[float | None] = deque(
            maxlen=round(START_SETTLED_S / w.hop_s) + 1
        )

    def update(
        self, chunk: np.ndarray, gaps: Iterable[int] = (), lost: Iterable[int] = ()
    ) -> list[dict[str, Any]]:
        """Take samples of shape (n, channels) in ``roles`` order; return completed records.

        ``gaps`` are indices into ``chunk`` of samples that follow a loss of data: windows
        spanning one are flagged ``gap`` and the long window starts afresh after it.
        ``lost`` gives, for each gap, how many samples were lost there when the source
        knows (a frame counter); window times after it move on by that much, so they stay
        true to the clock.
        """
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[1] != len(self.roles):
            raise ValueError(
                f"chunk has shape {chunk.shape}; expected (n, {len(self.roles)}) for {self.roles}"
            )
        base = self._n + self._n_pending
        gaps = [int(g) for g in gaps]
        self._gaps.extend(base + g for g in gaps)
        for g, n_lost in zip(gaps, lost, strict=False):
            if n_lost > 0:
                self._skipped += int(n_lost)
                self._time_shifts.append((base + g, self._skipped))
        # A view when the columns are already in order: _take makes the one copy a hop needs.
        cols = self._cols
        self._pending.append(chunk.T if cols == self._all_cols else chunk[:, cols].T)
        self._n_pending += chunk.shape[0]
        records: list[dict[str, Any]] = []
        while self._n_pending >= self.hop:
            records.extend(self._step(self._take(self.hop)))
        # What is left of this chunk waits for the next: a copy, as the caller may reuse its
        # array. (Only this chunk's: copying the whole backlog again would make many small
        # chunks cost quadratically.)
        self._pending = [
            np.array(p) if np.may_share_memory(p, chunk) else p for p in self._pending
        ]
        return records

    def feed(self, chunks: Iterable[Any]) -> Iterator[dict[str, Any]]:
        """:meth:`update` with each chunk of a recording (``Recording.chunks()``: objects
        with ``samples`` and ``gaps``), yielding the records as they come."""
        for chunk in chunks:
            yield from self.update(chunk.samples, chunk.gaps, chunk.lost)

    def reload(self, scorer: Scorer | None, alerts: AlertConfig) -> list[dict[str, Any]]:
        """Score later windows with ``scorer`` and judge them by ``alerts``.

        Alerts already raised stay raised (and clear by the new rules), but for faults the
        new model cannot judge (:meth:`unjudged`): returns their cleared records. The
        windows, the features and their history go on undisturbed.
        """
        self.scorer = scorer
        self.config = self.config.model_copy(update={"alerts": alerts})
        self.tracker.raise_after = alerts.raise_after
        self.tracker.clear_after = alerts.clear_after
        return self._close_unjudged()

    def resume(self, alerts: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Carry on the alerts a previous run left open (``RecordSink.left_open``), but for
        faults this pipeline cannot judge (:meth:`unjudged`): returns their cleared records,
        at ``t0``."""
        self.tracker.resume(alerts)
        return self._close_unjudged()

    def unjudged(self) -> dict[str, str]:
        """The faults whose rules can find nothing here, each with why. An alert open for
        one would otherwise clear as if its windows read normal."""
        why = "not judged in this run: "
        out = {}
        if self.scorer is None:
            out["anomaly"] = why + "no model loaded"
        baseline = self.scorer.baseline if self.scorer is not None else {}
        for fault, names in BASELINE_LINES.items():
            if not any(n in baseline for n in names):
                out[fault] = (
                    why + "the model has no healthy levels of its lines (edge-agent train "
                    "learns them on this motor)"
                )
        if self.config.motor.bearing is None:
            out["bearing"] = why + "no bearing geometry ([motor.bearing])"
        if not self.voltages:
            out["supply_unbalance"] = why + "no voltages wired"
        return out

    def _close_unjudged(self) -> list[dict[str, Any]]:
        t = self._time(0) if self._t_end is None else self._t_end
        closed = (self.tracker.close(f, t, why) for f, why in self.unjudged().items())
        records = [r for r in closed if r is not None]
        self.stats.alerts_cleared += len(records)
        return records

    def _take(self, n: int) -> np.ndarray:
        """The next ``n`` pending samples, (channels, n): a view, in any strides."""
        block = (
            np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        )
        out, rest = block[:, :n], block[:, n:]
        self._pending = [rest] if rest.shape[1] else []
        self._n_pending = rest.shape[1]
        return out

    def _step(self, src: np.ndarray) -> list[dict[str, Any]]:
        h = src.shape[1]
        start = self._n
        self._n += h
        self.stats.samples = self._n
        # Shift the short window by one hop and convert the new samples into its end: the
        # one copy of them (from frames, it transposes them too).
        if h >= self.length:
            tail = self._recent
        else:
            self._recent[:, :-h] = self._recent[:, h:]
            tail = self._recent[:, -h:]
        tail[...] = src[:, h - tail.shape[1] :]
        new_from = self.length - tail.shape[1]  # the column of the first new sample
        # Each channel's extremes serve the NaN check (max and min propagate NaN, and show
        # ±inf) and the clipping check.
        hi, lo = tail.max(axis=1), tail.min(axis=1)
        has_nan = not (np.isfinite(hi).all() and np.isfinite(lo).all())
        hop = src
        if has_nan:
            hop, n_filled, _ = fill_gaps(src, self._max_fill)
            if n_filled:
                self._filled_until = self._n - 1
            tail[...] = hop[:, h - tail.shape[1] :]
            still = np.isnan(hop).any(axis=0)
            has_nan = bool(still.any())
            if has_nan:
                self._nan_until = start + int(np.flatnonzero(still)[-1])
            hi, lo = None, None
        # Clipping is looked for hop by hop, on every channel: each sample once, in the
        # window's single precision (an ADC's codes stay distinct in it), where the new
        # samples lie in the window (the ends of its rows, contiguous: no copy).
        extremes = None if hi is None else (hi, lo)
        if detect_clipping(self._recent, start=new_from, extremes=extremes).any():
            self._clipped_until = self._n - 1
        gap_here = any(start <= g < self._n for g in self._gaps)
        self._gaps = [g for g in self._gaps if g > self._n - self.length]
        self._filled = min(self.length, self._filled + h)
        self._push_long(np.nan_to_num(hop[:3]) if has_nan else hop[:3])
        if gap_here or self._nan_until >= start:
            # The long window must be contiguous and clean: start it afresh.
            self._decimator.reset()
            self._long_filled = 0
            self._long_features = None
            self._i1_history.clear()
            self._hz_history.clear()
            self._last_hz = None
            self.rolling.reset()
        if self._filled < self.length:
            return []
        return self._window()

    def _push_long(self, hop: np.ndarray) -> None:
        z = self._decimator.process(hop)
        m = z.shape[0]
        if m == 0:
            return
        L = self._n_long
        if m > L:
            z = z[-L:]
            m = L
        r = self._long_next
        ring = self._long_ring
        first = min(m, L - r)  # up to the end of the ring, then from its start
        for off in (0, L):
            ring[off + r : off + r + first] = z[:first]
            ring[off : off + m - first] = z[first:]
        self._long_next = (r + m) % L
        self._long_filled = min(L, self._long_filled + m)

    @property
    def long_window(self) -> np.ndarray:
        """The last ``n_long`` decimated space-vector samples, oldest first (a view)."""
        r = self._long_next
        return self._long_ring[r : r + self._n_long]

    def _long(self, features: dict[str, Any]) -> tuple[dict[str, float | None], bool, bool]:
        """The long window's features for this window, whether they are stale, and whether
        the window is unsteady. Fresh every ``_long_every`` windows, else those of the last
        analysis (stale); from the nameplate (and the short window's slot harmonics),
        without the rotor, air-gap and bearing lines, while the long window is not full or
        is unsteady: the load or the supply frequency changed across it (stale: they say
        nothing of those faults)."""
        z = self.long_window if self._long_filled >= self._n_long else None
        unsteady = z is not None and (
            _variation(self._i1_history) > MAX_LOAD_VARIATION
            or not steady_supply(self._hz_history)
        )
        if unsteady:
            z = None
        if z is not None and self._long_features is not None:
            if self._long_age < self._long_every:
                self._long_age += 1
                return self._long_features, True, False
        out = self.extractor.long(
            z, features["supply_hz"], features["i1"], self.extractor.slot_spectrum
        )
        self._long_features = out if z is not None else None
        self._long_age = 1
        return out, z is None, unsteady

    def _watch_start(self) -> None:
        """A start may follow (a stopped window), or is under way (the run's first)."""
        self._start_windows = 0
        self._start_settled = False
        self._start_i1.clear()

    def _starting(self, i1: float | None) -> bool:
        """Whether this window of the running motor, after a stop, is in its start: within
        ``[alerts] start_s`` of the stop's end, or after that while i1 still differs by
        more than START_SETTLED from its value START_SETTLED_S before, or is still a
        start's (over START_LOCKED x the nameplate current); and again, once
        settled, from a rise of i1 by more than START_STEP over START_SETTLED_S (a
        star-delta starter's change to delta) until it has settled again. All within
        MAX_START_S of the stop's end (or start_s, if longer). A run whose first window is
        a start's (:func:`_in_a_start`) counts from that window. A start draws several
        times the running current, which no healthy baseline holds."""
        assert self._start_windows is not None
        self._start_windows += 1
        age = self._start_windows * self.config.windows.hop_s
        start_s = self.config.alerts.start_s
        history = self._start_i1
        history.append(i1)
        then = history[0]
        known = len(history) == history.maxlen and i1 is not None and then is not None
        if age > max(MAX_START_S, start_s):
            self._start_windows = None  # started: not again until the next stop
            return False
        if self._start_settled:
            # A second step of the start: the current rises again.
            self._start_settled = not (known and i1 - then > START_STEP * then)
        elif (
            age > start_s
            and known
            and abs(i1 - then) <= START_SETTLED * i1
            and i1 <= START_LOCKED * self.config.motor.rated_current
        ):
            self._start_settled = True
        return not self._start_settled

    def _time(self, k: int) -> float:
        """Time of sample ``k``, lost samples counted: by :attr:`clock` when a live run
        set one, else counted from :attr:`t0`."""
        return self.t0 + k / self.fs if self.clock is None else self.clock(k)

    def _lost_before(self, i: int) -> int:
        """Samples known lost before absolute sample ``i`` (counted in window times)."""
        # Shifts older than the current window no longer matter but the last of them.
        start = self._n - self.length
        while len(self._time_shifts) > 1 and self._time_shifts[1][0] <= start:
            self._time_shifts.popleft()
        return _lost_before_index(self._time_shifts, i)

    def _window(self) -> list[dict[str, Any]]:
        end = self._n
        start = end - self.length
        flags = []
        if any(start < g < end for g in self._gaps):
            flags.append("gap")
        has_nan = self._nan_until >= start
        if has_nan:
            flags.append("nan")
        if self._filled_until >= start:
            flags.append("filled")
        if self._clipped_until >= start:
            flags.append("clipped")
        features = empty_features(self.voltages)
        stale = False  # the long window's faults have no fresh evidence in this window
        unsteady = False
        if not has_nan:
            x = self._recent[:3]
            v = self._recent[3:] if self.voltages else None
            features.update(self.extractor.short(x, v))
            self._i1_history.append(features["i1"])
            self._hz_history.append(features["supply_hz"])
            long_features, stale, unsteady = self._long(features)
            features.update(long_features)
            features.update(self.rolling.update(features))
        _clean_all(features)
        last_hz, self._last_hz = self._last_hz, None
        if not has_nan:
            if not wiring_running(features, self.config.motor.rated_current):
                # A motor at standstill: its features are of the sensors' noise, and its
                # wiring cannot be checked (self.wiring stays as the last check left it).
                flags.append("stopped")
                self._watch_start()
                said = energised_warning(features, self.config.motor.rated_current)
                self.energised = 0 if said is None else self.energised + 1
                if self.energised >= ENERGISED_FOR and self.energised_seen is None:
                    self.energised_seen = said
            else:
                self.energised = 0
                i1 = features["i1"]
                if not self._motor_seen and _in_a_start(x, i1, self.config.motor.rated_current):
                    self._watch_start()  # the run begins in a start
                if self._start_windows is not None and self._starting(i1):
                    flags.append("starting")
                if unsteady:
                    flags.append("unsteady")
                hz = self._last_hz = features["supply_hz"]
                step = MAX_RAMP_HZ_PER_S * self.config.windows.hop_s
                if hz is not None and last_hz is not None and abs(hz - last_hz) > step:
                    flags.append("ramping")
                self.wiring = wiring_problems(
                    features, self.config.motor.supply_hz, self.extractor.peak_hz
                )
                if self.wiring:
                    flags.append("wiring")
                    for check, said in self.wiring.items():
                        self.wiring_seen.setdefault(check, said)
            self._motor_seen = True
        stopped = "stopped" in flags
        starting = "starting" in flags
        ramping = "ramping" in flags
        score, threshold, anomalous, outside = None, None, False, False
        if self.scorer is not None and not stopped:
            # float32 overflow on absurd input gives inf: no score rather than invalid JSON.
            score = _clean(self.scorer.score_features(features))
            threshold = self.scorer.threshold
            # A lighter load or another speed than the model learnt: its score is kept but
            # says nothing of the motor, so it counts neither way for an anomaly alert.
            margin = self.config.alerts.baseline_margin
            outside = score is not None and self.scorer.outside(features, margin) is not None
            if outside:
                flags.append("outside_baseline")
            anomalous = not (outside or starting or ramping) and self.scorer.is_anomalous(score)
        t_end = self._t_end = self._time(end + self._lost_before(end))
        record = {
            "type": "window",
            "t_start": self._time(start + self._lost_before(start)),
            "t_end": t_end,
            "score": score,
            "anomalous": anomalous,
            "features": features,
            "flags": flags,
        }
        self.stats.windows += 1
        self.stats.flagged_windows += flagged(flags)
        self.stats.anomalous_windows += anomalous
        self.stats.wiring_windows += "wiring" in flags
        self.stats.stopped_windows += stopped
        self.stats.outside_baseline_windows += outside
        self.stats.starting_windows += starting
        self.stats.unsteady_windows += "unsteady" in flags
        self.stats.ramping_windows += ramping
        # A miswired window reads as motor faults (a reversed CT as a stator short).
        blocking = [f for f in flags if f in ("gap", "nan", "wiring", "stopped")]
        findings = {} if blocking else diagnose(
            features, score, threshold, self.config.alerts, self.config.motor.rated_current,
            self.scorer.baseline if self.scorer is not None else None,
            self.scorer.negative_sequence if self.scorer is not None else None,
            self.scorer.furthest(features) if anomalous else None,
            self.tracker.active,
        )  # fmt: skip
        # A window that cannot be judged (the motor stopped, the sensors miswired, samples
        # lost or missing) counts neither way: an alert open before it stays open. Nor does
        # a window without a fresh analysis of the long window for the faults read off it
        # (a repeat, or none while it refills after a gap or the load is unsteady).
        skip = _ALL_FAULTS if blocking else LONG_WINDOW_FAULTS if stale else frozenset()
        if outside or starting or ramping:
            skip |= _ANOMALY
        alerts = self.tracker.update(t_end, findings, score, skip)
        for a in alerts:
            if a["state"] == "raised":
                self.stats.alerts_raised += 1
            else:
                self.stats.alerts_cleared += 1
        return [record, *alerts]


_ALL_FAULTS = frozenset(FAULTS)
_ANOMALY = frozenset({"anomaly"})


def _lost_before_index(shifts: deque[tuple[int, int]], i: int) -> int:
    total = 0
    for index, cumulative in shifts:
        if index > i:
            break
        total = cumulative
    return total


def _variation(values: Sequence[float]) -> float:
    """(max - min) / mean of a few numbers; inf when there are none."""
    mean = sum(values) / len(values) if values else 0.0
    return (max(values) - min(values)) / mean if mean > 0 else math.inf


def steady_supply(hz: Sequence[float]) -> bool:
    """Whether supply frequencies ``hz`` (Hz, of windows evenly spaced in time) are steady
    enough for the long window's lines: within MAX_SUPPLY_WOBBLE_HZ of their
    least-squares line, and spanning at most MAX_SUPPLY_CHANGE_HZ. Plain Python: a few
    numbers per window."""
    n = len(hz)
    if n == 0:
        return False
    span = max(hz) - min(hz)
    if span <= MAX_SUPPLY_WOBBLE_HZ:
        return True
    if span > MAX_SUPPLY_CHANGE_HZ:
        return False
    mid = (n - 1) / 2
    mean = sum(hz) / n
    sxy = 0.0  # sum of (i - mid) * (y - mean), whose mean term sums to 0
    for i, y in enumerate(hz):
        sxy += (i - mid) * y
    slope = sxy / (n * (n * n - 1) / 12)  # over the sum of (i - mid)²
    for i, y in enumerate(hz):
        if abs(y - mean - slope * (i - mid)) > MAX_SUPPLY_WOBBLE_HZ:
            return False
    return True


def _clean_all(features: dict[str, Any]) -> None:
    """Make every value a finite float or None, in place (NaN and ±inf become None)."""
    for k, v in features.items():
        if v is None:
            continue
        if type(v) is not float:
            v = features[k] = float(v)
        if v - v != 0.0:  # NaN or ±inf
            features[k] = None


def _clean(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def analyze(
    samples: np.ndarray,
    fs: float,
    *,
    config: Config | None = None,
    roles: Sequence[str] | None = None,
    scorer: Scorer | str | None = "default",
) -> list[dict[str, Any]]:
    """Run the whole pipeline over an in-memory array; returns all records.

    ``samples`` has shape (n_samples, channels) with columns ia, ib, ic[, va, vb, vc]
    (amperes, volts) unless ``roles`` says otherwise. ``scorer="default"`` scores with the
    model of ``config.model`` (the bundled default when unset); ``None`` computes features
    only.
    """
    from edge_agent.scoring import Scorer

    config = config or Config()
    samples = np.asarray(samples)
    if samples.ndim != 2 or samples.shape[1] < 3:
        raise ValueError(f"samples must have shape (n, >=3), got {samples.shape}")
    if roles is None:
        roles = list(CURRENT_CHANNELS) + ["va", "vb", "vc"][: max(0, samples.shape[1] - 3)]
    if isinstance(scorer, str):
        scorer = Scorer.load(config.model.path) if config.model.enabled else None
    pipe = Pipeline(config, fs, roles, scorer)
    return pipe.update(samples)


def _in_a_start(x: np.ndarray, i1: float | None, rated_current: float) -> bool:
    """Whether a window of currents ``x`` (phases by samples) whose positive-sequence
    current is ``i1`` is a start's: over START_CURRENT x the nameplate current, and
    over START_LOCKED x it or falling within the window (START_DECAY)."""
    if i1 is None or not i1 > START_CURRENT * rated_current:
        return False
    if i1 > START_LOCKED * rated_current:
        return True
    n = x.shape[1] // 5
    first = float(np.sum(np.var(x[:, :n], axis=1, dtype=np.float64)))
    last = float(np.sum(np.var(x[:, -n:], axis=1, dtype=np.float64)))
    return last < START_DECAY**2 * first
