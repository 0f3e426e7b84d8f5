"""Whether numba's cache holds every kernel, so that a start need not compile them apart.

The daemon has a child process compile the kernels into numba's cache and then only loads
them (:func:`edge_agent.service.compile_kernels_apart`): the compiler's memory stays with
the child. Started every time, the child costs a start its own imports and loads (1.7 s
of 3.7 s to ready here, more on a small board), although after the first start the
cache holds every kernel until an upgrade.

Numba keeps no public record of what its cache holds, so the daemon keeps its own: once a
start has loaded every kernel from the cache (no dispatcher counted a cache miss), it
writes a stamp of what that cache depends on: the versions of Python, numba, llvmlite and
numpy, the CPU, the FFT backend (the scipy one has kernels of its own) and the time and
size of each kernel's source file, as numba checks them. A start whose stamp names the
same skips the child. A stamp can still be wrong, e.g. when the cache was emptied under
it: that start then compiles the missing kernels itself, as the daemon did before it had
the child, says so, and removes the stamp, so the next start compiles apart again.

Daemons of several motors on one computer (``edge-agent@.service``) share the cache. A
lock beside the stamp lets one of them compile at a time: the others, started with it at
boot, wait, find the stamp it wrote, and only load the kernels (or, stopped meanwhile,
give up waiting).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Stamp", "cache_key", "cache_misses"]

LOCK_POLL_S = 0.2  # while another process compiles, the lock is tried (and a stop seen) so often


def _kernels_dir() -> Path:
    """The folder of the installed ``edge_agent.kernels`` (``kernels/`` in a source tree)."""
    from edge_agent import kernels

    return Path(kernels.__file__).resolve().parent


def cache_key(fft_backend: str) -> dict[str, Any]:
    """What numba's cache of the kernels depends on, as JSON-able values."""
    import llvmlite
    import numba
    import numpy as np
    from llvmlite import binding

    folder = _kernels_dir()
    sources = {}
    for path in sorted(folder.glob("*.py")):
        st = path.stat()
        sources[path.name] = [st.st_mtime, st.st_size]
    return {
        "kernels": str(folder),
        "sources": sources,
        "python": sys.version,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "numpy": np.__version__,
        "jit": not numba.config.DISABLE_JIT,
        "cpu": numba.config.CPU_NAME or binding.get_host_cpu_name(),
        "cpu_features": numba.config.CPU_FEATURES or binding.get_host_cpu_features().flatten(),
        "fft": fft_backend,
    }


def cache_misses() -> int:
    """Kernel signatures this process compiled rather than loaded from numba's cache."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    from edge_agent import kernels

    seen: dict[int, Any] = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"{kernels.__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher):
                seen[id(obj)] = obj
    return sum(sum(d.stats.cache_misses.values()) for d in seen.values())


class Stamp:
    """The file that says a start loaded every kernel from the cache, and under what.

    It lives in numba's cache folder (``NUMBA_CACHE_DIR``, which the unit sets), so that
    emptying the folder removes it too; without one, in the user's cache folder, a file
    per installed copy of the kernels. Reading or writing it never fails a start: a
    stamp that cannot be read is no stamp, and one that cannot be written only costs the
    next start the child.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else self._default()

    @staticmethod
    def _default() -> Path | None:
        import numba

        if numba.config.CACHE_DIR:
            return Path(numba.config.CACHE_DIR) / "edge-agent-kernels.json"
        try:
            base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        except RuntimeError:  # no home folder
            return None
        tag = hashlib.sha256(str(_kernels_dir()).encode()).hexdigest()[:12]
        return base / "edge-agent" / f"kernels-{tag}.json"

    def holds(self, key: dict[str, Any]) -> bool:
        """Whether the stamp says every kernel was loaded from the cache under ``key``."""
        if self.path is None:
            return False
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("key") == key
        except (OSError, ValueError, AttributeError):
            return False

    def write(self, key: dict[str, Any]) -> bool:
        """Stamp ``key``; False (and nothing written) when the folder will not take it."""
        if self.path is None:
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"key": key, "written": time.time()}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return False
        return True

    @contextlib.contextmanager
    def lock(self, waiting: Callable[[], None], stop: threading.Event) -> Iterator[None]:
        """Hold the lock on compiling into this cache (``<stamp>.lock``), after calling
        ``waiting()`` if another process holds it; or, ``stop`` set while waiting, enter
        without it (the caller gives up). Without a stamp file, or where the lock cannot
        be made, nothing is locked: a start never fails for it."""
        fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT)
        try:
            told = False
            while fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told:
                        waiting()
                        told = True
                    if stop.wait(LOCK_POLL_S):
                        break
                except OSError:
                    break
            yield
        finally:
            if fd is not None:
                os.close(fd)  # releases the lock

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
