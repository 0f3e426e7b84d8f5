"""SampleClock: window times follow the system clock, whatever the ADC's rate.

An ADC is simulated on clocks the test moves: it takes sample k at monotonic time
``T0 + k / fs_true``, and the daemon reads what has arrived every ``read_s``, each read
``latency`` after the last sample it holds was taken. A sample's true time is when it was
taken, on the system clock; the tests compare the clock's time of it with that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.clock import SampleClock

FS = 15000.0
T0 = 1000.0  # monotonic time of the first sample
WALL = 1.7e9  # the system clock's offset from the monotonic one at the start


class Clocks:
    """A monotonic and a system clock the test moves."""

    def __init__(self) -> None:
        self.now = T0
        self.offset = WALL

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.offset


class Adc:
    """A source taking samples at ``fs_true`` from T0, read every ``read_s``."""

    def __init__(self, clocks: Clocks, fs_true: float, seed: int = 0) -> None:
        self.clocks, self.fs_true = clocks, fs_true
        self.rng = np.random.default_rng(seed)
        self.clock = SampleClock(FS, wall=clocks.wall, mono=clocks.mono)
        self.clock.start()
        self.taken = 0  # samples the ADC has taken and delivered
        self.counted = 0  # of those, plus the known lost: the daemon's k
        self.offset_of = {}  # k -> the system clock's offset when it was taken

    def latency(self) -> float:
        """USB, the frame and the thread's wake-up: 2 ms and an exponential tail."""
        return 0.002 + self.rng.exponential(0.004)

    def run(self, seconds: float, read_s: float = 0.05, stall=None) -> list[float]:
        """Read for ``seconds``; returns the clock's error on the last sample of each read
        (s: its time less the true one). ``stall(t)`` adds to the latency at time t."""
        errors = []
        end = self.clocks.now + seconds
        while self.clocks.now < end:
            self.clocks.now += read_s
            late = self.latency() + (stall(self.clocks.now) if stall else 0.0)
            n = math.floor((self.clocks.now - late - T0) * self.fs_true) + 1 - self.taken
            if n <= 0:
                continue
            self.taken += n
            self.counted += n
            self.clock.observe(n)
            errors.append(self.clock(self.counted - 1) - self.true_time(self.taken - 1))
        return errors

    def true_time(self, taken: int) -> float:
        return T0 + taken / self.fs_true + self.clocks.offset


def test_an_adc_at_its_rate_gives_the_times_of_counting():
    adc = Adc(Clocks(), FS)
    errors = adc.run(600.0)
    assert max(abs(e) for e in errors) < 0.01
    rate, span = adc.clock.rate()
    assert rate == pytest.approx(FS, rel=2e-6)
    assert span > 300  # the last 30 min, or all of a shorter run


def test_an_adc_100_ppm_fast_is_followed_over_hours_where_counting_drifts():
    """100 ppm: 8.6 s a day. Counting samples would put the windows of the second hour
    up to 0.72 s late."""
    fs_true = FS * (1 + 100e-6)
    adc = Adc(Clocks(), fs_true)
    errors = adc.run(2 * 3600.0, read_s=0.2)
    counting = T0 + (adc.taken - 1) / FS + WALL - adc.true_time(adc.taken - 1)
    assert counting == pytest.approx(0.72, abs=0.01)
    assert max(abs(e) for e in errors[len(errors) // 10 :]) < 0.01
    rate, _ = adc.clock.rate()
    assert rate == pytest.approx(fs_true, rel=2e-6)


def test_a_board_at_another_rate_than_fs_is_measured_in_seconds():
    """A board sampling at 10 kS/s where the config says 15000: told within 0.2 % after
    10 s, as check-wiring reads it."""
    adc = Adc(Clocks(), 10_000.0)
    assert adc.clock.rate() is None
    errors = adc.run(10.0)
    rate, span = adc.clock.rate()
    assert rate == pytest.approx(10_000.0, rel=0.002)
    assert span >= 5.0
    assert abs(errors[-1]) < 0.05  # counting at 15000 would be 3.3 s ahead


def test_a_step_of_the_system_clock_moves_later_times_at_once():
    """NTP sets a Raspberry Pi's clock 3 days forward a minute after the start."""
    clocks = Clocks()
    adc = Adc(clocks, FS)
    adc.run(60.0)
    before = adc.clock(adc.counted - 1)
    clocks.offset += 3 * 86400.0
    assert adc.clock.observe(0) == pytest.approx(3 * 86400.0)
    assert adc.clock.steps == 1
    assert adc.clock(adc.counted - 1) == pytest.approx(before + 3 * 86400.0)
    errors = adc.run(60.0)
    assert max(abs(e) for e in errors) < 0.01
    # set back by hand: followed too; a slew (under a second) is no step
    clocks.offset -= 3 * 86400.0 + 7.5
    clocks.now += 0.05
    assert adc.clock.observe(0) == pytest.approx(-(3 * 86400.0 + 7.5))
    clocks.offset += 0.2
    assert adc.clock.observe(0) == 0.0
    assert adc.clock.steps == 2
    assert max(abs(e) for e in adc.run(10.0)) < 0.01


def test_after_a_loss_of_unknown_size_the_times_are_anchored_again():
    """A board that reset while unplugged for 5 s restarts its frame counter: the loss
    is not counted, so counting would put every later window 5 s early."""
    fs_true = FS * (1 + 300e-6)
    adc = Adc(Clocks(), fs_true)
    adc.run(120.0)
    gone = round(5.0 * fs_true)
    adc.clocks.now += 5.0
    adc.taken += gone  # taken by nobody: lost, of unknown number
    adc.clocks.now += 0.05
    n = math.floor((adc.clocks.now - 0.003 - T0) * fs_true) + 1 - adc.taken
    adc.taken += n
    adc.counted += n
    adc.clock.observe(n, unknown_loss=True)
    assert adc.clock(adc.counted - 1) - adc.true_time(adc.taken - 1) == pytest.approx(0, abs=0.01)
    errors = adc.run(120.0)
    assert max(abs(e) for e in errors) < 0.01
    # a known loss (a frame counter's gap) is counted: no anchoring needed
    lost = round(2.0 * fs_true)
    adc.clocks.now += 2.0
    adc.taken += lost
    adc.counted += lost
    adc.clock.observe(0, lost=lost)
    errors = adc.run(60.0)
    assert max(abs(e) for e in errors) < 0.01
    assert adc.clock.rate()[0] == pytest.approx(fs_true, rel=1e-5)


def test_stalls_of_the_analysis_do_not_bend_the_times():
    """The analysis stalls for 3 s every 5 minutes (the disk, a reload): the samples
    it reads then are late, and the block minima lie; the fit leaves them out."""

    def stall(t: float) -> float:
        return 3.0 - (t - T0) % 300.0 if (t - T0) % 300.0 < 3.0 else 0.0

    fs_true = FS * (1 - 50e-6)
    adc = Adc(Clocks(), fs_true)
    errors = adc.run(3600.0, read_s=0.1, stall=stall)
    rate, _ = adc.clock.rate()
    assert rate == pytest.approx(fs_true, rel=5e-6)
    assert np.percentile(np.abs(errors[len(errors) // 10 :]), 99) < 0.01


@settings(max_examples=25, deadline=None)
@given(
    ppm=st.floats(-20_000, 20_000),
    read_s=st.floats(0.005, 0.5),
    jitter=st.floats(0.0005, 0.05),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_rate_and_latency_give_times_within_the_latency(ppm, read_s, jitter, seed):
    """Within ±2 % of fs, reads every 5-500 ms, latencies of 2 ms + exponential(jitter):
    after the first minute, a sample's time is within about its latency of its true time
    (the fit rests on the least lags of the reads)."""
    adc = Adc(Clocks(), FS * (1 + ppm * 1e-6), seed)
    adc.latency = lambda: 0.002 + adc.rng.exponential(jitter)
    adc.run(60.0, read_s)
    errors = np.array(adc.run(120.0, read_s))
    assert np.all(np.abs(errors) < 0.005 + 2 * jitter)
    assert adc.clock.rate()[0] == pytest.approx(adc.fs_true, rel=1e-4 + jitter / 60)


def test_a_bad_rate_is_refused():
    with pytest.raises(ValueError, match="fs"):
        SampleClock(0.0)
    with pytest.raises(ValueError, match="fs"):
        SampleClock(float("nan"))
