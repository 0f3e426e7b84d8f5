"""SampleRing: every sample written is read once, in order, or counted lost; gaps are marked.

The threaded tests write a counter signal: sample k of channel c holds k * channels + c, in
a float64 ring so every value is exact. A returned sample is valid only if its value equals
its absolute index, so a torn, stale or misplaced sample cannot pass unnoticed.
"""

from __future__ import annotations

import bisect
import random
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.acquisition.ring import Chunk, SampleRing

STRESS_S = 2.0


def counter(start: int, n: int, channels: int) -> np.ndarray:
    """Samples start .. start + n - 1 of the counter signal, shape (n, channels)."""
    k = np.arange(start, start + n, dtype=np.float64)[:, None]
    return k * channels + np.arange(channels)


def assert_valid(chunk: Chunk, channels: int) -> None:
    np.testing.assert_array_equal(chunk.data, counter(chunk.start, len(chunk), channels))


# -- single thread ----------------------------------------------------------------------


def test_read_returns_what_was_written_in_order():
    ring = SampleRing(3, 10, dtype=np.float64)
    ring.write(counter(0, 4, 3))
    ring.write(counter(4, 3, 3))
    chunk = ring.read()
    assert chunk.start == 0 and len(chunk) == 7 and chunk.gaps == () and chunk.lost == 0
    assert_valid(chunk, 3)
    assert chunk.data.dtype == np.float64 and chunk.data.shape == (7, 3)
    assert ring.written == 7 and ring.consumed == 7 and ring.overwritten == 0


def test_empty_ring_reads_an_empty_chunk():
    ring = SampleRing(2, 8)
    chunk = ring.read()
    assert not chunk and len(chunk) == 0 and chunk.data.shape == (0, 2)
    assert chunk.start == 0 and chunk.gaps == () and chunk.lost == 0
    ring.write(counter(0, 5, 2))
    ring.read()
    chunk = ring.read()
    assert not chunk and chunk.start == 5


def test_partial_reads_and_reads_across_the_wrap():
    ring = SampleRing(2, 8, dtype=np.float64)
    ring.write(counter(0, 6, 2))
    first = ring.read(4)
    assert (first.start, len(first)) == (0, 4)
    ring.write(counter(6, 5, 2))  # slots 6, 7 then 0, 1, 2: wraps
    second = ring.read(3)
    third = ring.read()
    assert (second.start, len(second)) == (4, 3)
    assert (third.start, len(third)) == (7, 4)  # read across the wrap
    for chunk in (first, second, third):
        assert_valid(chunk, 2)
        assert chunk.lost == 0 and chunk.gaps == ()
    assert ring.read(0).start == 11


def test_write_of_exactly_capacity_after_offset_wraps_in_two_slices():
    ring = SampleRing(1, 5, dtype=np.float64)
    ring.write(counter(0, 3, 1))
    assert_valid(ring.read(), 1)
    ring.write(counter(3, 5, 1))  # slots 3, 4, 0, 1, 2
    chunk = ring.read()
    assert (chunk.start, len(chunk), chunk.lost) == (3, 5, 0)
    assert_valid(chunk, 1)


def test_block_longer_than_capacity_keeps_its_tail():
    ring = SampleRing(2, 8, dtype=np.float64)
    ring.write(counter(0, 20, 2))
    chunk = ring.read()
    assert (chunk.start, len(chunk), chunk.lost, chunk.gaps) == (12, 8, 12, (0,))
    assert_valid(chunk, 2)
    assert ring.written == 20 and ring.overwritten == 12 and ring.consumed == 8


def test_late_reader_counts_overrun_exactly_and_resumes_at_the_oldest():
    ring = SampleRing(2, 10, dtype=np.float64)
    ring.write(counter(0, 4, 2))
    assert len(ring.read(2)) == 2
    for k in range(4, 28, 3):  # samples 4..27, unread; the last 10 survive
        ring.write(counter(k, 3, 2))
    assert ring.stats.overwritten == 16  # 28 written, 2 read, 10 waiting
    chunk = ring.read(4)
    assert (chunk.start, len(chunk), chunk.lost, chunk.gaps) == (18, 4, 16, (0,))
    assert_valid(chunk, 2)
    rest = ring.read()
    assert (rest.start, len(rest), rest.lost, rest.gaps) == (22, 6, 0, ())
    stats = ring.stats
    assert (stats.written, stats.read, stats.overwritten, stats.fill) == (28, 12, 16, 0)
    assert stats.overruns == 1


def test_producer_gaps_are_marked_at_their_index_in_the_chunk():
    ring = SampleRing(1, 100, dtype=np.float64)
    ring.write(counter(0, 5, 1), gap_before=True)
    ring.write(counter(5, 5, 1))
    ring.write(counter(10, 5, 1), gap_before=True)
    ring.write(counter(15, 5, 1), gap_before=True)
    a = ring.read(12)
    b = ring.read()
    assert a.gaps == (0, 10) and (b.start, b.gaps) == (12, (3,))
    assert ring.gaps_marked == 3 and ring.stats.gaps == 3


def test_gap_on_an_empty_write_applies_to_the_next_sample():
    ring = SampleRing(1, 100, dtype=np.float64)
    ring.write(counter(0, 3, 1))
    ring.write(np.empty((0, 1)), gap_before=True)
    assert ring.read().gaps == ()
    ring.write(counter(3, 3, 1), gap_before=True)  # the same loss, reported twice
    assert ring.read().gaps == (0,)


def test_gap_marks_in_an_overwritten_stretch_collapse_into_the_overrun_gap():
    ring = SampleRing(1, 6, dtype=np.float64)
    ring.write(counter(0, 3, 1), gap_before=True)
    ring.write(counter(3, 3, 1), gap_before=True)
    ring.write(counter(6, 3, 1), gap_before=True)  # overwrites 0..2
    ring.write(counter(9, 1, 1))  # overwrites 3
    chunk = ring.read()
    assert (chunk.start, chunk.lost) == (4, 4)
    assert chunk.gaps == (0, 2)  # the overrun at 4, the producer's mark at 6


def test_a_gap_found_by_an_empty_read_is_reported_with_the_next_sample():
    ring = SampleRing(1, 4, dtype=np.float64)
    ring.write(counter(0, 10, 1))
    empty = ring.read(0)
    assert not empty and empty.lost == 6 and empty.start == 6
    chunk = ring.read(2)
    assert (chunk.start, chunk.lost, chunk.gaps) == (6, 0, (0,))
    assert ring.read().gaps == ()


def test_float32_ring_casts_and_keeps_integers_exactly():
    ring = SampleRing(6, 64)
    assert ring.dtype == np.float32
    block = counter(1_000_000, 64, 6)  # float64 in, values < 2**24
    ring.write(block)
    chunk = ring.read()
    assert chunk.data.dtype == np.float32
    np.testing.assert_array_equal(chunk.data, block)


def test_for_seconds_sizes_the_ring():
    ring = SampleRing.for_seconds(6, fs=15000, seconds=2.0)
    assert (ring.channels, ring.capacity) == (6, 30000)
    assert SampleRing.for_seconds(1, fs=30000, seconds=0.1).capacity == 3000
    assert SampleRing.for_seconds(1, fs=1000, seconds=0.0015).capacity == 2


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"channels": 0, "capacity": 4}, ValueError, "channels=0"),
        ({"channels": 2, "capacity": 0}, ValueError, "capacity=0"),
        ({"channels": 2.0, "capacity": 4}, TypeError, "channels"),
        ({"channels": 2, "capacity": 4, "dtype": np.int16}, ValueError, "float32 or float64"),
    ],
)
def test_bad_construction_names_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        SampleRing(**kwargs)


def test_bad_calls_name_the_problem():
    ring = SampleRing(3, 8)
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        ring.write(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        ring.write(np.zeros(3))
    with pytest.raises(ValueError, match="max_samples=-1"):
        ring.read(-1)
    with pytest.raises(ValueError, match="fs=0"):
        SampleRing.for_seconds(3, fs=0, seconds=1.0)


def test_close_lets_the_consumer_drain_then_ends():
    ring = SampleRing(2, 8, dtype=np.float64)
    ring.write(counter(0, 5, 2))
    ring.close()
    assert not ring.closed  # samples still waiting
    assert ring.wait(0) is True
    assert len(ring.read(3)) == 3 and not ring.closed
    assert len(ring.read()) == 2 and ring.closed
    assert ring.wait(0) is True  # never sleeps on a closed ring
    with pytest.raises(RuntimeError, match="closed"):
        ring.write(counter(5, 1, 2))


def test_wait_times_out_without_data_and_wakes_on_a_write():
    ring = SampleRing(1, 8)
    assert ring.wait(0.01) is False
    ring.write(np.zeros((1, 1)))
    assert ring.wait(0) is True
    ring.read()
    woke = threading.Event()

    def consumer():
        if ring.wait(10):
            woke.set()

    t = threading.Thread(target=consumer)
    t.start()
    ring.write(np.zeros((1, 1)))
    t.join(10)
    assert woke.is_set()


# -- threads ----------------------------------------------------------------------------


def run_threads(producer, consumer) -> None:
    """Run both; re-raise the first failure of either (an assert in a thread is otherwise lost)."""
    errors: list[BaseException] = []

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [
        threading.Thread(target=guard(producer), name="test-acq"),
        threading.Thread(target=guard(consumer), name="test-proc"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_concurrent_reads_get_every_sample_once_in_order():
    """The producer fills the ring as fast as the room the consumer leaves allows.

    It never writes more than the free room, so no overrun can happen and every sample must
    arrive exactly once; the ring runs nearly full, so the producer keeps rewriting the slots
    just behind those the consumer is copying.
    """
    channels, capacity = 3, 4096
    ring = SampleRing(channels, capacity, dtype=np.float64)
    rng_p, rng_c = random.Random(1), random.Random(2)
    received: list[tuple[int, int]] = []  # (start, n) of each non-empty chunk

    def producer():
        k = 0
        deadline = time.monotonic() + STRESS_S
        while time.monotonic() < deadline:
            n = rng_p.randint(1, 1500)
            while ring.stats.fill + n > capacity:  # wait for room
                time.sleep(0)
            ring.write(counter(k, n, channels))
            k += n
        ring.close()

    def consumer():
        expect = 0
        while not ring.closed:
            if not ring.wait(1.0):
                continue
            chunk = ring.read(rng_c.choice([None, rng_c.randint(0, 3000)]))
            assert chunk.lost == 0 and chunk.gaps == ()
            if chunk:
                assert chunk.start == expect
                assert_valid(chunk, channels)
                expect = chunk.end
                received.append((chunk.start, len(chunk)))

    run_threads(producer, consumer)
    assert ring.overwritten == 0
    assert ring.consumed == ring.written == sum(n for _, n in received)
    assert ring.written > 10 * capacity  # many laps around the ring


def test_concurrent_overruns_are_counted_and_marked_exactly():
    """A consumer that dozes off: the producer laps it again and again.

    Every returned sample must be valid, every discontinuity between returned samples must
    carry a gap, the gaps must be exactly those plus the producer's marks on returned
    samples, and the samples skipped must equal the ``lost`` counts.
    """
    channels, capacity = 2, 2048
    ring = SampleRing(channels, capacity, dtype=np.float64)
    rng_p, rng_c = random.Random(3), random.Random(4)
    marks: list[int] = []
    ranges: list[tuple[int, int]] = []  # (start, end) of each non-empty chunk
    reported: list[int] = []  # absolute indices of the gaps reported
    discontinuities: list[int] = []
    totals = {"lost": 0, "skipped": 0}

    def producer():
        k = 0
        deadline = time.monotonic() + STRESS_S
        while time.monotonic() < deadline:
            n = rng_p.choice([rng_p.randint(1, 700), rng_p.randint(1, 700), 3000])
            gap = rng_p.random() < 0.05
            if gap:
                marks.append(k)
            ring.write(counter(k, n, channels), gap_before=gap)
            k += n
        ring.close()

    def consumer():
        expect = 0
        while not ring.closed:
            if not ring.wait(1.0):
                continue
            chunk = ring.read(rng_c.choice([None, rng_c.randint(0, 4000)]))
            totals["lost"] += chunk.lost
            if chunk:
                assert_valid(chunk, channels)
                assert chunk.start >= expect
                if chunk.start > expect:
                    discontinuities.append(chunk.start)
                    totals["skipped"] += chunk.start - expect
                    assert chunk.gaps[:1] == (0,)
                reported.extend(chunk.start + g for g in chunk.gaps)
                ranges.append((chunk.start, chunk.end))
                expect = chunk.end
            if rng_c.random() < 0.2:
                time.sleep(rng_c.uniform(0, 0.01))

    run_threads(producer, consumer)
    assert ring.overwritten == totals["lost"] == totals["skipped"] > 0
    assert ring.overruns >= len(discontinuities) > 10
    assert ring.consumed + ring.overwritten == ring.written
    assert ring.consumed == sum(e - s for s, e in ranges)
    starts = [s for s, _ in ranges]

    def returned(m: int) -> bool:
        i = bisect.bisect_right(starts, m) - 1
        return i >= 0 and m < ranges[i][1]

    expected = set(discontinuities) | {m for m in marks if returned(m)}
    assert len(reported) == len(set(reported))
    assert set(reported) == expected
    assert ring.gaps_marked == len(marks)


# -- property: against a model that keeps every sample in a list ------------------------


class ListModel:
    """The ring's contract, with a Python list of every sample ever written."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.samples: list[list[float]] = []
        self.marks: set[int] = set()
        self.cursor = 0
        self.lost_total = 0
        self.gap_pending = False

    def write(self, rows: list[list[float]], gap_before: bool) -> None:
        if gap_before:
            self.marks.add(len(self.samples))
        self.samples.extend(rows)

    def read(self, max_samples: int | None):
        w = len(self.samples)
        start = max(self.cursor, w - self.capacity)
        lost = start - self.cursor
        end = w if max_samples is None else min(w, start + max_samples)
        rows = self.samples[start:end]
        pending = self.gap_pending or lost > 0
        pending |= any(self.cursor <= m < start for m in self.marks)
        gaps = {m - start for m in self.marks if start <= m < end}
        if rows and pending:
            gaps.add(0)
            pending = False
        self.gap_pending = pending
        self.cursor = end if rows else start
        self.lost_total += lost
        return rows, (start if rows else self.cursor), tuple(sorted(gaps)), lost


operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 25), st.booleans()),
        st.tuples(st.just("read"), st.one_of(st.none(), st.integers(0, 25))),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 16),
    channels=st.integers(1, 3),
    dtype=st.sampled_from([np.float32, np.float64]),
    ops=operations,
)
def test_ring_matches_a_list_of_all_samples(capacity, channels, dtype, ops):
    ring = SampleRing(channels, capacity, dtype=dtype)
    model = ListModel(capacity)
    k = 0
    for op in [*ops, ("read", None)]:
        if op[0] == "write":
            _, n, gap = op
            block = counter(k, n, channels)
            k += n
            ring.write(block, gap_before=gap)
            model.write(block.tolist(), gap)
        else:
            chunk = ring.read(op[1])
            rows, start, gaps, lost = model.read(op[1])
            assert chunk.data.tolist() == rows
            assert chunk.data.shape == (len(rows), channels) and chunk.data.dtype == dtype
            assert (chunk.start, chunk.gaps, chunk.lost) == (start, gaps, lost)
        stats = ring.stats
        assert stats.written == len(model.samples)
        assert stats.read + stats.overwritten + stats.fill == stats.written
        assert stats.fill == ring.available <= capacity
    assert ring.overwritten == model.lost_total
    assert ring.consumed + ring.overwritten == ring.written


def test_known_losses_travel_with_their_gaps_and_overruns_add_theirs():
    ring = SampleRing(2, 100, dtype=np.float64)
    ring.write(np.zeros((10, 2)))
    ring.write(np.ones((10, 2)), gap_before=True, lost_before=64)
    chunk = ring.read()
    assert chunk.gaps == (10,) and chunk.gap_lost == (64,)
    # An overrun: 150 samples overwritten, and a producer's loss of 7 inside that stretch.
    ring.write(np.zeros((50, 2)))
    ring.write(np.zeros((200, 2)), gap_before=True, lost_before=7)
    chunk = ring.read()
    assert chunk.lost == 150
    assert chunk.gaps == (0,) and chunk.gap_lost == (157,)
