"""Serial framing: what a board sends is what the parser returns, and every fault on the
line is counted and shows up as a gap, never as a silent splice."""

from __future__ import annotations

import binascii
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_agent.acquisition.framing import (
    HEADER_SIZE,
    MAX_LINE_BYTES,
    MAX_SAMPLES,
    AsciiParser,
    FrameParser,
    Parsed,
    Scaling,
    crc16,
    encode_frame,
    frame_size,
)

RNG = np.random.default_rng(0)
SEQ_MOD = 2**32
COUNTS = ("frames", "crc_errors", "bad_headers", "bytes_skipped", "lost_frames", "lost_samples")
COUNTS += ("seq_restarts", "lines", "bad_lines")


def make_frames(count, n=16, channels=3, seq0=0, t0=0, seed=1):
    """``count`` consecutive frames: (list of bytes, list of sample arrays)."""
    rng = np.random.default_rng(seed)
    blobs, blocks = [], []
    for i in range(count):
        x = rng.integers(-32768, 32768, size=(n, channels)).astype(np.int16)
        blobs.append(encode_frame(x, (seq0 + i) % SEQ_MOD, t0 + 1000 * i))
        blocks.append(x)
    return blobs, blocks


def feed_all(parser, chunks):
    """Feed ``chunks`` in order; samples joined, gaps as rows of the joined samples, and the
    summed per-call counts."""
    parts, gaps, rows = [], [], 0
    totals = Parsed(samples=np.empty(0))
    for chunk in chunks:
        got = parser.feed(chunk)
        assert got.samples.shape[1:] == (parser.channels,)
        parts.append(got.samples)
        gaps += [rows + g for g in got.gaps]
        rows += got.samples.shape[0]
        for name in COUNTS:
            setattr(totals, name, getattr(totals, name) + getattr(got, name))
    totals.samples = np.concatenate(parts) if parts else np.empty((0, parser.channels))
    totals.gaps = gaps
    return totals


def counters(parser):
    names = ("frames", "crc_errors", "bad_headers", "bytes_skipped", "lost_frames")
    names += ("lost_samples", "seq_restarts", "last_seq", "last_t_us", "pending")
    return {name: getattr(parser, name) for name in names}


def raw_frame(version=1, channels=3, n_samples=4, seq=0, t_us=0, payload=None):
    """A frame with any header fields (including unacceptable ones) and a correct CRC."""
    if payload is None:
        payload = bytes(2 * n_samples * channels)
    body = struct.pack("<HBBHIQ", 0x5AA5, version, channels, n_samples, seq, t_us) + payload
    return body + struct.pack("<H", binascii.crc_hqx(body, 0xFFFF))


def assert_accounted(parser, good_frame_bytes):
    assert parser.bytes_fed == good_frame_bytes + parser.bytes_skipped + parser.pending


# --- the frame format -----------------------------------------------------------------


def test_crc_is_ccitt_false_with_its_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_worked_example_of_the_spec_is_what_encode_frame_writes():
    # docs/serial-protocol.md quotes these bytes: keep the document true.
    frame = encode_frame(np.array([[100, -100], [2047, -2048], [0, 1]]), 7, 1_000_000)
    assert frame.hex(" ") == (
        "a5 5a 01 02 03 00 07 00 00 00 40 42 0f 00 00 00 00 00 "
        "64 00 9c ff ff 07 00 f8 00 00 01 00 f2 54"
    )
    assert crc16(frame[:-2]) == 0x54F2
    assert len(frame) == frame_size(3, 2) == 32


def test_header_fields_are_little_endian_at_their_offsets():
    x = np.arange(12, dtype=np.int16).reshape(4, 3)
    frame = encode_frame(x, 0x01020304, 0x0A0B0C0D0E0F1011)
    assert frame[:2] == b"\xa5\x5a"
    assert struct.unpack_from("<BBHIQ", frame, 2) == (1, 3, 4, 0x01020304, 0x0A0B0C0D0E0F1011)
    # Interleaved by channel: s0c0 s0c1 s0c2 s1c0 ...
    assert np.frombuffer(frame, "<i2", count=12, offset=HEADER_SIZE).tolist() == list(range(12))


@pytest.mark.parametrize(
    ("samples", "seq", "t_us", "error", "match"),
    [
        (np.zeros(4, np.int16), 0, 0, ValueError, "expected \\(n_samples, n_channels\\)"),
        (np.zeros((0, 3), np.int16), 0, 0, ValueError, "0 rows"),
        (np.zeros((MAX_SAMPLES + 1, 1), np.int16), 0, 0, ValueError, "4097 rows"),
        (np.zeros((4, 17), np.int16), 0, 0, ValueError, "17 columns"),
        (np.zeros((4, 3)), 0, 0, TypeError, "dtype float64"),
        (np.full((4, 3), 40000), 0, 0, ValueError, "does not fit int16"),
        (np.zeros((4, 3), np.int16), SEQ_MOD, 0, ValueError, "seq=4294967296"),
        (np.zeros((4, 3), np.int16), 0, -1, ValueError, "t_us=-1"),
    ],
)
def test_encode_frame_names_what_is_wrong(samples, seq, t_us, error, match):
    with pytest.raises(error, match=match):
        encode_frame(samples, seq, t_us)


@pytest.mark.parametrize("channels", [0, 17, 3.0, True])
def test_parsers_refuse_a_bad_channel_count(channels):
    for cls in (FrameParser, AsciiParser):
        with pytest.raises((ValueError, TypeError), match="channels"):
            cls(channels)


# --- binary parser --------------------------------------------------------------------


def test_round_trip_of_many_frames_in_one_feed():
    blobs, blocks = make_frames(50, n=64, channels=6, seq0=100, t0=5_000)
    parser = FrameParser(6)
    got = parser.feed(b"".join(blobs))
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks))
    assert got.samples.dtype == np.int16
    assert (got.frames, got.gaps, got.bytes_skipped, got.crc_errors, got.bad_headers) == (
        50,
        [],
        0,
        0,
        0,
    )
    assert parser.frames == 50 and parser.last_seq == 149 and parser.last_t_us == 5_000 + 49_000
    assert parser.pending == 0


def test_frames_of_different_lengths_and_bytearray_or_memoryview_input():
    x1 = np.array([[1, 2]], np.int16)
    x2 = np.arange(2 * MAX_SAMPLES, dtype=np.int16).reshape(MAX_SAMPLES, 2)
    stream = encode_frame(x1, 0, 0) + encode_frame(x2, 1, 1)
    parser = FrameParser(2)
    a = parser.feed(bytearray(stream[:100]))
    b = parser.feed(memoryview(stream)[100:])
    np.testing.assert_array_equal(np.concatenate([a.samples, b.samples]), np.vstack([x1, x2]))


def test_garbage_before_and_between_frames_is_skipped_and_counted_exactly():
    blobs, blocks = make_frames(3)
    garbage = [b"boot v1.2\r\n", bytes(range(0, 0xA5)), b"\x5a\xa5\xa5", b"\xa5"]
    stream = garbage[0] + blobs[0] + garbage[1] + blobs[1] + garbage[2] + blobs[2] + garbage[3]
    parser = FrameParser(3)
    got = parser.feed(stream)
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks))
    # The trailing A5 may start a sync word: held, not yet skipped.
    assert parser.pending == 1
    assert got.bytes_skipped == sum(map(len, garbage)) - 1
    assert (got.gaps, got.crc_errors, got.bad_headers) == ([], 0, 0)
    assert_accounted(parser, sum(map(len, blobs)))
    parser.feed(b"\x00")
    assert parser.bytes_skipped == sum(map(len, garbage)) + 1 and parser.pending == 0


def test_sync_bytes_that_start_no_valid_header_are_bad_headers():
    blobs, blocks = make_frames(2)
    junk = b"\xa5\x5a\x07\x03" + bytes(20)  # version 7
    parser = FrameParser(3)
    got = parser.feed(blobs[0] + junk + blobs[1])
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks))
    assert (got.bad_headers, got.bytes_skipped, got.gaps) == (1, len(junk), [])


@pytest.mark.parametrize("index", [1, 3, 7])
def test_a_flipped_payload_bit_costs_that_frame_and_marks_a_gap(index):
    n = 16
    blobs, blocks = make_frames(8, n=n)
    bad = bytearray(blobs[index])
    bad[HEADER_SIZE + 5] ^= 0x10
    blobs[index] = bytes(bad)
    parser = FrameParser(3)
    got = parser.feed(b"".join(blobs))
    kept = blocks[:index] + blocks[index + 1 :]
    np.testing.assert_array_equal(got.samples, np.concatenate(kept))
    assert got.crc_errors == 1 and parser.crc_errors == 1
    if index == 7:
        # The last frame: nothing after it yet to reveal the loss.
        assert (got.lost_frames, got.gaps) == (0, [])
        got = parser.feed(encode_frame(blocks[0], 8, 0))
        index = 0  # the gap is at the first row of this call
    assert got.lost_frames == 1 and got.lost_samples == n
    assert got.gaps == [index * n]
    assert parser.bytes_skipped == len(bad)


def test_a_corrupt_frame_before_the_first_good_one_is_counted_but_no_gap():
    # Nothing came before it, so there is no stream yet to have a hole in.
    blobs, blocks = make_frames(3)
    blobs[0] = blobs[0][:30] + bytes([blobs[0][30] ^ 4]) + blobs[0][31:]
    got = FrameParser(3).feed(b"".join(blobs))
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks[1:]))
    assert (got.crc_errors, got.lost_frames, got.gaps) == (1, 0, [])


def test_a_corrupt_crc_field_is_a_crc_error():
    blobs, _ = make_frames(3)
    blobs[1] = blobs[1][:-1] + bytes([blobs[1][-1] ^ 1])
    got = FrameParser(3).feed(b"".join(blobs))
    assert (got.crc_errors, got.lost_frames, got.gaps) == (1, 1, [16])


def test_dropped_frames_are_counted_exactly_and_marked():
    n = 10
    blobs, blocks = make_frames(10, n=n)
    keep = [0, 1, 2, 5, 6, 9]  # 3, 4 lost, then 7, 8
    parser = FrameParser(3)
    got = parser.feed(b"".join(blobs[i] for i in keep))
    np.testing.assert_array_equal(got.samples, np.concatenate([blocks[i] for i in keep]))
    assert (got.lost_frames, got.lost_samples) == (4, 4 * n)
    assert got.gaps == [3 * n, 5 * n]
    assert (got.crc_errors, got.bytes_skipped) == (0, 0)


def test_lost_samples_use_the_previous_frames_length():
    a = encode_frame(np.zeros((5, 1), np.int16), 0, 0)
    b = encode_frame(np.zeros((9, 1), np.int16), 3, 0)
    got = FrameParser(1).feed(a + b)
    assert (got.lost_frames, got.lost_samples, got.gaps) == (2, 10, [5])


def test_sequence_wrap_around_is_not_a_gap():
    blobs, blocks = make_frames(4, seq0=SEQ_MOD - 2)
    parser = FrameParser(3)
    got = parser.feed(b"".join(blobs))
    assert (got.gaps, got.lost_frames) == ([], 0)
    assert parser.last_seq == 1
    # A jump across the wrap is counted modulo 2**32.
    got = parser.feed(encode_frame(blocks[0], 5, 0))
    assert (got.lost_frames, got.gaps) == (3, [0])


def test_a_backward_jump_is_a_restart_not_four_billion_lost_frames():
    blobs, _ = make_frames(3, seq0=1000)
    restart, _ = make_frames(2, seq0=0)
    parser = FrameParser(3)
    got = parser.feed(b"".join(blobs + restart))
    assert (got.gaps, got.lost_frames, got.lost_samples, got.seq_restarts) == ([48], 0, 0, 1)


def test_first_frame_after_construction_or_reset_is_not_a_gap():
    blobs, _ = make_frames(6, seq0=500)
    parser = FrameParser(3)
    assert parser.feed(blobs[0]).gaps == []
    parser.feed(blobs[1][:30])  # a partial frame when the port is reopened
    parser.reset()
    assert (parser.pending, parser.bytes_skipped, parser.last_seq) == (0, 30, None)
    got = parser.feed(blobs[4])
    assert (got.gaps, got.lost_frames, got.frames) == ([], 0, 1)
    assert parser.feed(blobs[5]).gaps == []


def test_bad_version_and_channel_count_and_size_are_counted():
    good, blocks = make_frames(2)
    bad = [
        raw_frame(version=2, seq=1),
        raw_frame(channels=4, seq=1),
        raw_frame(n_samples=0, seq=1),
        raw_frame(channels=1, n_samples=MAX_SAMPLES + 1, seq=1),
    ]
    parser = FrameParser(3)
    got = parser.feed(good[0] + b"".join(bad) + encode_frame(blocks[1], 1, 0))
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks))
    assert (got.bad_headers, got.crc_errors, got.gaps) == (4, 0, [])
    assert got.bytes_skipped == sum(map(len, bad))


def test_a_frame_for_another_channel_count_is_a_bad_header_each_time():
    other, _ = make_frames(3, channels=2)
    got = FrameParser(3).feed(b"".join(other))
    assert (got.frames, got.bad_headers, got.samples.shape) == (0, 3, (0, 3))


def test_sync_words_inside_the_payload_are_not_frames():
    x = np.full((32, 3), 0x5AA5, np.int16)  # every sample is the bytes A5 5A
    x[::3, 1] = 0x01A5  # and a few that look like version 1
    stream = encode_frame(x, 0, 0) + encode_frame(x, 1, 0)
    parser = FrameParser(3)
    got = parser.feed(stream)
    np.testing.assert_array_equal(got.samples, np.vstack([x, x]))
    assert (got.bad_headers, got.crc_errors, got.bytes_skipped) == (0, 0, 0)


def test_a_frame_split_at_every_offset_parses_identically():
    blobs, blocks = make_frames(3, n=8)
    x = np.full((8, 3), 0x5AA5, np.int16)
    stream = b"\x00\xa5" + blobs[0] + b"junk\xa5\x5a" + blobs[1] + encode_frame(x, 2, 7) + b"\xa5"
    whole = FrameParser(3)
    ref = feed_all(whole, [stream])
    np.testing.assert_array_equal(ref.samples, np.vstack([*blocks[:2], x]))
    for cut in range(len(stream) + 1):
        parser = FrameParser(3)
        got = feed_all(parser, [stream[:cut], stream[cut:]])
        np.testing.assert_array_equal(got.samples, ref.samples)
        assert got.gaps == ref.gaps
        assert counters(parser) == counters(whole), cut


def test_byte_by_byte_feeding_parses_identically():
    blobs, blocks = make_frames(4, n=5)
    stream = b"xx" + b"".join(blobs[:2]) + b"\xa5\x5a\x01" + b"".join(blobs[2:])
    parser = FrameParser(3)
    got = feed_all(parser, [stream[i : i + 1] for i in range(len(stream))])
    np.testing.assert_array_equal(got.samples, np.concatenate(blocks))
    assert got.gaps == [] and parser.bytes_skipped == 5
    assert_accounted(parser, sum(map(len, blobs)))


def test_a_corrupt_length_does_not_hold_back_the_frames_after_it():
    # A header whose n_samples was corrupted upwards claims the whole rest of the stream
    # and more; the good frames inside that span must come out now, not never.
    blobs, blocks = make_frames(5, n=16)
    bad = bytearray(blobs[1])
    bad[4:6] = struct.pack("<H", MAX_SAMPLES)
    blobs[1] = bytes(bad)
    parser = FrameParser(3)
    got = parser.feed(b"".join(blobs))
    np.testing.assert_array_equal(got.samples, np.concatenate([blocks[0], *blocks[2:]]))
    assert (got.crc_errors, got.lost_frames, got.gaps, parser.pending) == (1, 1, [16], 0)


def test_pending_bytes_stay_within_one_frame():
    parser = FrameParser(3)
    # A header claiming the largest frame, then no sync for far longer than that frame.
    parser.feed(raw_frame(n_samples=MAX_SAMPLES)[:HEADER_SIZE])
    for _ in range(20):
        parser.feed(bytes(10_000))
        assert parser.pending <= parser.max_pending == frame_size(MAX_SAMPLES, 3)
    assert parser.pending == 0 and parser.crc_errors == 1
    parser.feed(bytes(1_000_000))
    assert parser.pending == 0
    assert_accounted(parser, 0)


# --- fuzzing: frames at random places in random bytes, fed in random pieces -------------


@st.composite
def garbage(draw, channels):
    """Bytes that are not a frame but may look like the start of one."""
    pieces = []
    for kind in draw(st.lists(st.sampled_from(["random", "cut", "sync"]), max_size=3)):
        if kind == "random":
            pieces.append(draw(st.binary(max_size=40)))
        elif kind == "sync":  # a sync word with a plausible, maybe long, header after it
            n = draw(st.integers(0, MAX_SAMPLES + 1))
            pieces.append(
                struct.pack("<HBBH", 0x5AA5, 1, channels, n) + draw(st.binary(max_size=14))
            )
        else:  # the beginning of a real frame, cut short
            c = draw(st.sampled_from([channels, channels % 4 + 1]))
            n = draw(st.integers(1, 300))
            x = np.arange(n * c, dtype=np.int16).reshape(n, c)
            frame = encode_frame(x, draw(st.integers(0, SEQ_MOD - 1)), 0)
            pieces.append(frame[: draw(st.integers(1, len(frame) - 1))])
    return b"".join(pieces)


@st.composite
def streams(draw):
    channels = draw(st.integers(1, 4))
    seq0 = draw(st.sampled_from([0, SEQ_MOD - 3, draw(st.integers(0, SEQ_MOD - 1))]))
    parts, blocks = [], []
    for i in range(draw(st.integers(0, 6))):
        parts.append(draw(garbage(channels)))
        # Any codes, and often one code throughout: silence, either rail of a clipped
        # channel, or the sync word itself (A5 5A in the payload must not start a frame).
        fill = st.sampled_from([0, -32768, 32767, 0x5AA5])
        x = draw(hnp.arrays(np.int16, (draw(st.integers(1, 24)), channels), fill=fill))
        parts.append(encode_frame(x, (seq0 + i) % SEQ_MOD, i))
        blocks.append(x)
    parts.append(draw(garbage(channels)))
    stream = b"".join(parts)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return channels, stream, chunks, blocks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_every_intact_frame_is_recovered_in_order_however_the_stream_is_cut(case):
    channels, stream, chunks, blocks = case
    parser = FrameParser(channels)
    got = feed_all(parser, chunks)
    expected = np.concatenate(blocks) if blocks else np.empty((0, channels), np.int16)
    np.testing.assert_array_equal(got.samples, expected)
    assert parser.frames == len(blocks)
    assert got.gaps == [] and parser.lost_frames == 0
    assert_accounted(parser, sum(frame_size(len(b), channels) for b in blocks))
    # The per-call counts add up to the cumulative counters.
    assert all(getattr(got, name) == getattr(parser, name) for name in COUNTS[:7])
    # Cutting the stream changes nothing, counters included.
    whole = FrameParser(channels)
    whole.feed(stream)
    assert counters(parser) == counters(whole)


# --- ASCII parser ---------------------------------------------------------------------


def test_ascii_lines_with_lf_or_crlf_integers_and_decimals():
    text = b"1,2,3\n-4, 5.5 ,6e2\r\n+7,-0.25,8\r\n"
    parser = AsciiParser(3)
    got = parser.feed(text)
    np.testing.assert_array_equal(got.samples, [[1, 2, 3], [-4, 5.5, 600], [7, -0.25, 8]])
    assert got.samples.dtype == np.float64
    assert (got.lines, got.bad_lines, got.gaps) == (3, 0, [])
    assert (parser.lines, parser.bad_lines) == (3, 0)


@pytest.mark.parametrize(
    "bad",
    [
        b"1,2",  # too few fields
        b"1,2,3,4",  # too many
        b"1,2,3,",  # trailing separator
        b"1,,3",  # empty field
        b"1, ,3",  # blank field, which np.fromstring would read as -1
        b"1,2,\r",  # blank last field before CRLF
        b"1,x,3",  # not a number
        b"1,2 3,4",  # two numbers in one field
        b"ia,ib,ic",  # a header
        b"1;2;3",  # another separator
        b"1,2,\xff",  # not ASCII
        b"\x001,2,3",
    ],
)
def test_ascii_bad_line_is_counted_and_the_rest_kept(bad):
    parser = AsciiParser(3)
    got = parser.feed(b"1,2,3\n" + bad + b"\n4,5,6\r\n")
    np.testing.assert_array_equal(got.samples, [[1, 2, 3], [4, 5, 6]])
    assert (got.lines, got.bad_lines) == (3, 1)


def test_ascii_nan_and_inf_are_numbers_and_keep_their_place():
    text = b"1,2\nnan,3\n1e,2\n4,-inf\n-,3\nInfinity,x\n5,6\n"
    got = AsciiParser(2).feed(text)
    np.testing.assert_array_equal(got.samples, [[1, 2], [np.nan, 3], [4, -np.inf], [5, 6]])
    assert (got.lines, got.bad_lines) == (7, 3)


def test_ascii_blank_lines_are_ignored():
    got = AsciiParser(2).feed(b"\n\r\n1,2\n  \n3,4\n\n")
    np.testing.assert_array_equal(got.samples, [[1, 2], [3, 4]])
    assert (got.lines, got.bad_lines) == (2, 0)


@pytest.mark.parametrize("token", [b"garbage", b"1e", b"-", b"1.2.3", b"nan"])
def test_ascii_bad_lines_in_a_large_block_keep_every_other_line(token):
    # "garbage" is found by its bytes, "1e", "-" and "1.2.3" only by failing to parse,
    # "nan" parses (one field too many makes these lines bad).
    x = RNG.integers(-2048, 2048, size=(5000, 6))
    lines = [",".join(map(str, r)).encode() for r in x]
    bad_at = [0, 1234, 1235, 2500, 4999]
    for i in bad_at:
        lines[i] = token + b"," + lines[i][lines[i].index(b",") + 1 :]
    if token == b"nan":
        lines[2500] = b"nan," + lines[2500]
        bad_at = [2500]
    got = AsciiParser(6).feed(b"\n".join(lines) + b"\n")
    expected = x.astype(float)
    if token == b"nan":
        expected[[0, 1234, 1235, 4999], 0] = np.nan
    np.testing.assert_array_equal(got.samples, np.delete(expected, bad_at, axis=0))
    assert (got.lines, got.bad_lines) == (5000, len(bad_at))


def test_ascii_partial_lines_across_feeds_at_every_offset():
    text = b"10,20\r\n-3.5,4\nbad\n5,6\r\n7,8"
    whole = AsciiParser(2)
    ref = whole.feed(text)
    np.testing.assert_array_equal(ref.samples, [[10, 20], [-3.5, 4], [5, 6]])
    for cut in range(len(text) + 1):
        parser = AsciiParser(2)
        got = feed_all(parser, [text[:cut], text[cut:]])
        np.testing.assert_array_equal(got.samples, ref.samples)
        assert (parser.lines, parser.bad_lines) == (4, 1)
    # The last line is held until its end arrives.
    np.testing.assert_array_equal(whole.feed(b"\n").samples, [[7, 8]])


def test_ascii_line_that_never_ends_is_dropped_not_buffered():
    parser = AsciiParser(2)
    parser.feed(b"1,2\n")
    for _ in range(10):
        parser.feed(b"9" * 1000)
        assert len(parser._partial) <= MAX_LINE_BYTES
    got = parser.feed(b"99,99\n3,4\n")
    np.testing.assert_array_equal(got.samples, [[3, 4]])
    assert (parser.lines, parser.bad_lines) == (3, 1)


def test_ascii_single_channel_and_reset():
    parser = AsciiParser(1)
    got = parser.feed(b"1\n2\n3,4\n5")
    np.testing.assert_array_equal(got.samples, [[1], [2]])
    assert got.bad_lines == 1
    parser.reset()
    np.testing.assert_array_equal(parser.feed(b"6\n").samples, [[6]])


@st.composite
def ascii_tables(draw):
    channels = draw(st.integers(1, 6))
    n = draw(st.integers(0, 80))
    integers = draw(st.booleans())
    elements = (
        st.integers(-(2**31), 2**31 - 1)
        if integers
        else st.floats(-1e300, 1e300) | st.sampled_from([np.nan, np.inf, -np.inf])
    )
    x = draw(hnp.arrays(np.int64 if integers else np.float64, (n, channels), elements=elements))
    lines, good, bad = [], [], 0
    for row in x:
        if draw(st.integers(0, 9)) == 0:  # a bad line before this one
            lines.append(draw(st.sampled_from([b"x", b"1,", b",", b"1 2", b"nan nan", b"--1"])))
            bad += 1
        space = draw(st.sampled_from(["", " "]))
        lines.append((space + ",".join(repr(v) for v in row.tolist())).encode())
        good.append(row)
    ends = [draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    text = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    expected = np.array(good, dtype=np.float64).reshape(-1, channels)
    return channels, chunks, expected, bad


@settings(max_examples=200, deadline=None)
@given(ascii_tables())
def test_ascii_random_tables_come_back_exactly_however_they_are_cut(case):
    channels, chunks, expected, bad = case
    parser = AsciiParser(channels)
    got = feed_all(parser, chunks)
    np.testing.assert_array_equal(got.samples, expected)
    assert parser.bad_lines == bad and parser.lines == expected.shape[0] + bad
    assert got.gaps == []


# --- scaling --------------------------------------------------------------------------


def test_scaling_is_counts_minus_offset_times_gain_times_ratio_per_channel():
    offset = np.array([2048.0, 2050.0, 0.0])
    gain = np.array([3.3 / 4096 / 10, 3.3 / 4096 / 10, 0.5])
    ratio = np.array([2000.0, 1000.0, 1.0])
    s = Scaling(offset, gain, ratio)
    counts = np.array([[2048, 2050, 0], [2049, 2051, 2], [-32768, 32767, -1]], np.int16)
    got = s.apply(counts)
    assert got.dtype == np.float64 and got.shape == (3, 3)
    np.testing.assert_allclose(got[0], 0.0)
    np.testing.assert_allclose(got[1], gain * ratio * [1, 1, 2])  # one count = gain·ratio
    np.testing.assert_allclose(got[2], (counts[2].astype(float) - offset) * gain * ratio)
    assert counts[2, 0] == -32768  # the input is not modified, nor overflowed


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    channels=st.integers(1, 8),
    dtype=st.sampled_from([np.int16, np.uint16, np.int32, np.float32, np.float64]),
)
def test_scaling_property_any_counts_and_calibration(data, channels, dtype):
    finite = st.floats(-1e4, 1e4, allow_nan=False)
    per_channel = st.lists(finite, min_size=channels, max_size=channels)
    offset, gain, ratio = (data.draw(st.one_of(finite, per_channel)) for _ in range(3))
    if not any(isinstance(v, list) for v in (offset, gain, ratio)):
        channels = 1  # scalars alone make a scaling of one channel
    elements = None if np.dtype(dtype).kind in "iu" else st.floats(-4e4, 4e4, width=32)
    shape = (data.draw(st.integers(0, 50)), channels)
    counts = data.draw(hnp.arrays(dtype, shape, elements=elements))
    before = counts.copy()
    got = Scaling(offset, gain, ratio).apply(counts)
    assert got.dtype == np.float64 and got.shape == counts.shape
    # Each count exactly (converted to float64 first, so no integer wraps), one rounding per
    # step: (counts - offset), then times gain·ratio.
    scale = np.broadcast_to(np.float64(gain) * np.float64(ratio), (channels,))
    want = (counts.astype(np.float64) - np.broadcast_to(np.float64(offset), (channels,))) * scale
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(counts, before)  # the input is left as it was


def test_scaling_broadcasts_scalars_and_checks_shapes():
    s = Scaling(2048, [1.0, 2.0, 3.0])
    assert s.channels == 3
    np.testing.assert_array_equal(s.apply(np.full((2, 3), 2049)), [[1, 2, 3], [1, 2, 3]])
    with pytest.raises(ValueError, match=r"expected \(n, 3\)"):
        s.apply(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="expected scalars or arrays of one shape"):
        Scaling([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="gain"):
        Scaling(0, [1.0, np.nan])
