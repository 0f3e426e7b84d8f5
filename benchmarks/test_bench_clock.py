"""What keeping window times on the system clock costs (edge_agent.clock.SampleClock).

The daemon calls ``observe`` after each read of the ring (at most every few ms with a
serial ADC's 64-sample frames, at least every 0.5 s) and the clock itself twice a window;
each block of arrivals (1 s at first, 30 s from 30 minutes on) ends in a Theil-Sen fit
over at most 60 blocks. The clocks are simulated, so the steady state of a long run is
reached at once: 60 blocks of 30 s. A second of signal read in 64-sample frames costs at
most 234 observes and a 30th of a fit (a fit a second in the first minute).
"""

from __future__ import annotations

import pytest

from edge_agent.clock import BLOCK_MAX_S, MAX_BLOCKS, SampleClock
from tests.test_clock import T0, WALL, Clocks

FS = 15000.0
FRAME = 64


def steady_clock() -> tuple[SampleClock, Clocks]:
    """A clock 30 minutes into a run: 60 blocks of 30 s, an ADC 50 ppm fast."""
    clocks = Clocks()
    clock = SampleClock(FS, wall=clocks.wall, mono=clocks.mono)
    clock.start()
    fs_true, start, taken = FS * (1 + 50e-6), clocks.now, 0
    while not (clock._block_s == BLOCK_MAX_S and len(clock._points) == MAX_BLOCKS):
        clocks.now += 0.1
        n = int((clocks.now - start) * fs_true) - taken
        taken += n
        clock.observe(n)
    return clock, clocks


@pytest.mark.benchmark(group="SampleClock")
def test_observe_a_frame(benchmark):
    clock, clocks = steady_clock()
    dt = FRAME / FS

    def observe():  # frames at the ADC's rate: 50 ppm fast
        clocks.now += dt / (1 + 50e-6)
        return clock.observe(FRAME)

    assert benchmark(observe) == 0.0
    assert clock.rate()[0] == pytest.approx(FS * (1 + 50e-6), rel=2e-7)


@pytest.mark.benchmark(group="SampleClock")
def test_fit_of_60_blocks(benchmark):
    clock, _ = steady_clock()
    benchmark(clock._fit)
    assert len(clock._points) == MAX_BLOCKS
    assert clock.rate()[0] == pytest.approx(FS * (1 + 50e-6), rel=2e-7)


@pytest.mark.benchmark(group="SampleClock")
def test_time_of_a_sample(benchmark):
    clock, _ = steady_clock()
    t = benchmark(clock, 123_456_789)
    # taken at T0 + k / (FS (1 + 50 ppm)), on the system clock: 0.41 s before k / FS
    assert t == pytest.approx(T0 + WALL + 123_456_789 / (FS * (1 + 50e-6)), abs=0.01)
