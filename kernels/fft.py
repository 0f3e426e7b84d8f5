"""Forward FFTs of fixed length with reusable buffers: FFTW when installed, else scipy.

Every window has the same length, so each transform is planned once and then run on a
buffer the kernels fill in place. Two backends give the same transform (to float32
rounding):

- ``fftw``: FFTW 3 through pyFFTW (``pip install 'edge-agent[fftw]'``), planned with
  ``FFTW_ESTIMATE`` (instant, and the same plan on every run) on one thread. 3 to 4 times
  faster than scipy here for the lengths the windows use (benchmarks/README.md). pyFFTW is
  BSD-licensed, but its wheels carry FFTW, which is GPL-2.0-or-later: an installation that
  includes it is covered by the GPL, which is why it is an option and not a requirement.
- ``scipy``: ``scipy.fft`` (pocketfft, BSD), always available.

``EDGE_AGENT_FFT`` = ``auto`` (default: fftw if importable), ``fftw`` or ``scipy`` picks one.
Plans and their buffers belong to one thread: :func:`plan` keeps a cache per thread, so
pipelines in different threads never share a buffer.
"""

from __future__ import annotations

import functools
import os
import threading

import numpy as np
import scipy.fft

BACKENDS = ("fftw", "scipy")
KINDS = ("c2c", "r2c")  # complex64 → complex64 (n bins), float32 → complex64 (n // 2 + 1)


@functools.cache
def _fftw_available() -> bool:
    try:
        import pyfftw
    except ImportError:
        return False
    # A folder named pyfftw on the path imports as an empty namespace package.
    return hasattr(pyfftw, "FFTW")


def default_backend() -> str:
    """The backend :func:`plan` uses when none is named, from ``EDGE_AGENT_FFT``."""
    choice = os.environ.get("EDGE_AGENT_FFT", "auto").strip().lower() or "auto"
    if choice == "auto":
        return "fftw" if _fftw_available() else "scipy"
    if choice not in BACKENDS:
        raise ValueError(f"EDGE_AGENT_FFT={choice!r}: expected auto, fftw or scipy")
    if choice == "fftw" and not _fftw_available():
        raise ValueError("EDGE_AGENT_FFT=fftw but pyFFTW is not installed (pip install pyfftw)")
    return choice


class Plan:
    """One forward transform of length ``n``: fill :attr:`input`, call, read the result.

    The result is a buffer of the plan's own (fftw) or a new array (scipy); either way it
    is valid until the next call. Single precision: float32 keeps the spectral floor near
    -140 dB re the largest line, far below anything a feature reads.
    """

    def __init__(self, n: int, kind: str, backend: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"{kind=} is not one of {KINDS}")
        if backend not in BACKENDS:
            raise ValueError(f"{backend=} is not one of {BACKENDS}")
        if n < 2:
            raise ValueError(f"{n=} must be at least 2")
        self.n, self.kind, self.backend = int(n), kind, backend
        in_dtype = np.complex64 if kind == "c2c" else np.float32
        n_out = self.n if kind == "c2c" else self.n // 2 + 1
        if backend == "fftw":
            import pyfftw

            self.input = pyfftw.empty_aligned(self.n, dtype=in_dtype)
            self._output = pyfftw.empty_aligned(n_out, dtype=np.complex64)
            self.input[:] = 0
            # FFTW_ESTIMATE plans without timing trial runs: no start-up cost, and the same
            # plan (so the same rounding) every run. DESTROY_INPUT: kernels refill it. FFTW's
            # planner is not thread-safe (only executing a plan is): one thread plans at once.
            with _PLAN_LOCK:
                self._fftw = pyfftw.FFTW(
                    self.input,
                    self._output,
                    direction="FFTW_FORWARD",
                    flags=("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT"),
                    threads=1,
                )
        else:
            self.input = np.zeros(self.n, dtype=in_dtype)

    def __call__(self) -> np.ndarray:
        if self.backend == "fftw":
            self._fftw()
            return self._output
        if self.kind == "c2c":
            return scipy.fft.fft(self.input, workers=1)
        return scipy.fft.rfft(self.input, workers=1)


_local = threading.local()
_PLAN_LOCK = threading.Lock()


def plan(n: int, kind: str, backend: str | None = None) -> Plan:
    """The calling thread's plan for a forward ``kind`` transform of length ``n``."""
    backend = backend or default_backend()
    cache = getattr(_local, "plans", None)
    if cache is None:
        cache = _local.plans = {}
    key = (int(n), kind, backend)
    p = cache.get(key)
    if p is None:
        p = cache[key] = Plan(n, kind, backend)
    return p
