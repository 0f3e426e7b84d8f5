"""Session fixtures for the benchmarks: the replay recordings, and a header for the report."""

from __future__ import annotations

import os
from pathlib import Path

import numba
import numpy as np
import pytest

from benchmarks import workloads as wl
from edge_agent.simulate import write_recording


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"edge-agent benchmarks: numpy {np.__version__}, numba {numba.__version__}, "
        f"{os.cpu_count()} CPUs, NUMBA_CACHE_DIR={os.environ.get('NUMBA_CACHE_DIR', '(unset)')}"
    ]


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
