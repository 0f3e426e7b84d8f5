"""SampleRing: the lock-free single-producer, single-consumer buffer between threads.

The acquisition thread (``edge-acq``) writes blocks of samples; the processing thread
(``edge-proc``) reads whatever has arrived and feeds it to :meth:`Pipeline.update
<edge_agent.pipeline.Pipeline.update>`. When the consumer falls behind by more than the
ring's capacity, the oldest samples are overwritten: they are counted, never returned, and
the first sample after them is marked as a gap, so the window that spans it is flagged
rather than silently stitched (ARCHITECTURE.md).

Lifecycle::

    ring = SampleRing.for_seconds(channels=6, fs=15000, seconds=2.0)

    # edge-acq: the only thread that calls write() and, after its last write, close()
    ring.write(frame, gap_before=sequence_jumped)
    ring.close()

    # edge-proc: the only thread that calls read() and wait()
    while not ring.closed:
        if ring.wait(timeout=0.5):
            chunk = ring.read()
            if chunk:
                records = pipeline.update(chunk.data, chunk.gaps)

Any thread may read :attr:`SampleRing.stats`.

Why no lock is needed (CPython with the GIL; not the free-threaded build)
--------------------------------------------------------------------------
Every field has exactly one writer. The producer owns ``written``, ``gaps_marked`` and
``_claimed`` and appends to the gap-mark deque; the consumer owns ``consumed``,
``overwritten``, ``overruns`` and pops from the deque. Each is a Python int attribute whose
store is a single pointer store made with the GIL held, so a reader sees either the old or
the new value, never a torn one; ``deque.append`` and ``deque.popleft`` are atomic in the
same way. The GIL is a mutex: everything a thread did before releasing it is visible to
the next thread that acquires it, which gives the happens-before edges below.

The sample copies are the exception: numpy releases the GIL while it copies a large
array (measured here: another thread keeps running during a slice assignment), so the
producer's and the consumer's copies can run at the same time on two cores and touch the
same slots. The protocol is therefore a seqlock, with the two counters as its sequence:

producer, ``write`` of samples [w, e):
    1. append a gap mark at ``w`` if asked to;
    2. ``_claimed = e``: from now on, the slots of samples below ``e - capacity`` may be
       overwritten (the "begin" of the seqlock);
    3. copy the samples into their slots (at most two slices; possibly without the GIL);
    4. ``written = e``: publish. The copy finished before this store, in program order,
       and the store is made with the GIL held, so a consumer that reads ``written >= e``
       afterwards also sees the samples (and the mark of step 1).

consumer, ``read``:
    1. read ``written`` once: samples below it are complete in their slots, unless the
       producer has since lapped them;
    2. copy the oldest still-present samples (possibly without the GIL);
    3. validate: re-read ``_claimed``. A producer copy that overlapped ours began after
       its claim was stored, and this read comes after our copy ended; both the store and
       this read hold the GIL, so the GIL passed from producer to consumer in between and
       the claim is visible, whichever of the two copies ran without the GIL. Samples below
       ``_claimed - capacity`` may have been overwritten (even torn, value by value) while
       they were copied: they are dropped and counted in ``overwritten``, and the first
       sample kept is marked as a gap.

Validating against ``written`` instead of ``_claimed`` would not be enough: a write still in
its step 3 is not yet in ``written`` but already overwrites the oldest slots.

Hence every sample ``write`` was given is, exactly once, either returned by ``read`` (whole,
in order) or counted in ``overwritten``: once the consumer has drained the ring,
``consumed + overwritten == written``.

Under free-threaded CPython (3.13t, no GIL) the attribute stores carry no ordering
guarantee for the numpy data, and this argument does not hold.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True, eq=False)
class Chunk:
    """Samples returned by one :meth:`SampleRing.read`.

    ``data`` has shape (n, channels), oldest first, and belongs to the caller (a copy).
    ``start`` is the absolute index (samples since the ring was made) of ``data[0]``, or
    of the next sample to come when the chunk is empty. ``gaps`` are indices into ``data``
    of samples that follow a loss: a gap the producer marked, or the resume point after an
    overrun. ``lost`` is the number of samples overwritten before the consumer read them,
    found by this read. ``len(chunk)`` is n, and an empty chunk is false.
    """

    data: np.ndarray
    start: int
    gaps: tuple[int, ...] = ()
    lost: int = 0
    # Samples known lost before each of ``gaps`` (the producer's count, plus samples
    # overwritten in the ring); 0 where the loss is unknown.
    gap_lost: tuple[int, ...] = ()

    def __len__(self) -> int:
        return self.data.shape[0]

    @property
    def end(self) -> int:
        """Absolute index just past the last sample."""
        return self.start + self.data.shape[0]


@dataclass(frozen=True)
class RingStats:
    """A snapshot of a ring's counters, in samples (gaps and overruns are events).

    ``overwritten`` includes samples already overwritten that the consumer has not yet
    noticed, so ``read + overwritten + fill == written``. Each counter is exact; taken while
    both threads run, the snapshot may mix values from one block apart.
    """

    written: int
    read: int
    overwritten: int
    gaps: int  # gap marks made by the producer
    overruns: int  # reads that found samples lost
    fill: int  # samples waiting for the consumer, at most the capacity


class SampleRing:
    """A fixed-size ring of multichannel samples, one producer thread and one consumer.

    Parameters
    ----------
    channels : number of channels (columns) of every block
    capacity : number of samples the ring holds; older unread samples are overwritten
    dtype : ``float32`` (default: exact for a 16- or 24-bit ADC's codes) or ``float64``

    Counters (Python ints, monotonic, each written by one thread only):
    ``written`` samples given to :meth:`write`, ``consumed`` samples returned by
    :meth:`read`, ``overwritten`` samples lost to overrun as the consumer found them,
    ``gaps_marked`` writes with ``gap_before=True``, ``overruns`` reads that found a loss.
    """

    __slots__ = (
        "_buf",
        "_claimed",
        "_closing",
        "_event",
        "_gap_pending",
        "_gap_pending_lost",
        "_marks",
        "capacity",
        "channels",
        "consumed",
        "dtype",
        "gaps_marked",
        "overruns",
        "overwritten",
        "written",
    )

    def __init__(self, channels: int, capacity: int, dtype: Any = np.float32) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int | np.integer):
            raise TypeError(f"channels must be an int, got {type(channels).__name__}")
        if isinstance(capacity, bool) or not isinstance(capacity, int | np.integer):
            raise TypeError(f"capacity must be an int, got {type(capacity).__name__}")
        if channels < 1:
            raise ValueError(f"{channels=} must be at least 1")
        if capacity < 1:
            raise ValueError(f"{capacity=} must be at least 1")
        dt = np.dtype(dtype)
        if dt not in _DTYPES:
            raise ValueError(f"dtype={dt} must be float32 or float64")
        self.channels = int(channels)
        self.capacity = int(capacity)
        self.dtype = dt
        self._buf = np.zeros((self.capacity, self.channels), dtype=dt)
        # Producer-owned.
        self.written = 0
        self.gaps_marked = 0
        self._claimed = 0  # end of the block being (or last) copied in; >= written
        self._closing = False
        # Consumer-owned.
        self.consumed = 0
        self.overwritten = 0
        self.overruns = 0
        self._gap_pending = False  # a loss precedes the next sample to return
        self._gap_pending_lost = 0  # how many samples it cost, where known
        # Absolute indices of samples that follow a gap the producer saw; ascending.
        self._marks: deque[tuple[int, int]] = deque()  # (index, samples lost before it)
        # Wakes the consumer; only touched after the data is published.
        self._event = threading.Event()

    @classmethod
    def for_seconds(
        cls, channels: int, fs: float, seconds: float, dtype: Any = np.float32
    ) -> SampleRing:
        """A ring holding ``seconds`` of signal at ``fs`` Hz, e.g. 2 s at 15 kS/s: 30000."""
        if not fs > 0:
            raise ValueError(f"{fs=} must be positive")
        if not seconds > 0:
            raise ValueError(f"{seconds=} must be positive")
        # round() first: 0.1 * 30000 is 3000.0000000000005, which is 3000 samples.
        return cls(channels, math.ceil(round(fs * seconds, 6)), dtype)

    # -- producer -----------------------------------------------------------------------

    def write(self, block: np.ndarray, gap_before: bool = False, lost_before: int = 0) -> None:
        """Append ``block`` of shape (n, channels); never blocks, never fails for lack of room.

        ``gap_before=True`` says that samples were lost just before ``block[0]`` (the
        source saw a sequence gap); with an empty block, before the next sample written.
        ``lost_before`` is how many, when the source knows (0: unknown). A
        block longer than the capacity keeps its last ``capacity`` samples; the others
        count as overwritten. Values are cast to the ring's dtype.
        """
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"block has shape {block.shape}; expected (n, {self.channels})")
        if self._closing:
            raise RuntimeError("write() after close(): the ring is closed")
        w = self.written
        if gap_before:
            # Before the samples are published: the consumer sees both.
            self._marks.append((w, int(lost_before)))
            self.gaps_marked += 1
        n = block.shape[0]
        if n == 0:
            return
        end = w + n
        cap = self.capacity
        if n > cap:
            block = block[n - cap :]
            w = end - cap
            n = cap
        self._claimed = end  # seqlock begin: slots of samples < end - cap are now fair game
        buf = self._buf
        i = w % cap
        first = min(n, cap - i)  # up to the end of the ring, then from its start
        buf[i : i + first] = block[:first]
        if first < n:
            buf[: n - first] = block[first:]
        self.written = end  # publish, after the copy
        if not self._event.is_set():
            self._event.set()

    def close(self) -> None:
        """No more writes. Call from the producer after its last write (or once it stopped).

        The consumer still reads what is left; :attr:`closed` turns true once it has.
        """
        self._closing = True
        self._event.set()

    # -- consumer -----------------------------------------------------------------------

    def read(self, max_samples: int | None = None) -> Chunk:
        """Take the oldest unread samples, at most ``max_samples`` (None: all there are).

        After an overrun the read resumes at the oldest sample still in the ring and marks
        a gap there. Returns an empty chunk when nothing is waiting.
        """
        if max_samples is not None and max_samples < 0:
            raise ValueError(f"{max_samples=} must be >= 0 or None")
        cap = self.capacity
        cursor = self.consumed + self.overwritten  # next absolute index to return
        w = self.written  # (1) samples below w are in their slots
        start = max(cursor, w - cap)
        end = w if max_samples is None else min(w, start + max_samples)
        n = end - start if end > start else 0
        data = self._copy_out(start, n)  # (2) may run without the GIL
        # (3) validate: what the producer may have overwritten while we copied.
        first = max(start, self._claimed - cap)
        if first > start:
            data = data[min(first, end) - start :]
        lost = first - cursor
        n = data.shape[0]
        next_cursor = first + n

        pending = self._gap_pending or lost > 0
        pending_lost = self._gap_pending_lost + lost
        gaps: list[int] = []
        gap_lost: list[int] = []
        marks = self._marks
        limit = end if n else next_cursor
        while marks and marks[0][0] < limit:
            m, m_lost = marks.popleft()
            if m < first:
                # Marked in the overwritten stretch: one gap at the resume point.
                pending = True
                pending_lost += m_lost
            elif not gaps or gaps[-1] != m - first:
                gaps.append(m - first)
                gap_lost.append(m_lost)
            else:
                gap_lost[-1] += m_lost
        if n and pending:
            if not gaps or gaps[0] != 0:
                gaps.insert(0, 0)
                gap_lost.insert(0, pending_lost)
            else:
                gap_lost[0] += pending_lost
            pending, pending_lost = False, 0
        self._gap_pending = pending
        self._gap_pending_lost = pending_lost

        if lost:
            self.overwritten += lost
            self.overruns += 1
        self.consumed += n
        return Chunk(data, first if n else next_cursor, tuple(gaps), lost, tuple(gap_lost))

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until samples are waiting or the ring is closed; False if ``timeout`` passed."""
        if self._ready():
            return True
        self._event.clear()
        # A write that published before the clear() is seen here; one after it sets the event.
        if self._ready():
            return True
        return self._event.wait(timeout)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called and every sample was read or counted lost."""
        return self._closing and self.consumed + self.overwritten >= self.written

    @property
    def available(self) -> int:
        """Samples the consumer can read now (at most the capacity)."""
        waiting = self.written - (self.consumed + self.overwritten)
        return min(max(waiting, 0), self.capacity)

    # -- anyone -------------------------------------------------------------------------

    @property
    def stats(self) -> RingStats:
        """The counters, for a monitoring thread."""
        w = self.written
        r = self.consumed
        o = self.overwritten
        waiting = w - r - o
        unnoticed = max(waiting - self.capacity, 0)
        return RingStats(
            written=w,
            read=r,
            overwritten=o + unnoticed,
            gaps=self.gaps_marked,
            overruns=self.overruns,
            fill=max(waiting - unnoticed, 0),
        )

    def _ready(self) -> bool:
        return self._closing or self.written > self.consumed + self.overwritten

    def _copy_out(self, start: int, n: int) -> np.ndarray:
        """Copy of samples [start, start + n), n <= capacity, from their slots."""
        cap = self.capacity
        i = start % cap
        if i + n <= cap:
            return self._buf[i : i + n].copy()
        first = cap - i
        out = np.empty((n, self.channels), dtype=self.dtype)
        out[:first] = self._buf[i:]
        out[first:] = self._buf[: n - first]
        return out
