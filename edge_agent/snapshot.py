"""The last seconds of raw samples, saved on request (the ``snapshot`` command).

An engineer looking at an alert wants the waveform behind it. :class:`RawHistory` keeps
the last ``[store] snapshot_s`` seconds of every channel as received (float32: a 16-bit
ADC's samples exactly, half the memory: 30 s of 6 channels at 15 kS/s is 10.8 MB), and
:meth:`RawHistory.save` writes them as a ``.npy`` file that ``edge-agent replay`` and
``train`` read, samples lost in transit as rows of NaN. Old snapshot files are deleted
beyond ``[store] snapshots_keep``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.errors import StorageError
from edge_agent.recording import NpyWriter, with_lost_rows


class RawHistory:
    """A ring of the last ``seconds`` of samples, shape (n, channels) per block."""

    def __init__(self, fs: float, roles: Sequence[str], seconds: float) -> None:
        self.fs = float(fs)
        self.roles = list(roles)
        self.capacity = max(0, round(seconds * fs))
        self._buf = np.zeros((self.capacity, len(self.roles)), dtype=np.float32)
        self._next = 0
        self._filled = 0
        self._t_end = 0.0  # time of the end of the last sample pushed, s

    def push(
        self, block: np.ndarray, t_end: float, gaps: Sequence[int] = (), lost: Sequence[int] = ()
    ) -> None:
        """Append ``block`` (n, channels); ``t_end`` is the time just after its last sample.
        A loss before a row of ``gaps`` (``lost`` samples each, where known) is kept as rows
        of NaN, as a recording keeps it, so that a snapshot's replay sees the gap."""
        self._t_end = float(t_end)
        cap = self.capacity
        if cap == 0:
            return
        block = with_lost_rows(block, gaps, lost, cap)
        n = block.shape[0]
        if n >= cap:
            self._buf[:] = block[-cap:]
            self._next, self._filled = 0, cap
            return
        first = min(n, cap - self._next)
        self._buf[self._next : self._next + first] = block[:first]
        self._buf[: n - first] = block[first:]
        self._next = (self._next + n) % cap
        self._filled = min(cap, self._filled + n)

    def last(self, seconds: float) -> np.ndarray:
        """The last ``seconds`` (or all there is), oldest first, as a new array."""
        n = min(self._filled, round(seconds * self.fs))
        idx = (self._next - n + np.arange(n)) % max(self.capacity, 1)
        return self._buf[idx]

    def save(
        self, folder: Path, name: str, seconds: float, keep: int
    ) -> dict[str, Any]:
        """Write the last ``seconds`` to ``folder/<name>-<UTC time>.npy``; returns the
        reference published with the reply (path, size, sha256, times)."""
        if self.capacity == 0:
            raise ValueError("snapshot: disabled ([store] snapshot_s = 0)")
        x = self.last(seconds)
        if x.shape[0] == 0:
            raise ValueError("snapshot: no samples received yet")
        folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = folder / f"{name}-{stamp}.npy"
        k = 1
        while path.exists():
            k += 1
            path = folder / f"{name}-{stamp}-{k}.npy"
        writer = NpyWriter(path, x.shape[1], self.fs)
        try:
            writer.write(x)
            writer.close()
        except StorageError as exc:  # the disk full: no part of a snapshot is left
            with contextlib.suppress(StorageError):
                writer.close()
            path.unlink(missing_ok=True)
            raise StorageError(f"snapshot not saved: {exc}") from None
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        for old in sorted(folder.glob(f"{name}-*.npy"), key=lambda p: p.stat().st_mtime)[:-keep]:
            old.unlink(missing_ok=True)
        return {
            "path": str(path),
            "bytes": path.stat().st_size,
            "sha256": digest,
            "samples": int(x.shape[0]),
            "seconds": x.shape[0] / self.fs,
            "fs": self.fs,
            "channels": self.roles,
            "t_start": self._t_end - x.shape[0] / self.fs,
            "t_end": self._t_end,
        }
