"""What the ring costs: one write and one read of a block, 6 channels, float32.

Blocks of 64 samples are the serial frame size (the acquisition thread writes one per
frame); 7500 is one hop at 15 kS/s. The ring holds 2 s, so 7500-sample blocks wrap every
four calls. ``extra_info["samples_per_s"]`` is samples through the ring (written and read)
per second of wall time, counted per channel as the ADC counts them (one ring sample of 6
channels is 6), and ``ratio_to_90k`` its ratio to the 90 000 samples/s that 15 kS/s on 6
channels produce; ``rows_per_s`` counts ring samples (all channels at one instant).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edge_agent.acquisition.ring import SampleRing

FS = 15000.0
CHANNELS = 6
REQUIRED = FS * CHANNELS  # 90 000 samples/s, counted per channel


@functools.cache
def block(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, CHANNELS)).astype(np.float32)


@pytest.mark.benchmark(group="SampleRing write + read, 6 channels float32")
@pytest.mark.parametrize("n", [64, 7500])
def test_ring_write_read(benchmark, n):
    ring = SampleRing.for_seconds(CHANNELS, FS, 2.0)
    x = block(n)

    def cycle():
        ring.write(x)
        return ring.read()

    cycle()  # warm-up outside the timer
    chunk = benchmark(cycle)

    assert len(chunk) == n and chunk.lost == 0 and chunk.gaps == ()
    np.testing.assert_array_equal(chunk.data, x)
    assert ring.consumed == ring.written and ring.overwritten == 0
    if benchmark.stats is not None:  # None under --benchmark-disable
        rows_per_s = n / benchmark.stats.stats.mean
        benchmark.extra_info["block"] = n
        benchmark.extra_info["rows_per_s"] = round(rows_per_s)
        benchmark.extra_info["samples_per_s"] = round(rows_per_s * CHANNELS)
        benchmark.extra_info["ratio_to_90k"] = round(rows_per_s * CHANNELS / REQUIRED, 1)
