"""The acquisition thread's share of one core at 15 kS/s × 6 channels.

The emulator plays 64-sample frames of a counter at the real rate into a pseudo-terminal;
a SerialSource reads the other end into a ring, as `edge-agent run` does. The share is
the source thread's CPU time (``time.thread_time``) over the wall time of the play. It is
measured once per round (``pedantic``), since each round takes ``PLAY_S`` of real time.
"""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest

from edge_agent.acquisition.emulator import Emulator, check_counter, counter_blocks
from edge_agent.acquisition.framing import Scaling
from edge_agent.acquisition.ring import SampleRing
from edge_agent.acquisition.sources import SerialSource

FS, CHANNELS, PLAY_S = 15000.0, 6, 5.0
ROLES = ["ia", "ib", "ic", "va", "vb", "vc"]


def one_run() -> tuple[float, float, np.ndarray]:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        scaling = Scaling(offset=np.zeros(CHANNELS), gain=np.ones(CHANNELS))
        src = SerialSource(os.ttyname(slave), FS, ROLES, scaling)
        src.open()
        ring = SampleRing(CHANNELS, int(2 * PLAY_S * FS), dtype=np.float64)
        stop = threading.Event()
        reader = threading.Thread(target=src.run, args=(ring, stop))
        reader.start()
        n = int(PLAY_S * FS)
        emu = Emulator(lambda b: os.write(master, b), FS, CHANNELS, frame_samples=64)
        t0 = time.monotonic()
        emu.play_counts(counter_blocks(CHANNELS, n, 1500))
        while ring.stats.written < n and time.monotonic() - t0 < PLAY_S + 10:
            time.sleep(0.01)
        wall = time.monotonic() - t0
        stop.set()
        reader.join(5)
        return src.stats.cpu_s, wall, ring.read().data
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.benchmark(group="acquisition thread, 15 kS/s x 6 ch from a serial line")
def test_acquisition_cpu_share(benchmark):
    cpu, wall, data = benchmark.pedantic(one_run, rounds=3, iterations=1)
    assert data.shape == (int(PLAY_S * FS), CHANNELS)
    assert check_counter(data, 0, CHANNELS) == []
    benchmark.extra_info["cpu_share_of_one_core"] = round(cpu / wall, 4)
    benchmark.extra_info["thread_cpu_s"] = round(cpu, 3)
    benchmark.extra_info["wall_s"] = round(wall, 3)
