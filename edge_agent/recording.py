"""Streaming readers for recordings: CSV with a header row, or ``.npy`` (n_samples, channels).

A recording is read in chunks and never whole, so files larger than memory work. Columns
are mapped to the roles ``ia, ib, ic[, va, vb, vc]``; the sample rate comes from a ``t_s``
column when there is one, else from the caller. Samples lost in transit are gaps: a jump
in ``t_s``, or in a ``.npy`` (which has no times) a run of rows that are NaN in every
column, one per sample lost, as :class:`NpyWriter` writes them. Problems raise
:class:`~edge_agent.errors.InputDataError` naming the file, line and column; rows read
before a bad line are still delivered first, so nothing already accepted is lost.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from edge_agent.config import CURRENT_CHANNELS, VOLTAGE_CHANNELS
from edge_agent.errors import InputDataError, InputMissingError, StorageError

TIME_COLUMN = "t_s"
DEFAULT_CHUNK = 32768
# A loss longer than this is written into a .npy recording as this long (NpyWriter): a
# minute's loss of 6 channels at 15 kS/s would take 43 MB of NaN.
MAX_GAP_S = 10.0


@dataclass
class Chunk:
    """Consecutive samples: ``samples`` shape (n, len(roles)), float64, in role order.

    ``gaps`` holds indices into this chunk of samples preceded by a loss (a jump in ``t_s``
    larger than 1.5 sample periods, or lost-sample rows of a ``.npy``); index 0 means the
    gap precedes the chunk. ``lost`` says, for each gap, how many samples it lost.
    """

    samples: np.ndarray
    start: int  # index of the first sample in the recording (its row, in a .npy)
    gaps: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


def _roles_for(n_columns: int) -> list[str]:
    return list(CURRENT_CHANNELS + VOLTAGE_CHANNELS)[:n_columns]


class Recording:
    """Common interface: ``path``, ``fs``, ``roles``, ``chunks()``, ``bytes_read``, ``size``."""

    fs: float
    roles: list[str]

    _mode: ClassVar[dict]  # keyword arguments of Path.open for this format

    def __init__(
        self,
        path: Path,
        *,
        fs: float | None,
        columns: Sequence[str] | None,
        chunk_samples: int,
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.bytes_read = 0
        self._chunk = int(chunk_samples)
        if columns is not None and len(columns) not in (3, 6):
            raise InputDataError(
                f"{path}: --columns names {len(columns)} columns; expected 3 (ia,ib,ic) "
                "or 6 (ia,ib,ic,va,vb,vc)"
            )
        try:
            self._fh = path.open(**self._mode)
        except OSError as exc:
            raise InputMissingError(f"{path}: cannot open: {exc.strerror}") from None
        try:
            self._open(fs, columns)
        except BaseException:
            self._fh.close()
            raise

    def _open(self, fs: float | None, columns: Sequence[str] | None) -> None:
        """Read the header, check the columns, set ``fs`` and ``roles``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file. Safe to call twice."""
        self._fh.close()

    def chunks(self) -> Iterator[Chunk]:  # pragma: no cover - interface
        raise NotImplementedError

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recording(
    path: str | Path,
    *,
    fs: float | None = None,
    columns: Sequence[str] | None = None,
    chunk_samples: int = DEFAULT_CHUNK,
) -> Recording:
    """Open a ``.csv`` or ``.npy`` recording for streaming.

    ``fs`` (Hz) is required for ``.npy`` and for CSV without ``t_s``; with ``t_s`` it must
    agree with the time column. ``columns`` names the file's columns (CSV header names, or
    0-based indices for ``.npy``) that hold ia, ib, ic[, va, vb, vc], in that order.
    """
    p = Path(path)
    if not p.exists():
        raise InputMissingError(f"{p}: no such file")
    if not p.is_file():
        raise InputMissingError(f"{p}: not a regular file")
    if p.suffix.lower() == ".npy":
        return NpyRecording(p, fs=fs, columns=columns, chunk_samples=chunk_samples)
    return CsvRecording(p, fs=fs, columns=columns, chunk_samples=chunk_samples)


class CsvRecording(Recording):
    _mode: ClassVar[dict] = {"mode": "r", "encoding": "utf-8", "newline": ""}

    def _open(self, fs: float | None, columns: Sequence[str] | None) -> None:
        path = self.path
        try:
            header = self._fh.readline()
        except UnicodeDecodeError:
            raise InputDataError(f"{path}: not a text CSV file (not UTF-8)") from None
        self.bytes_read += len(header)
        if not header.strip():
            raise InputDataError(
                f"{path}: file is empty; expected a header row such as t_s,ia,ib,ic"
            )
        names = [h.strip() for h in header.strip().lstrip("\ufeff").split(",")]
        self._n_fields = len(names)
        wanted = list(columns) if columns is not None else None
        if wanted is None:
            missing = [c for c in CURRENT_CHANNELS if c not in names]
            if missing:
                raise InputDataError(
                    f"{path}: line 1: header has columns {','.join(names)}; expected "
                    f"t_s (optional), ia, ib, ic (and optionally va, vb, vc); missing "
                    f"{', '.join(missing)}. Map other names with --columns"
                )
            wanted = list(CURRENT_CHANNELS)
            if all(v in names for v in VOLTAGE_CHANNELS):
                wanted += list(VOLTAGE_CHANNELS)
        absent = [c for c in wanted if c not in names]
        if absent:
            raise InputDataError(
                f"{path}: line 1: no column named {', '.join(absent)} in the header "
                f"({','.join(names)})"
            )
        self.roles = _roles_for(len(wanted))
        self._cols = [names.index(c) for c in wanted]
        self._tcol = names.index(TIME_COLUMN) if TIME_COLUMN in names else None
        self._line = 1  # lines consumed so far
        self._pending_error: InputDataError | None = None
        # The first block also sets the sample rate from t_s: make it long enough for that.
        self._first = self._read_block(max(self._chunk, 4096))
        if self._first is None or self._first.shape[0] == 0:
            raise InputDataError(f"{path}: header but no samples; expected rows after line 1")
        self.fs = self._resolve_fs(fs)
        self._t_prev: float | None = None

    def _resolve_fs(self, fs: float | None) -> float:
        if self._tcol is None:
            if fs is None:
                raise InputDataError(
                    f"{self.path}: no {TIME_COLUMN} column to take the sample rate from; "
                    "give it with --fs"
                )
            return float(fs)
        t = self._first[:, self._tcol]
        if t.shape[0] < 2:
            if self._pending_error is not None:
                raise self._pending_error
            if fs is None:
                raise InputDataError(f"{self.path}: one sample is too few to know the sample rate")
            return float(fs)
        # The span of the whole first block, not single steps: t_s is printed with few
        # decimals, and one rounded step of 1/15000 s is off by a part in 10⁴. Less the
        # steps over a gap (more than 1.5 times the median step), as chunks() finds them:
        # 10 ms lost in 2 s would make the rate 0.5 % low.
        span = float(t[-1] - t[0])
        if not span > 0:
            raise InputDataError(
                f"{self.path}: column {TIME_COLUMN} does not increase; expected seconds"
            )
        steps = np.diff(t)
        steady = steps[steps <= 1.5 * np.median(steps)]
        fs_t = (
            steady.shape[0] / float(steady.sum()) if steady.sum() > 0 else (t.shape[0] - 1) / span
        )
        if abs(fs_t - round(fs_t)) < 1e-4 * fs_t:
            fs_t = float(round(fs_t))
        if fs is not None and abs(fs - fs_t) > 1e-3 * fs_t:
            raise InputDataError(
                f"{self.path}: column {TIME_COLUMN} gives a sample rate of {fs_t:g} Hz but "
                f"{fs:g} Hz was asked for; drop --fs or fix the file"
            )
        return fs_t

    def _read_block(self, size: int | None = None) -> np.ndarray | None:
        """Next block of rows as a float array (rows, fields); None at the end of the file.

        ``self._block_line`` is set to the file line of the block's first row.

        On a bad line, returns the good rows before it first and raises on the next call.
        """
        pending = self._pending_error
        if pending is not None:
            self._pending_error = None
            raise pending
        lines = list(itertools.islice(self._fh, size or self._chunk))
        if not lines:
            return None
        start_line = self._line + 1
        self._block_line = start_line
        self._line += len(lines)
        self.bytes_read += sum(len(s) for s in lines)
        try:
            block = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
            if block.shape[0] and block.shape[1] != self._n_fields:
                raise ValueError("field count")
        except ValueError:
            bad, error = self._locate_error(lines, start_line)
            self._pending_error = error
            good = lines[:bad]
            block = np.loadtxt(good, delimiter=",", dtype=np.float64, ndmin=2) if good else None
            if block is None or block.shape[0] == 0:
                self._pending_error = None
                raise error from None
        return block

    def _locate_error(self, lines: list[str], start_line: int) -> tuple[int, InputDataError]:
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            cells = line.rstrip("\r\n").split(",")
            where = f"{self.path}: line {start_line + i}"
            if len(cells) != self._n_fields:
                return i, InputDataError(
                    f"{where}: {len(cells)} fields, expected {self._n_fields} as in the header"
                    + (" (the file may be truncated)" if i == len(lines) - 1 else "")
                )
            for j, cell in enumerate(cells):
                try:
                    float(cell)
                except ValueError:
                    return i, InputDataError(
                        f"{where}, column {j + 1}: {cell.strip()!r} is not a number"
                    )
        return len(lines), InputDataError(f"{self.path}: unreadable rows near line {start_line}")

    def chunks(self) -> Iterator[Chunk]:
        index = 0
        period = 1.0 / self.fs
        block, self._first = self._first, None
        block_line = 2
        while block is not None:
            gaps: list[int] = []
            lost: list[int] = []
            if self._tcol is not None and block.shape[0]:
                t = block[:, self._tcol]
                if self._t_prev is not None:
                    t = np.concatenate([[self._t_prev], t])
                d = np.diff(t)
                # d[k] is the step into row k of this block when t_prev leads, else row k + 1.
                offset = 1 if self._t_prev is not None else 0
                if np.any(~(d > 0)):
                    k = int(np.flatnonzero(~(d > 0))[0])
                    raise InputDataError(
                        f"{self.path}: line {block_line + k + 1 - offset}: "
                        f"{TIME_COLUMN} does not increase"
                    )
                jumps = np.flatnonzero(d > 1.5 * period)
                gaps = [int(g) + 1 - offset for g in jumps]
                lost = [max(1, round(float(d[g]) / period) - 1) for g in jumps]
                self._t_prev = float(block[-1, self._tcol])
            yield Chunk(np.ascontiguousarray(block[:, self._cols]), index, gaps, lost)
            index += block.shape[0]
            block = self._read_block()
            block_line = self._block_line


class NpyRecording(Recording):
    """A ``.npy`` array read block by block with plain file reads.

    Not through a memory map: pages of a mapped file count as the process's resident
    memory, so a long recording would creep towards a service's memory limit.
    """

    _mode: ClassVar[dict] = {"mode": "rb"}

    def _open(self, fs: float | None, columns: Sequence[str] | None) -> None:
        path = self.path
        try:
            version = np.lib.format.read_magic(self._fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._fh)
            else:
                raise ValueError(f".npy format version {version} is not supported")
        except (ValueError, OSError, EOFError) as exc:
            raise InputDataError(f"{path}: not a readable .npy array: {exc}") from None
        if len(shape) != 2 or shape[1] < 3:
            raise InputDataError(
                f"{path}: array of shape {shape}; expected (n_samples, channels) with "
                "at least 3 channels (ia, ib, ic)"
            )
        if dtype.hasobject or dtype.kind not in "iuf":
            raise InputDataError(f"{path}: dtype {dtype}; expected real numbers")
        if fortran:
            raise InputDataError(
                f"{path}: stored in Fortran order, which cannot be streamed by rows; "
                "save it with np.save(path, np.ascontiguousarray(a))"
            )
        if shape[0] == 0:
            raise InputDataError(f"{path}: no samples")
        if fs is None:
            raise InputDataError(f"{path}: a .npy recording has no time column; give --fs")
        if columns is None:
            cols = list(range(6 if shape[1] >= 6 else 3))
        else:
            try:
                cols = [int(c) for c in columns]
            except ValueError:
                raise InputDataError(
                    f"{path}: --columns for a .npy file are 0-based column indices, got "
                    f"{','.join(columns)}"
                ) from None
            if any(not 0 <= c < shape[1] for c in cols):
                raise InputDataError(
                    f"{path}: --columns {','.join(map(str, cols))} out of range for "
                    f"{shape[1]} columns"
                )
        self._shape = shape
        self._dtype = dtype
        self._cols = cols
        self.bytes_read = self._fh.tell()
        self.roles = _roles_for(len(cols))
        self.fs = float(fs)

    def chunks(self) -> Iterator[Chunk]:
        n, width = self._shape
        row_bytes = width * self._dtype.itemsize
        carried = 0  # lost-sample rows at the end of the blocks before, not yet a gap
        for start in range(0, n, self._chunk):
            rows = min(self._chunk, n - start)
            raw = self._fh.read(rows * row_bytes)
            whole = len(raw) // row_bytes
            self.bytes_read += len(raw)
            if whole:
                block = np.frombuffer(raw[: whole * row_bytes], dtype=self._dtype)
                block = block.reshape(whole, width)
                gaps: list[int] = []
                lost: list[int] = []
                if self._dtype.kind == "f":
                    block, gaps, lost, carried = _lost_rows(block, carried)
                if block.shape[0]:
                    samples = np.ascontiguousarray(block[:, self._cols], dtype=np.float64)
                    yield Chunk(samples, start, gaps, lost)
            if whole < rows:
                raise InputDataError(
                    f"{self.path}: ends after {start + whole} of {n} rows "
                    "(the file may be truncated)"
                )


def with_lost_rows(
    x: np.ndarray, gaps: Sequence[int], lost: Sequence[int] = (), max_rows: int | None = None
) -> np.ndarray:
    """``x`` (n, channels) with rows of NaN before each of ``gaps``, one per sample lost
    there (``lost``; one where 0 or not given: not known; at most ``max_rows``): how a
    ``.npy`` recording keeps a loss. ``x`` itself when there is no gap."""
    if not len(gaps):
        return x
    counts = itertools.chain(lost, itertools.repeat(0))
    parts = []
    done = 0
    for g, n_lost in sorted(zip(gaps, counts, strict=False)):
        g = min(max(int(g), done), x.shape[0])
        rows = max(1, int(n_lost)) if max_rows is None else min(max(1, int(n_lost)), max_rows)
        parts += [x[done:g], np.full((rows, x.shape[1]), np.nan, dtype=x.dtype)]
        done = g
    parts.append(x[done:])
    return np.concatenate(parts)


def gaps_in(chunk: Chunk, start: int, stop: int) -> tuple[list[int], list[int]]:
    """The gaps of ``chunk`` among its samples ``start:stop``, as indices from ``start``,
    and the samples each lost."""
    pairs = [
        (g - start, n)
        for g, n in zip(chunk.gaps, chunk.lost or [0] * len(chunk.gaps), strict=True)
        if start <= g < stop
    ]
    return [g for g, _ in pairs], [n for _, n in pairs]


def _lost_rows(block: np.ndarray, carried: int) -> tuple[np.ndarray, list[int], list[int], int]:
    """``block`` (rows of a .npy) without its lost-sample rows (NaN in every column), the
    index in what is left of the sample after each run of them, how many rows each run
    held (with ``carried`` rows that ended the blocks before), and the rows at the end of
    ``block`` that the next block's first sample follows."""
    first = np.isnan(block[:, 0])  # the candidates, cheaply (all columns: 20 times longer)
    if not carried and not first.any():
        return block, [], [], 0
    marks = first
    marks[first] = np.isnan(block[first]).all(axis=1)
    edges = np.diff(np.concatenate(([0], marks.view(np.int8), [0])))
    begins, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    marked_before = np.concatenate(([0], np.cumsum(marks)))
    gaps: list[int] = []
    lost: list[int] = []
    if carried and not marks[0]:
        gaps.append(0)
        lost.append(carried)
        carried = 0
    for a, b in zip(begins.tolist(), ends.tolist(), strict=True):
        run = b - a + (carried if a == 0 else 0)
        if a == 0:
            carried = 0
        if b == block.shape[0]:
            carried = run  # its sample comes in the next block
            continue
        gaps.append(a - int(marked_before[a]))
        lost.append(run)
    return block[~marks], gaps, lost, carried


def parse_columns(text: str | None) -> list[str] | None:
    """``--columns ia,ib,ic`` as a list, or None."""
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",") if c.strip()]
    return cols


def finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


class NpyWriter:
    """Streams samples into a ``.npy`` file of shape (n, channels), float64.

    The header is written first with room for any row count, and rewritten with the final
    count by :meth:`close`; until then the file holds the rows written so far behind a
    header that says 0 rows. ``run --record`` and ``check-wiring --record`` use it to keep
    what the ADC sent, for ``replay`` or ``train`` later.

    Samples lost in transit are kept as rows of NaN, one per sample lost, as the source
    counted them (one where it could not count; at most ``MAX_GAP_S`` of them at ``fs``),
    so that a replay sees the gap where the live run saw it, and its times stay true.
    """

    _SHAPE_WIDTH = 20  # digits reserved for the row count

    def __init__(self, path: str | Path, channels: int, fs: float | None = None) -> None:
        self.path = Path(path)
        self.channels = int(channels)
        self.fs = fs
        self.max_gap_rows = round(MAX_GAP_S * fs) if fs else None
        self.rows = 0
        # Why writing stopped (the disk full or failing), or None: the file then holds the
        # whole rows that fit, and close() still makes it a valid .npy of them.
        self.failed: str | None = None
        try:
            # Unbuffered: a write the disk refuses fails here, not at a later flush, and
            # what it wrote in part can be cut off.
            self._fh = self.path.open("wb", buffering=0)
        except OSError as exc:
            raise InputMissingError(f"{self.path}: cannot write: {exc.strerror}") from None
        try:
            self._put(self._header())
        except OSError as exc:
            self._fh.close()
            self.path.unlink(missing_ok=True)
            raise StorageError(f"{self.path}: cannot write: {exc.strerror}") from None
        self._start = self._fh.tell()

    def _header(self) -> bytes:
        d = (
            f"{{'descr': '<f8', 'fortran_order': False, "
            f"'shape': ({self.rows:{self._SHAPE_WIDTH}d}, {self.channels}), }}"
        )
        # Magic, version 1.0, header length; the whole header padded to 64 bytes with '\n'.
        pre = 10
        total = -(-(pre + len(d) + 1) // 64) * 64
        d = d + " " * (total - pre - len(d) - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(d).to_bytes(2, "little") + d.encode("latin1")

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._fh.write(view) :]

    def write(
        self, samples: np.ndarray, gaps: Sequence[int] = (), lost: Sequence[int] = ()
    ) -> None:
        """Append ``samples`` (n, channels); ``gaps`` are indices of samples that follow a
        loss of ``lost`` samples each (0 or none: not known), as a ring's chunk has them.

        Raises StorageError when the disk refuses the rows (full or failing): the file
        keeps the whole rows that fit, and takes no more (``failed`` says why)."""
        x = np.ascontiguousarray(samples, dtype="<f8")
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"samples have shape {x.shape}; expected (n, {self.channels})")
        if self.failed is not None:
            raise StorageError(self.failed)
        x = with_lost_rows(x, gaps, lost, self.max_gap_rows)
        try:
            self._put(x.tobytes())
        except OSError as exc:
            # A full disk takes what fits (unbuffered: the position says how much): keep
            # its whole rows, cut off a part of one.
            self.rows = (self._fh.tell() - self._start) // (8 * self.channels)
            whole = self._start + self.rows * self.channels * 8
            with contextlib.suppress(OSError):
                self._fh.truncate(whole)
                self._fh.seek(whole)
            kept = (
                f"{self.rows / self.fs:.1f} s ({self.rows} rows)"
                if self.fs
                else f"{self.rows} rows"
            )
            self.failed = f"{self.path}: recording stopped after {kept}: {exc.strerror}"
            raise StorageError(self.failed) from None
        self.rows += x.shape[0]

    def close(self) -> None:
        """Write the final row count into the header and close; a file that got no row
        (the source failed to open) is removed, so that no empty recording is left for
        ``train``. Safe to call twice. Raises StorageError if the header cannot be
        written (the file then says it holds no rows)."""
        if self._fh.closed:
            return
        try:
            self._fh.seek(0)
            self._put(self._header())
        except OSError as exc:
            raise StorageError(
                f"{self.path}: cannot write the row count into its header ({exc.strerror}); "
                f"it holds {self.rows} rows of {self.channels} float64 after "
                f"{self._start} bytes"
            ) from None
        finally:
            self._fh.close()
            if self.rows == 0:
                self.path.unlink(missing_ok=True)
