"""The serial ADC frame codec: protocol v1 frames, the ASCII line mode, and count scaling.

``docs/serial-protocol.md`` is the specification a firmware author works from; this module
is its reference implementation. A binary frame is an 18-byte header (sync ``A5 5A``,
version, channel count, samples per channel, sequence number, timestamp), int16 samples
interleaved by channel, and a CRC-16/CCITT-FALSE over everything before it.

The parsers are fed whatever the serial port returns, in pieces of any size, and return
the samples that those bytes complete. A serial line drops and corrupts bytes, so parsing
never trusts a field it cannot check: the frame length comes from a header that may be
corrupt, so a frame that fails is abandoned one byte after its sync word rather than
skipped by its length, and a frame is kept only when its CRC holds. Losses are found from
the sequence numbers and reported as gaps, never stitched over (ARCHITECTURE.md).

The work is vectorised per block: numpy finds every sync word of a block at once and
decodes payloads with ``np.frombuffer``; Python runs once per frame (tens to hundreds of
samples), never per sample or per byte.
"""

from __future__ import annotations

import binascii
import bisect
import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLES",
    "AsciiParser",
    "FrameParser",
    "Parsed",
    "Scaling",
    "crc16",
    "encode_frame",
    "frame_size",
]

SYNC = 0x5AA5  # u16 little-endian: the bytes A5 5A on the wire
VERSION = 1
MAX_CHANNELS = 16
MAX_SAMPLES = 4096  # per channel per frame
HEADER = struct.Struct("<HBBHIQ")  # sync, version, n_channels, n_samples, seq, t_us
HEADER_SIZE = HEADER.size  # 18
CRC_SIZE = 2
SEQ_MODULUS = 1 << 32
# Longest ASCII line kept while waiting for its end: 16 channels of the longest decimals
# fit many times over; anything longer is not a sample line, and keeping it would let a
# board that never sends '\n' grow the buffer without bound.
MAX_LINE_BYTES = 4096

_SYNC0, _SYNC1 = 0xA5, 0x5A
_NL, _COMMA = ord("\n"), ord(",")
# Byte classes of the ASCII mode. A line with an _OTHER byte is bad; one with a _LETTER
# may still be numbers ("nan", "inf", "infinity") and is read on its own.
_OTHER, _LETTER, _NUMBER, _BLANK, _SEP_COMMA, _SEP_NL = range(6)
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
_CLASS[np.frombuffer(b"nNaAiIfFtTyY", dtype=np.uint8)] = _LETTER
_CLASS[np.frombuffer(b"0123456789+-.eE", dtype=np.uint8)] = _NUMBER
_CLASS[np.frombuffer(b" \t\r", dtype=np.uint8)] = _BLANK  # skipped around a value
_CLASS[_COMMA] = _SEP_COMMA
_CLASS[_NL] = _SEP_NL
# A run of clean-looking lines that np.fromstring still refuses ("1e", "-") is halved down
# to this many lines, then read line by line.
_LEAF_LINES = 32


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).

    ``crc16(b"123456789") == 0x29B1``, the catalogue's check value.
    """
    return binascii.crc_hqx(data, crc)


def frame_size(n_samples: int, n_channels: int) -> int:
    """Bytes on the wire for one frame: header + payload + CRC."""
    return HEADER_SIZE + 2 * n_samples * n_channels + CRC_SIZE


def encode_frame(samples: np.ndarray, seq: int, t_us: int) -> bytes:
    """One protocol v1 frame holding ``samples``, shape (n_samples, n_channels), ADC counts.

    ``seq`` is the frame counter, 0..2³²-1 (the caller wraps it), ``t_us`` the ADC
    timestamp of the first sample in microseconds, 0..2⁶⁴-1. Used by the tests and the
    emulator, and as an executable reference for firmware authors.
    """
    x = np.asarray(samples)
    if x.ndim != 2:
        raise ValueError(f"samples has shape {x.shape}; expected (n_samples, n_channels)")
    n, c = x.shape
    if not 1 <= n <= MAX_SAMPLES:
        raise ValueError(f"samples has {n} rows; expected 1..{MAX_SAMPLES} samples per frame")
    if not 1 <= c <= MAX_CHANNELS:
        raise ValueError(f"samples has {c} columns; expected 1..{MAX_CHANNELS} channels")
    if x.dtype.kind not in "iu":
        raise TypeError(f"samples has dtype {x.dtype}; expected integers (ADC counts)")
    if x.dtype != np.int16 and x.size and (x.min() < -32768 or x.max() > 32767):
        raise ValueError(f"samples range {x.min()}..{x.max()} does not fit int16")
    if not 0 <= seq < SEQ_MODULUS:
        raise ValueError(f"{seq=} out of range; expected 0..2**32-1")
    if not 0 <= t_us < 1 << 64:
        raise ValueError(f"{t_us=} out of range; expected 0..2**64-1")
    body = HEADER.pack(SYNC, VERSION, c, n, seq, t_us) + x.astype("<i2").tobytes()
    return body + struct.pack("<H", crc16(body))


@dataclass
class Parsed:
    """What one ``feed`` call completed.

    ``samples`` has shape (n, channels): int16 ADC counts from :class:`FrameParser`,
    float64 from :class:`AsciiParser` (whose boards may send decimals). Rows are in stream
    order. ``gaps`` lists the rows that follow a loss (a missing or corrupt frame), so a
    window spanning one can be flagged instead of stitched; a gap at row 0 means the loss
    came before this call's first sample. The counts are this call's share of the parser's
    cumulative counters of the same names.
    """

    samples: np.ndarray
    gaps: list[int] = field(default_factory=list)
    # Samples lost before each of ``gaps``, from the frame sequence; 0 where unknown (a
    # board restart, ASCII lines).
    gap_lost: list[int] = field(default_factory=list)
    frames: int = 0
    crc_errors: int = 0
    bad_headers: int = 0
    bytes_skipped: int = 0
    lost_frames: int = 0
    lost_samples: int = 0
    seq_restarts: int = 0
    lines: int = 0
    bad_lines: int = 0


def _check_channels(channels: int) -> int:
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)):
        raise TypeError(f"channels={channels!r}; expected an int")
    if not 1 <= channels <= MAX_CHANNELS:
        raise ValueError(f"{channels=}; expected 1..{MAX_CHANNELS}")
    return int(channels)


# Outcomes of looking at one sync candidate.
_SHORT, _BAD, _INCOMPLETE, _CRC, _OK = range(5)


class FrameParser:
    """Incremental parser of a protocol v1 byte stream with ``channels`` channels.

    Cumulative counters (attributes, never reset): ``frames`` (good frames), ``crc_errors``
    (frames that failed their CRC, or whose claimed length runs over a good frame),
    ``bad_headers`` (a sync word followed by an unacceptable version, channel count or
    sample count), ``bytes_skipped`` (bytes dropped outside good frames: garbage, and the
    bytes of rejected frames), ``lost_frames`` and ``lost_samples`` (from forward jumps of
    the sequence number; samples estimated with the previous frame's length) and
    ``seq_restarts`` (backward jumps: the board restarted, the loss is unknown). Every byte
    fed is accounted for: ``bytes_fed == bytes in good frames + bytes_skipped + pending``.
    ``last_seq`` and ``last_t_us`` describe the last good frame (None before the first).

    At most one frame of unconsumed bytes is kept between calls (:attr:`max_pending`).
    """

    def __init__(self, channels: int) -> None:
        self.channels = _check_channels(channels)
        self.max_pending = frame_size(MAX_SAMPLES, self.channels)
        self.frames = 0
        self.crc_errors = 0
        self.bad_headers = 0
        self.bytes_skipped = 0
        self.lost_frames = 0
        self.lost_samples = 0
        self.seq_restarts = 0
        self.bytes_fed = 0
        self.last_seq: int | None = None
        self.last_t_us: int | None = None
        self._pending = b""
        self._prev_n = 0

    @property
    def pending(self) -> int:
        """Bytes held for the next call (a frame cut at the end of the last one)."""
        return len(self._pending)

    def reset(self) -> None:
        """Forget the stream (after reopening the port): pending bytes, sequence numbers.

        The counters are kept, as counters are; the dropped pending bytes count as skipped.
        The next good frame is not a gap.
        """
        self.bytes_skipped += len(self._pending)
        self._pending = b""
        self.last_seq = None
        self.last_t_us = None
        self._prev_n = 0

    def resync(self) -> None:
        """Drop the pending bytes (counted as skipped) but keep the sequence number: after
        the port was reopened, the next frame's number tells how many frames the outage
        cost (counted in ``lost_frames`` and marked as a gap), or that the board restarted.
        """
        self.bytes_skipped += len(self._pending)
        self._pending = b""

    def _look(self, buf: bytes, c: int) -> tuple[int, int]:
        """Classify the sync candidate at ``c``: ``(outcome, frame length)``."""
        if c + HEADER_SIZE > len(buf):
            return _SHORT, 0
        _, version, n_ch, n, _, _ = HEADER.unpack_from(buf, c)
        if version != VERSION or n_ch != self.channels or not 1 <= n <= MAX_SAMPLES:
            return _BAD, 0
        size = HEADER_SIZE + 2 * n * n_ch + CRC_SIZE
        end = c + size
        if end > len(buf):
            return _INCOMPLETE, size
        with memoryview(buf) as view:
            crc = crc16(view[c : end - CRC_SIZE])
        if crc != buf[end - 2] | buf[end - 1] << 8:
            return _CRC, size
        return _OK, size

    def feed(self, data: bytes | bytearray | memoryview) -> Parsed:
        """Parse ``data`` after whatever the previous calls left; return what it completes."""
        data = bytes(data)
        self.bytes_fed += len(data)
        buf = self._pending + data if self._pending else data
        a = np.frombuffer(buf, dtype=np.uint8)
        cands = np.flatnonzero((a[:-1] == _SYNC0) & (a[1:] == _SYNC1)).tolist()
        out = Parsed(samples=np.empty((0, self.channels), dtype=np.int16))
        blocks: list[np.ndarray] = []
        rows = 0
        pos = 0  # first byte not yet consumed
        keep = len(buf)  # where the bytes held for the next call start
        confirmed = -1  # index of a later candidate known to be a good frame (_INCOMPLETE)
        k = 0
        while k < len(cands):
            c = cands[k]
            outcome, size = self._look(buf, c)
            if outcome == _SHORT:
                keep = c
                break
            if outcome == _BAD:
                out.bad_headers += 1
                k += 1
                continue
            if outcome == _INCOMPLETE:
                # Wait for the rest, unless a complete good frame starts inside the span
                # this header claims: then the header is corrupt (a real frame cannot hold
                # another one), and waiting would hold that good frame back, or forever
                # when the stream ends here.
                if confirmed <= k:
                    confirmed = next(
                        (
                            j
                            for j in range(k + 1, len(cands))
                            if self._look(buf, cands[j])[0] == _OK
                        ),
                        -1,
                    )
                if confirmed < 0:
                    keep = c
                    break
                out.crc_errors += 1
                k += 1
                continue
            if outcome == _CRC:
                out.crc_errors += 1
                k += 1
                continue
            # A good frame.
            out.bytes_skipped += c - pos
            _, _, _, n, seq, t_us = HEADER.unpack_from(buf, c)
            if self.last_seq is not None:
                jump = (seq - self.last_seq - 1) % SEQ_MODULUS
                if jump:
                    out.gaps.append(rows)
                    if jump < SEQ_MODULUS // 2:
                        out.lost_frames += jump
                        out.lost_samples += jump * self._prev_n
                        out.gap_lost.append(jump * self._prev_n)
                    else:
                        out.seq_restarts += 1
                        out.gap_lost.append(0)
            self.last_seq, self.last_t_us, self._prev_n = seq, t_us, n
            blocks.append(
                np.frombuffer(buf, dtype="<i2", count=n * self.channels, offset=c + HEADER_SIZE)
            )
            rows += n
            out.frames += 1
            pos = c + size
            k = bisect.bisect_left(cands, pos, k + 1)
        else:
            # No frame starts in what is left; a last A5 may be the first half of a sync.
            keep = len(buf) - 1 if len(buf) > pos and buf[-1] == _SYNC0 else len(buf)
        keep = max(keep, pos)
        out.bytes_skipped += keep - pos
        self._pending = buf[keep:]
        if blocks:
            out.samples = np.concatenate(blocks).reshape(rows, self.channels)
        self.frames += out.frames
        self.crc_errors += out.crc_errors
        self.bad_headers += out.bad_headers
        self.bytes_skipped += out.bytes_skipped
        self.lost_frames += out.lost_frames
        self.lost_samples += out.lost_samples
        self.seq_restarts += out.seq_restarts
        return out


def _numbers(text: bytes, channels: int) -> np.ndarray | None:
    """Complete lines, already checked by :func:`_parse_block`, as float64 rows; None if
    np.fromstring cannot read one of their fields."""
    n = text.count(b"\n")
    try:
        values = np.fromstring(text[:-1].replace(b"\n", b","), dtype=np.float64, sep=",")
    except ValueError:  # numpy 2 raises; numpy 1 warns and stops early (caught by the size)
        return None
    if values.size != n * channels:
        return None
    return values.reshape(n, channels)


def _numbers_by_halves(text: bytes, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the readable lines of ``text`` and a mask of which lines they are."""
    values = _numbers(text, channels)
    n = text.count(b"\n")
    if values is not None:
        return values, np.ones(n, dtype=bool)
    if n > _LEAF_LINES:
        newlines = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == _NL)
        cut = int(newlines[n // 2 - 1]) + 1
        v0, ok0 = _numbers_by_halves(text[:cut], channels)
        v1, ok1 = _numbers_by_halves(text[cut:], channels)
        return np.concatenate([v0, v1]), np.concatenate([ok0, ok1])
    rows = [_numbers(line + b"\n", channels) for line in text.split(b"\n")[:-1]]
    ok = np.array([r is not None for r in rows], dtype=bool)
    good = [r for r in rows if r is not None]
    return (np.concatenate(good) if good else np.empty((0, channels))), ok


def _parse_block(block: bytes, channels: int) -> tuple[np.ndarray, int, int]:
    """Complete lines (``block`` ends in '\\n') -> (rows of the good lines, lines, bad).

    One vectorised pass classifies every line: blank (ignored), bad (wrong number of
    commas, an empty field, which np.fromstring would silently read as -1, or a byte that
    is in no number), odd (letters, which may spell "nan" or "inf") or clean. The clean
    lines are read by one np.fromstring call, the few odd ones one by one. Clean lines
    that np.fromstring still refuses ("1e", "-") are found by halving.
    """
    a = np.frombuffer(block, dtype=np.uint8)
    cls = _CLASS[a]
    newlines = np.flatnonzero(cls == _SEP_NL)
    n = newlines.size
    commas = np.flatnonzero(cls == _SEP_COMMA)
    per_line = np.diff(np.searchsorted(commas, newlines), prepend=0)
    bad = per_line != channels - 1
    # Fields that are empty once blanks are removed: two separators in a row.
    solid_at = np.flatnonzero(cls != _BLANK)
    solid = cls[solid_at]
    is_sep = solid >= _SEP_COMMA
    nl_in_solid = np.flatnonzero(solid == _SEP_NL)
    blank = np.diff(nl_in_solid, prepend=-1) == 1  # nothing but blanks before the '\\n'
    empty = np.flatnonzero(is_sep[1:] & is_sep[:-1]) + 1
    if is_sep[0]:
        empty = np.concatenate([[0], empty])
    bad[np.searchsorted(newlines, solid_at[empty])] = True
    bad[np.searchsorted(newlines, np.flatnonzero(cls == _OTHER))] = True
    odd = np.zeros(n, dtype=bool)
    odd[np.searchsorted(newlines, np.flatnonzero(cls == _LETTER))] = True
    bad &= ~blank
    odd &= ~(bad | blank)
    clean = ~(bad | blank | odd)

    if clean.all():
        values = _numbers(block, channels)
        if values is not None:
            return values, n, 0
    starts = np.concatenate([[0], newlines[:-1] + 1])
    text = a[np.repeat(clean, newlines - starts + 1)].tobytes()
    ok = np.zeros(n, dtype=bool)
    out = np.empty((n, channels))
    if text:
        values, readable = _numbers_by_halves(text, channels)
        rows = np.flatnonzero(clean)[readable]
        ok[rows] = True
        out[rows] = values
    for i in np.flatnonzero(odd).tolist():
        row = _numbers(block[starts[i] : newlines[i] + 1], channels)
        if row is not None:
            ok[i] = True
            out[i] = row[0]
    lines = n - int(blank.sum())
    return out[ok], lines, lines - int(ok.sum())


class AsciiParser:
    """Incremental parser of the ASCII mode: one line per sample, values separated by ','.

    Values are integers (ADC counts) or decimals; lines end in '\\n' or '\\r\\n'. Blank
    lines are ignored. A line with the wrong number of fields or a field that is not a
    number is counted in ``bad_lines`` and dropped; the other lines of the block are kept.
    ``lines`` counts the non-blank lines seen. The line mode has no sequence numbers, so
    losses cannot be detected and ``gaps`` is always empty.

    A last line without its '\\n' is kept for the next call, up to :data:`MAX_LINE_BYTES`;
    a longer one is counted bad and dropped up to its end.
    """

    def __init__(self, channels: int) -> None:
        self.channels = _check_channels(channels)
        self.lines = 0
        self.bad_lines = 0
        self._partial = b""
        self._discarding = False  # inside an over-long line, dropping up to its end

    def reset(self) -> None:
        """Forget a partial line (after reopening the port); counters are kept."""
        self._partial = b""
        self._discarding = False

    def feed(self, data: bytes | bytearray | memoryview) -> Parsed:
        """Parse ``data`` after the previous call's partial line; return the complete lines."""
        data = bytes(data)
        out = Parsed(samples=np.empty((0, self.channels), dtype=np.float64))
        if self._discarding:
            end = data.find(b"\n")
            if end < 0:
                return out
            data = data[end + 1 :]
            self._discarding = False
        buf = self._partial + data if self._partial else data
        last = buf.rfind(b"\n")
        block, self._partial = buf[: last + 1], buf[last + 1 :]
        if len(self._partial) > MAX_LINE_BYTES:
            self._partial = b""
            self._discarding = True
            out.lines += 1
            out.bad_lines += 1
        if block:
            samples, lines, bad = _parse_block(block, self.channels)
            out.lines += lines
            out.bad_lines += bad
            if samples.shape[0]:
                out.samples = samples
        self.lines += out.lines
        self.bad_lines += out.bad_lines
        return out


class Scaling:
    """ADC counts to physical units per channel: ``(counts - offset) * gain * ratio``.

    ``offset`` is in counts (the ADC reading at zero input), ``gain`` in A or V per count
    at the ADC input (the shunt or divider and the ADC's volts per count), ``ratio`` the
    CT or VT ratio (primary/secondary) in front of it. Each is a scalar or an array of
    shape (channels,). Example: a 12-bit ADC over 3.3 V centred at 2048, a 10 Ω burden and
    a 2000:1 CT give ``Scaling(2048, 3.3 / 4096 / 10, 2000)``, 0.161 A per count.
    """

    def __init__(
        self,
        offset: np.ndarray | float,
        gain: np.ndarray | float,
        ratio: np.ndarray | float = 1.0,
    ) -> None:
        try:
            o, g, r = np.broadcast_arrays(
                *(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (offset, gain, ratio))
            )
        except ValueError:
            raise ValueError(
                f"offset, gain and ratio have shapes {np.shape(offset)}, {np.shape(gain)}, "
                f"{np.shape(ratio)}; expected scalars or arrays of one shape (channels,)"
            ) from None
        if o.ndim != 1:
            raise ValueError(f"offset, gain and ratio broadcast to {o.shape}; expected (channels,)")
        for name, v in (("offset", o), ("gain", g), ("ratio", r)):
            if not np.all(np.isfinite(v)):
                raise ValueError(f"{name}={v.tolist()} has a non-finite value")
        self.offset = o.copy()
        self.gain = g.copy()
        self.ratio = r.copy()
        self._scale = g * r
        self.channels = o.shape[0]

    def apply(self, counts: np.ndarray) -> np.ndarray:
        """``counts`` shape (n, channels), any real dtype -> float64 (n, channels)."""
        x = np.asarray(counts)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"counts has shape {x.shape}; expected (n, {self.channels})")
        out = x.astype(np.float64)  # a copy, so the in-place steps never touch the input
        out -= self.offset
        out *= self._scale
        return out
