"""Window times of a live source: the system clock's, not the ADC's.

Counting samples (time = start + k / fs) is exact within a window, but over a run it
drifts away from the system clock, and alerts would carry times the plant's other
systems do not share:

- an ADC's oscillator is off by 20-100 ppm (2-9 s a day, minutes a month); one running
  from an RC oscillator by up to 1 %; and ``[acquisition] fs`` may not be the board's
  rate at all;
- the system clock may be set after the daemon started: a Raspberry Pi has no real-time
  clock, so it boots with the time it last saved and NTP sets it once the network is up;
  by hand, after a wrong date; never, on a plant network without NTP.

:class:`SampleClock` maps sample ``k`` (samples since the first, lost ones counted) to UNIX
time in two parts:

- on the monotonic clock, which no setting of the system clock moves, by a line fitted
  to when the samples arrive. A sample is read some latency after it was taken, never
  before, so the fit takes the least lag of each block of arrivals (their lower
  envelope) and a robust line through them (Theil-Sen: a stalled block is an outlier,
  not a bend). Blocks begin at 1 s and, each time 60 have closed, merge in pairs, up to
  30 s: the line rests on the whole run until it is half an hour old, then on its last
  half hour. Its slope is the source's true rate, measured against the system clock;
- plus the system clock's offset from the monotonic one, read at each observation. A
  step of the system clock moves window times from then on by just as much; the daemon
  says so (:attr:`SampleClock.steps`).

After a loss of unknown size (a board that reset and restarted its frame counter) the
line is anchored again at the next arrival, keeping its slope.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

BLOCK_START_S = 1.0  # the first blocks of arrivals, s
BLOCK_MAX_S = 30.0  # blocks grow (doubling) up to this
MAX_BLOCKS = 60  # the fit's points; past it, two blocks merge, or the oldest goes
MIN_RATE_SPAN_S = 5.0  # the rate is told once the fitted blocks span this much
STEP_S = 1.0  # a change of the system clock's offset at least this large is a step


class SampleClock:
    """UNIX time of sample ``k`` of a live source (see the module's docstring).

    Call :meth:`start` as the source opens, :meth:`observe` after each read of samples
    (before the windows they complete are made), and the clock itself for a time.
    ``wall`` and ``mono`` are the system and monotonic clocks (``time.time``,
    ``time.monotonic``; tests give their own).
    """

    def __init__(
        self,
        fs: float,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"{fs=} must be a positive sample rate")
        self.fs = float(fs)
        self._wall, self._mono = wall, mono
        self.steps = 0  # steps of the system clock seen
        self._m0 = 0.0  # monotonic time of sample 0 at the nominal rate
        self._offset = 0.0  # system clock - monotonic clock
        self._k = 0  # samples arrived, lost ones counted
        # lag(k) = arrival - (m0 + k/fs) ~ alpha + beta*k on the lower envelope
        self._alpha = 0.0
        self._beta = 0.0
        self._anchor = True  # anchor alpha at the next arrival (the first, at first)
        self._points: list[tuple[int, float]] = []  # (k, least lag) per closed block
        self._block: tuple[int, float] | None = None
        self._block_s = BLOCK_START_S
        self._block_end = 0.0

    def start(self) -> None:
        """Sample 0 is taken now."""
        m = self._mono()
        self._m0, self._offset = m, self._wall() - m
        self._block_end = m + self._block_s

    def observe(self, samples: int, lost: int = 0, unknown_loss: bool = False) -> float:
        """``samples`` more samples arrived just now, after ``lost`` known to be lost
        (counted in window times) and, when ``unknown_loss``, a loss of unknown size.
        Returns how far the system clock was set since the last call (s, 0 for none
        below :data:`STEP_S`; positive: forward)."""
        now = self._mono()
        offset = self._wall() - now
        step, self._offset = offset - self._offset, offset
        if unknown_loss:  # the samples before it say nothing of those after
            self._points.clear()
            self._block = None
            self._anchor = True
        self._k += int(samples) + int(lost)
        lag = now - (self._m0 + self._k / self.fs)
        if self._anchor:
            self._alpha, self._anchor = lag - self._beta * self._k, False
        if self._block is None or lag < self._block[1]:
            self._block = (self._k, lag)
        if now >= self._block_end:
            self._close_block(now)
        if abs(step) >= STEP_S:
            self.steps += 1
            return step
        return 0.0

    def __call__(self, k: float) -> float:
        """UNIX time of sample ``k`` (samples since the first, lost ones counted)."""
        return self._m0 + k / self.fs + self._alpha + self._beta * k + self._offset

    def rate(self) -> tuple[float, float] | None:
        """(samples per second the source delivers, by the system clock; the span of
        arrivals that says so, s), or None while that span is under
        :data:`MIN_RATE_SPAN_S`."""
        if len(self._points) < 3:
            return None
        span = (self._points[-1][0] - self._points[0][0]) / self.fs
        if span < MIN_RATE_SPAN_S:
            return None
        return 1.0 / (1.0 / self.fs + self._beta), span

    def _close_block(self, now: float) -> None:
        assert self._block is not None
        self._points.append(self._block)
        self._block = None
        if len(self._points) > MAX_BLOCKS:
            if self._block_s < BLOCK_MAX_S:  # merge pairs: each keeps its least lag
                p = self._points
                self._points = [min(p[i : i + 2], key=lambda b: b[1]) for i in range(0, len(p), 2)]
                self._block_s = min(2 * self._block_s, BLOCK_MAX_S)
            else:
                del self._points[0]
        self._block_end = now + self._block_s
        self._fit()

    def _fit(self) -> None:
        """Theil-Sen line through the blocks' least lags: the median of the slopes of
        every pair, and the median intercept; a single block sets only the intercept."""
        k = np.array([p[0] for p in self._points], dtype=np.float64)
        lag = np.array([p[1] for p in self._points], dtype=np.float64)
        if len(k) >= 3:
            i, j = np.triu_indices(len(k), 1)
            dk = k[j] - k[i]
            ok = dk > 0
            if ok.any():
                self._beta = float(np.median((lag[j] - lag[i])[ok] / dk[ok]))
        self._alpha = float(np.median(lag - self._beta * k))


RATE_TOLERANCE = 0.005  # a source off fs by this fraction or more is told


def rate_warning(fs: float, rate: float, span_s: float) -> str | None:
    """What to say when a source delivers ``rate`` samples a second (measured over
    ``span_s``) where ``[acquisition] fs`` says ``fs``: every frequency the analysis reads
    is then off by fs / rate. None within :data:`RATE_TOLERANCE`."""
    if abs(rate / fs - 1.0) < RATE_TOLERANCE:
        return None
    off = fs / rate - 1.0
    return (
        f"the source delivers {rate:.0f} samples a second per channel by the system clock "
        f"(over {span_s:.0f} s), but [acquisition] fs = {fs:g}: every frequency reads "
        f"{100 * abs(off):.1f} % {'high' if off > 0 else 'low'} (a 50 Hz supply as "
        f"{50 * (1 + off):.2f} Hz). Set fs to the board's rate, or mend the board's clock"
    )
