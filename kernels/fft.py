"""Forward FFTs of fixed length with reusable buffers: FFTW when installed, else scipy.

Every window has the same length, so each transform is planned once and then run on a
buffer the kernels fill in place. Two backends give the same transform (to float32
rounding):

- ``fftw``: FFTW 3 through pyFFTW (``pip install 'edge-agent[fftw]'``), on one thread,
  with measured plans where :func:`tune` has them (below), else planned with
  ``FFTW_ESTIMATE`` (instant). 3 to 4 times faster than scipy here for the lengths the
  windows use (benchmarks/README.md). pyFFTW is BSD-licensed, but its wheels carry FFTW,
  which is GPL-2.0-or-later: an installation that includes it is covered by the GPL, which
  is why it is an option and not a requirement.
- ``scipy``: ``scipy.fft`` (pocketfft, BSD), always available. pocketfft runs the
  transforms of one call side by side in SIMD lanes (4 in single precision: SSE2 on
  x86-64, NEON on arm64), but a transform alone in scalar code. So a transform of length
  n = 4m runs as the four length-m transforms of the samples x[4i + r], r = 0..3, in one
  call, joined by one radix-4 pass (:func:`_join_c2c`, :func:`_join_r2c`): Bailey's
  "four-step" FFT with a first factor of 4 (D. H. Bailey, "FFTs in external or
  hierarchical memory", J. Supercomputing 4, 1990). For the default windows this is 1.6 to
  2.1 times faster here than one call of length n, and as accurate (benchmarks/README.md).

``EDGE_AGENT_FFT`` = ``auto`` (default: fftw if importable), ``fftw`` or ``scipy`` picks one.
Plans and their buffers belong to one thread: :func:`plan` keeps a cache per thread, so
pipelines in different threads never share a buffer.

Measured plans (FFTW only): :func:`tune` has FFTW time the candidate plans of one transform
(``FFTW_MEASURE``: about 2 s in all for the default windows' three transforms here) and
keeps what it learnt, FFTW's *wisdom*, in a file, so that each transform is measured once
per machine. From then on every thread of the process plans that transform the measured
way (a plan made before is made again at its next use); another process reads the file
when it calls :func:`tune` (the pipeline does, when it is built). The default windows'
three transforms then take 75 µs instead of 115 here (benchmarks/README.md).

The file is ``EDGE_AGENT_FFT_WISDOM``, by default ``fftw-wisdom`` in systemd's
``CacheDirectory`` under systemd, else ``~/.cache/edge-agent/fftw-wisdom`` (or under
``$XDG_CACHE_HOME``); ``none`` turns measuring off (plans by estimate). A file that is
unreadable, damaged or made by another FFTW build or for another processor is measured
again and rewritten; one that cannot be written leaves the measured plans to this process.
A measured plan may round differently from an estimated one: spectra agree to float32
rounding (about 1e-7 of the largest line), as the two backends' do; in dB, a line near
-100 dB moves by up to a few thousandths.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
import scipy.fft
from edge_agent.kernels._flags import jit

log = logging.getLogger(__name__)

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

    The result is a buffer of the plan's own (fftw, and scipy's four-step lengths) or a new
    array; either way it is valid until the next call. A call may overwrite the input
    (fftw): fill it whole each time. Single precision: float32 keeps the spectral floor
    near -140 dB re the largest line, far below anything a feature reads.
    """

    def __init__(self, n: int, kind: str, backend: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"{kind=} is not one of {KINDS}")
        if backend not in BACKENDS:
            raise ValueError(f"{backend=} is not one of {BACKENDS}")
        if n < 2:
            raise ValueError(f"{n=} must be at least 2")
        self.n, self.kind, self.backend = int(n), kind, backend
        if backend == "fftw":
            self.input, self._output = _fftw_buffers(self.n, kind)
            self.input[:] = 0
            # FFTW_ESTIMATE plans without timing trial runs: no start-up cost. Where FFTW holds
            # wisdom for this transform (tune()), it takes the measured plan instead, at once.
            # FFTW's planner is not thread-safe (only executing a plan is): one thread plans
            # at a time.
            with _PLAN_LOCK:
                self.epoch = _wisdom_epoch
                self._fftw = _fftw_plan(self.input, self._output, "FFTW_ESTIMATE")
        else:
            self.input = np.zeros(self.n, dtype=_in_dtype(kind))
            self._twiddles = _twiddles(self.n) if _four_step(self.n) else None
            if self._twiddles is not None:
                self._output = np.empty(_out_len(self.n, kind), dtype=np.complex64)

    def __call__(self) -> np.ndarray:
        if self.backend == "fftw":
            self._fftw()
            return self._output
        real = self.kind == "r2c"
        transform = scipy.fft.rfft if real else scipy.fft.fft
        if self._twiddles is None:
            return transform(self.input, workers=1)
        # Row r of the (4, m) view holds x[4i + r]: four transforms in one call (four-step).
        rows = transform(self.input.reshape(-1, 4).T, axis=-1, workers=1)
        join = _join_r2c if real else _join_c2c
        join(rows.view(np.float32), self._twiddles, self._output.view(np.float32))
        return self._output


# Lengths from here up, when a multiple of 4, take scipy's four-step path. Below, it gains
# little or nothing: at 2048 points 11 against 13 µs (complex), 9.5 against 9.3 (real).
FOUR_STEP_MIN = 4096


def _four_step(n: int) -> bool:
    return n % 4 == 0 and n >= FOUR_STEP_MIN


def _out_len(n: int, kind: str) -> int:
    return n if kind == "c2c" else n // 2 + 1


@functools.lru_cache(maxsize=8)
def _twiddles(n: int) -> np.ndarray:
    """cos and sin of -2πrk/n for r = 1, 2, 3 (rows 2r - 2 and 2r - 1), k < n / 4.

    Single precision, like the transforms they join: the joined spectrum is as accurate
    as one scipy transform of length n (about 1.5e-7 of the largest bin; tests)."""
    k = np.arange(n // 4)
    ang = [-2.0 * np.pi * (r * k) / n for r in (1, 2, 3)]
    tw = np.array([f(a) for a in ang for f in (np.cos, np.sin)], dtype=np.float32)
    tw.setflags(write=False)
    return tw


@jit(inline="always")
def _butterfly(y, j, sign, tw, k):
    """The radix-4 pass at k < m: the outputs X[k + q·m], q = 0 .. 3, as 8 floats (re, im).

    ``y`` holds the rows' spectra as float32 (re, im) pairs; their bin j is read, its
    imaginary part times ``sign`` (-1: the conjugate, for a real transform's rows, which
    hold only half their bins). With T_r = W^{rk}·Y_r, W = e^{-2πj/n}:
    X = Y0 + T1 + T2 + T3, Y0 - jT1 - T2 + jT3, Y0 - T1 + T2 - T3, Y0 + jT1 - T2 - jT3.
    """
    ar = y[0, 2 * j]
    ai = sign * y[0, 2 * j + 1]
    br = y[1, 2 * j]
    bi = sign * y[1, 2 * j + 1]
    cr = y[2, 2 * j]
    ci = sign * y[2, 2 * j + 1]
    dr = y[3, 2 * j]
    di = sign * y[3, 2 * j + 1]
    t1r = tw[0, k] * br - tw[1, k] * bi
    t1i = tw[0, k] * bi + tw[1, k] * br
    t2r = tw[2, k] * cr - tw[3, k] * ci
    t2i = tw[2, k] * ci + tw[3, k] * cr
    t3r = tw[4, k] * dr - tw[5, k] * di
    t3i = tw[4, k] * di + tw[5, k] * dr
    s02r = ar + t2r
    s02i = ai + t2i
    d02r = ar - t2r
    d02i = ai - t2i
    s13r = t1r + t3r
    s13i = t1i + t3i
    d13r = t1r - t3r
    d13i = t1i - t3i
    return (
        s02r + s13r, s02i + s13i, d02r + d13i, d02i - d13r,
        s02r - s13r, s02i - s13i, d02r - d13i, d02i + d13r,
    )  # fmt: skip


@jit
def _join_c2c(y, tw, out):
    """X (n bins, as float32 pairs in ``out``) from the rows' complex transforms ``y``."""
    m = tw.shape[1]
    one = y.dtype.type(1.0)  # float32, so that the pass stays in single precision
    for k in range(m):
        x0r, x0i, x1r, x1i, x2r, x2i, x3r, x3i = _butterfly(y, k, one, tw, k)
        out[2 * k] = x0r
        out[2 * k + 1] = x0i
        out[2 * (k + m)] = x1r
        out[2 * (k + m) + 1] = x1i
        out[2 * (k + 2 * m)] = x2r
        out[2 * (k + 2 * m) + 1] = x2i
        out[2 * (k + 3 * m)] = x3r
        out[2 * (k + 3 * m) + 1] = x3i


@jit
def _join_r2c(y, tw, out):
    """X (bins 0 .. n/2, as float32 pairs in ``out``) from the rows' real transforms ``y``
    (bins 0 .. m//2 each; bin m - j of a real row is the conjugate of bin j)."""
    m = tw.shape[1]
    half = y.shape[1] // 2  # bins per row
    one = y.dtype.type(1.0)
    for k in range(m):
        if k < half:
            x0r, x0i, x1r, x1i, _, _, _, _ = _butterfly(y, k, one, tw, k)
        else:
            x0r, x0i, x1r, x1i, _, _, _, _ = _butterfly(y, m - k, -one, tw, k)
        out[2 * k] = x0r
        out[2 * k + 1] = x0i
        out[2 * (k + m)] = x1r
        out[2 * (k + m) + 1] = x1i
    # X[n/2]: every row at bin 0 (real), signs (-1)^r.
    out[4 * m] = y[0, 0] - y[1, 0] + y[2, 0] - y[3, 0]
    out[4 * m + 1] = 0.0


_local = threading.local()
_PLAN_LOCK = threading.Lock()


def plan(n: int, kind: str, backend: str | None = None) -> Plan:
    """The calling thread's plan for a forward ``kind`` transform of length ``n``.

    Made once per thread, and made again (FFTW) after :func:`tune` brought wisdom: the
    object and its buffers may change between calls, so take them from one call at a time.
    """
    backend = backend or default_backend()
    cache = getattr(_local, "plans", None)
    if cache is None:
        cache = _local.plans = {}
    key = (int(n), kind, backend)
    p = cache.get(key)
    # An FFTW plan made before FFTW learnt wisdom (tune()) may be slower: plan it again.
    if p is None or (backend == "fftw" and p.epoch != _wisdom_epoch):
        p = cache[key] = Plan(n, kind, backend)
    return p


def _in_dtype(kind: str) -> type[np.generic]:
    return np.complex64 if kind == "c2c" else np.float32


def _fftw_buffers(n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    import pyfftw

    n_out = _out_len(n, kind)
    return pyfftw.empty_aligned(n, dtype=_in_dtype(kind)), pyfftw.empty_aligned(n_out, np.complex64)


def _fftw_plan(a: np.ndarray, b: np.ndarray, *rigour: str):
    """FFTW's plan of the forward transform a → b. DESTROY_INPUT: the kernels refill a.

    Wisdom applies to plans made with the same flags but the rigour, so all plans are made
    here.
    """
    import pyfftw

    flags = (*rigour, "FFTW_DESTROY_INPUT")
    return pyfftw.FFTW(a, b, direction="FFTW_FORWARD", flags=flags, threads=1)


WISDOM_ENV = "EDGE_AGENT_FFT_WISDOM"
_WISDOM_FORMAT = "edge-agent fftw wisdom 1"
_loaded_wisdom: set[Path] = set()  # files imported in this process (under _PLAN_LOCK)
# Bumped whenever FFTW learns wisdom in this process (read from a file or measured): FFTW
# plans made before then are made again at their next plan() call, in every thread.
_wisdom_epoch = 0
_unwritable: set[Path] = set()  # files this process could not write (warned about once)


def wisdom_path() -> Path | None:
    """The file measured plans are kept in; None: measuring is off.

    ``EDGE_AGENT_FFT_WISDOM`` when set (``none``: off); else ``fftw-wisdom`` in systemd's
    ``CacheDirectory`` when run as a service, else in ``$XDG_CACHE_HOME/edge-agent``
    (``~/.cache/edge-agent``).
    """
    raw = os.environ.get(WISDOM_ENV)
    if raw is None:
        if os.environ.get("CACHE_DIRECTORY"):  # systemd's, for a unit with CacheDirectory=
            return Path(os.environ["CACHE_DIRECTORY"].split(":")[0]) / "fftw-wisdom"
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(cache) / "edge-agent" / "fftw-wisdom"
    raw = raw.strip()
    if raw.lower() in ("", "none"):
        return None
    return Path(raw).expanduser()


def tune(n: int, kind: str, backend: str | None = None) -> str:
    """Measure the fastest FFTW plan of a forward ``kind`` transform of length ``n``, once
    per machine; later :func:`plan` calls for it take that plan.

    Returns what happened: ``"measured"`` (FFTW timed the candidates, and the wisdom file
    was rewritten), ``"known"`` (the file or this process already held it), or ``"off"``
    (the scipy backend, or ``EDGE_AGENT_FFT_WISDOM=none``). Plans made before this call
    brought wisdom (read or measured) are made again at their next :func:`plan`, in every
    thread.
    """
    n = int(n)
    if kind not in KINDS:
        raise ValueError(f"{kind=} is not one of {KINDS}")
    if n < 2:
        raise ValueError(f"{n=} must be at least 2")
    backend = backend or default_backend()
    path = wisdom_path()
    if backend != "fftw" or path is None:
        return "off"
    global _wisdom_epoch
    a, b = _fftw_buffers(n, kind)
    with _PLAN_LOCK:
        if path not in _loaded_wisdom:
            _loaded_wisdom.add(path)
            if _import_wisdom(path):
                _wisdom_epoch += 1
        try:
            _fftw_plan(a, b, "FFTW_MEASURE", "FFTW_WISDOM_ONLY")
            return "known"
        except RuntimeError:  # "No FFTW wisdom is known for this plan."
            log.debug("measuring the FFTW plans of a %d-point %s transform", n, kind)
            _fftw_plan(a, b, "FFTW_MEASURE")
            _wisdom_epoch += 1
            _export_wisdom(path)
            return "measured"


def _import_wisdom(path: Path) -> bool:
    """Give FFTW the wisdom kept in ``path``; whether it took it."""
    import pyfftw

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable (%s); FFT plans will be measured again", path, exc)
        return False
    try:
        doc = json.loads(text)
        if doc.get("format") != _WISDOM_FORMAT:
            raise ValueError(f"expected format {_WISDOM_FORMAT!r}")
        wisdom = tuple(str(w).encode("ascii") for w in doc["wisdom"])
        if len(wisdom) != 3:
            raise ValueError("expected FFTW wisdom for 3 precisions")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: not edge-agent's FFTW wisdom (%s); FFT plans will be measured "
                    "again and the file rewritten", path, exc)  # fmt: skip
        return False
    # The single-precision part is the one the kernels use; FFTW refuses wisdom made by
    # another build or for another processor's instruction set.
    if not pyfftw.import_wisdom(wisdom)[1]:
        log.warning("%s: FFTW refused this wisdom (made by another FFTW build or machine?); "
                    "FFT plans will be measured again and the file rewritten", path)  # fmt: skip
        return False
    return True


def _export_wisdom(path: Path) -> None:
    import pyfftw

    doc = {
        "format": _WISDOM_FORMAT,
        "pyfftw": pyfftw.__version__,
        "wisdom": [w.decode("ascii") for w in pyfftw.export_wisdom()],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole, then renamed over the old file: a reader never sees half of it.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        if path not in _unwritable:
            _unwritable.add(path)
            log.warning("could not keep the measured FFT plans in %s (%s): they will be "
                        "measured again by the next process; set %s to a writable file, or "
                        "to none", path, exc, WISDOM_ENV)  # fmt: skip
