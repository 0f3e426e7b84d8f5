"""Session fixtures for the benchmarks: FFTW's measured plans, the replay recordings, and a
header for the report."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pytest
from edge_agent.kernels import fft
from edge_agent.kernels.engine import fft_length

from benchmarks import workloads as wl
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import write_recording


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"edge-agent benchmarks: numpy {np.__version__}, numba {numba.__version__}, "
        f"{os.cpu_count()} CPUs, NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', '(unset)')}",
        f"FFTW plans: measured, kept in {fft.wisdom_path()}"
        if fft.wisdom_path()
        else "FFTW plans: estimated (EDGE_AGENT_FFT_WISDOM=none)",
    ]


@pytest.fixture(scope="session", autouse=True)
def measured_fft_plans() -> tuple[str, ...]:
    """FFTW's plans of the default windows, measured as a pipeline has them (read from the
    wisdom file, or measured once, about 2 s, on a new machine), for every benchmark that
    plans FFTW transforms itself; whatever EDGE_AGENT_FFT says."""
    n, n_long = fft_length(wl.LENGTH), Pipeline(wl.CONFIG, wl.FS).long_window.shape[0]
    return tuple(fft.tune(m, kind, "fftw") for m, kind in ((n, "c2c"), (n, "r2c"), (n_long, "c2c")))


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``REPLAY_S`` of 15 kS/s three-phase currents as ``.npy`` and as ``.csv``.

    Written once per session (about 2 s, most of it formatting the CSV).
    """
    folder = tmp_path_factory.mktemp("recordings")
    paths = {fmt: folder / f"rec{wl.REPLAY_S:g}s.{fmt}" for fmt in ("npy", "csv")}
    for path in paths.values():
        write_recording(path, wl.spec(wl.REPLAY_S), wl.CONFIG.motor)
    return paths
