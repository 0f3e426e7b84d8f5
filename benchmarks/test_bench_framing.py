"""What parsing the serial stream costs: 1 s of 15 kS/s on 6 channels, binary and ASCII.

The binary stream is protocol v1 frames of 64 samples (234 frames of 64 and one of 24,
15 000 samples per channel, 184.7 kB); the ASCII stream is the same samples as CRLF lines
(about 440 kB). Each is fed to a new parser either whole or in 4096-byte reads, the size
a serial read returns, which cut frames and lines anywhere. The ``bad-lines`` case has one
bad line in every 1000, to show what the ASCII parser's fallback costs.

``extra_info["samples_per_s"]`` is samples parsed per second of wall time, counted per
channel as the ADC counts them (one row of 6 channels is 6), and ``ratio_to_90k`` its
ratio to the 90 000 samples/s that 15 kS/s on 6 channels produce; ``rows_per_s`` counts
rows (all channels at one instant).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edge_agent.acquisition.framing import AsciiParser, FrameParser, encode_frame

FS = 15000
CHANNELS = 6
FRAME = 64
REQUIRED = FS * CHANNELS  # 90 000 samples/s, counted per channel
READ = 4096  # bytes per serial read


@functools.cache
def counts() -> np.ndarray:
    """1 s of 12-bit ADC counts around mid-scale: three 50 Hz currents, three voltages."""
    rng = np.random.default_rng(0)
    t = np.arange(FS) / FS
    phase = np.array([0, -2, 2, 0, -2, 2]) * np.pi / 3
    amp = np.array([900, 900, 900, 1800, 1800, 1800])
    x = 2048 + amp * np.sin(2 * np.pi * 50 * t[:, None] + phase) + rng.normal(0, 3, (FS, 6))
    return np.round(x).astype(np.int16)


@functools.cache
def binary_stream() -> bytes:
    x = counts()
    starts = range(0, FS, FRAME)
    return b"".join(encode_frame(x[s : s + FRAME], i, s * 1000 // 15) for i, s in enumerate(starts))


@functools.cache
def ascii_lines() -> tuple[bytes, ...]:
    return tuple(",".join(map(str, row)).encode() + b"\r\n" for row in counts().tolist())


@functools.cache
def ascii_stream(bad_every: int | None) -> bytes:
    lines = list(ascii_lines())
    if bad_every:
        lines[bad_every // 2 :: bad_every] = [b"2048,2048,OVF,2048,2048,2048\r\n"] * len(
            lines[bad_every // 2 :: bad_every]
        )
    return b"".join(lines)


def chunks(stream: bytes, read: int | None) -> list[bytes]:
    if read is None:
        return [stream]
    return [stream[i : i + read] for i in range(0, len(stream), read)]


def parse_all(parser, pieces: list[bytes]) -> np.ndarray:
    return np.concatenate([parser.feed(p).samples for p in pieces])


def report(benchmark, rows: int) -> None:
    if benchmark.stats is not None:  # None under --benchmark-disable
        rows_per_s = rows / benchmark.stats.stats.mean
        benchmark.extra_info["rows_per_s"] = round(rows_per_s)
        benchmark.extra_info["samples_per_s"] = round(rows_per_s * CHANNELS)
        benchmark.extra_info["ratio_to_90k"] = round(rows_per_s * CHANNELS / REQUIRED, 1)


@pytest.mark.benchmark(group="FrameParser, 1 s of 15 kS/s x 6 channels, 64-sample frames")
@pytest.mark.parametrize("read", [None, READ], ids=["whole", "4096-byte-reads"])
def test_frame_parser(benchmark, read):
    pieces = chunks(binary_stream(), read)

    def run():
        parser = FrameParser(CHANNELS)
        return parser, parse_all(parser, pieces)

    run()  # warm-up outside the timer
    parser, samples = benchmark(run)

    np.testing.assert_array_equal(samples, counts())
    assert parser.frames == 235 and parser.lost_frames == parser.crc_errors == 0
    assert parser.bytes_skipped == 0 and parser.pending == 0
    report(benchmark, samples.shape[0])


@pytest.mark.benchmark(group="AsciiParser, 1 s of 15 kS/s x 6 channels, CRLF lines")
@pytest.mark.parametrize(
    ("read", "bad_every"),
    [(None, None), (READ, None), (None, 1000)],
    ids=["whole", "4096-byte-reads", "whole-bad-lines"],
)
def test_ascii_parser(benchmark, read, bad_every):
    pieces = chunks(ascii_stream(bad_every), read)

    def run():
        parser = AsciiParser(CHANNELS)
        return parser, parse_all(parser, pieces)

    run()
    parser, samples = benchmark(run)

    bad = np.zeros(FS, dtype=bool)
    if bad_every:
        bad[bad_every // 2 :: bad_every] = True
    np.testing.assert_array_equal(samples, counts()[~bad])
    assert parser.lines == FS and parser.bad_lines == bad.sum()
    report(benchmark, samples.shape[0])
