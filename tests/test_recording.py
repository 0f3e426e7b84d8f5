"""Streaming readers: what comes back equals what was written, and bad files are named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_agent.errors import InputDataError, InputMissingError
from edge_agent.recording import MAX_GAP_S, NpyWriter, open_recording

_N = np.nan


def write_csv(path, data, fs=1000.0, header="t_s,ia,ib,ic", t=None):
    t = np.arange(data.shape[0]) / fs if t is None else t
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for ti, row in zip(t, data, strict=False):
            fh.write(f"{ti:.6f}," + ",".join(repr(float(v)) for v in row) + "\n")


def read_all(rec):
    chunks = list(rec.chunks())
    return np.concatenate([c.samples for c in chunks]), chunks


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(2, 300), st.sampled_from([3, 6])),
        # Any float a logger writes, NaN and ±inf included (missing and overflowed samples,
        # which the pipeline fills or flags), and long runs of one value (a dead or clipped
        # channel).
        elements=st.one_of(
            st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf, 32767.0, 0.0])
        ),
    ),
    st.integers(1, 97),
)
def test_csv_round_trip_any_values_any_chunk_size(tmp_path_factory, data, chunk):
    path = tmp_path_factory.mktemp("csv") / "r.csv"
    header = "t_s,ia,ib,ic" + (",va,vb,vc" if data.shape[1] == 6 else "")
    write_csv(path, data, header=header)
    with open_recording(path, chunk_samples=chunk) as rec:
        got, chunks = read_all(rec)
    assert rec.fs == 1000.0
    assert rec.roles == ["ia", "ib", "ic", "va", "vb", "vc"][: data.shape[1]]
    np.testing.assert_array_equal(got, data)  # NaN where NaN was written
    assert [c.start for c in chunks] == list(np.cumsum([0] + [len(c.samples) for c in chunks[:-1]]))


def test_columns_in_any_order_and_voltages_are_found(tmp_path):
    data = np.arange(60, dtype=float).reshape(10, 6)
    path = tmp_path / "r.csv"
    write_csv(path, data, header="t_s,vc,ic,ib,ia,va,vb")
    with open_recording(path) as rec:
        got, _ = read_all(rec)
    assert rec.roles == ["ia", "ib", "ic", "va", "vb", "vc"]
    np.testing.assert_array_equal(got, data[:, [3, 2, 1, 4, 5, 0]])


def test_columns_option_maps_other_names(tmp_path):
    data = np.arange(30, dtype=float).reshape(10, 3)
    path = tmp_path / "r.csv"
    write_csv(path, data, header="time,I1,I2,I3", t=np.arange(10))
    with open_recording(path, fs=500.0, columns=["I1", "I2", "I3"]) as rec:
        got, _ = read_all(rec)
    np.testing.assert_array_equal(got, data)
    assert rec.fs == 500.0


def test_sample_rate_from_rounded_time_column_is_exact(tmp_path):
    path = tmp_path / "r.csv"
    with open(path, "w") as fh:
        fh.write("t_s,ia,ib,ic\n")
        for i in range(20000):
            fh.write(f"{i / 15000:.8f},1,2,3\n")
    with open_recording(path) as rec:
        assert rec.fs == 15000.0


def test_time_gaps_are_reported_where_they_happen(tmp_path):
    t = np.arange(100) / 1000.0
    t[60:] += 0.05  # 50 samples missing before row 60
    path = tmp_path / "r.csv"
    write_csv(path, np.zeros((100, 3)), t=t)
    with open_recording(path, chunk_samples=32) as rec:
        chunks = list(rec.chunks())
    assert [c.start + g for c in chunks for g in c.gaps] == [60]
    assert [n for c in chunks for n in c.lost] == [50]  # how many samples it lost
    # The sample rate is that of the steps, not of the span with the gap (664 Hz before).
    assert rec.fs == 1000.0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 40),  # rows of one write, as a ring's chunk
            st.lists(st.tuples(st.integers(0, 40), st.integers(0, 30)), max_size=3),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 50),
)
def test_npy_writer_keeps_each_loss_where_it_was_and_how_long(tmp_path_factory, writes, chunk):
    """`run --record` writes a ring's chunks, each with its gaps (samples lost before a
    row; 0: how many is not known): read back in chunks of any size, the samples are
    those written, each gap is where it was, and it lost as many samples as the source
    said (one where it did not know). Losses that meet add up; one after the last sample
    has no sample to follow."""
    path = tmp_path_factory.mktemp("rec") / "r.npy"
    w = NpyWriter(path, 3, fs=1000.0)
    rng = np.random.default_rng(0)
    sent, expected = [], {}
    n = 0
    for rows, marks in writes:
        x = rng.normal(size=(rows, 3))
        marks = {min(g, rows): k for g, k in marks}  # one loss per row, at most
        w.write(x, list(marks), list(marks.values()))
        for g, k in marks.items():
            expected[n + g] = expected.get(n + g, 0) + max(1, k)
        sent.append(x)
        n += rows
    w.close()
    expected.pop(n, None)  # a loss at the very end: no sample follows it
    assert np.load(path).shape == (w.rows, 3)
    with open_recording(path, fs=1000.0, chunk_samples=chunk) as rec:
        got, chunks = read_all(rec)
    np.testing.assert_array_equal(got, np.concatenate(sent))
    found: dict[int, int] = {}
    before = 0
    for c in chunks:
        for g, k in zip(c.gaps, c.lost, strict=True):
            found[before + g] = found.get(before + g, 0) + k
        before += len(c.samples)
    assert found == expected


def test_npy_writer_caps_a_long_loss(tmp_path):
    """A loss the source counted as a minute long is kept as MAX_GAP_S of NaN rows."""
    w = NpyWriter(tmp_path / "r.npy", 3, fs=100.0)
    w.write(np.ones((5, 3)), [2], [6000])
    w.close()
    x = np.load(tmp_path / "r.npy")
    assert x.shape == (5 + round(MAX_GAP_S * 100), 3)
    assert np.isnan(x[2 : 2 + round(MAX_GAP_S * 100)]).all()


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int16]),
        st.tuples(st.integers(1, 400), st.sampled_from([3, 4, 6])),
    ),
    st.integers(1, 97),
)
# Lost rows at the start, between samples across a chunk boundary, and at the end; a row
# NaN in one column only (a missing sample, not a lost one); and nothing but lost rows.
@example(np.array([[_N] * 3, [1, 2, 3], [_N] * 3, [_N] * 3, [4, _N, 6], [7, 8, 9], [_N] * 3]), 3)
@example(np.full((4, 3), _N), 2)
def test_npy_round_trip_any_dtype_values_and_chunk_size(tmp_path_factory, data, chunk):
    """Float32, float64 or raw int16 ADC codes, NaN and ±inf included: every sample comes
    back, as float64, in order, whatever the chunk size; but a row that is NaN in every
    column, which stands for a sample lost (NpyWriter), is a gap."""
    path = tmp_path_factory.mktemp("npy") / "r.npy"
    np.save(path, data)
    with open_recording(path, fs=2000.0, chunk_samples=chunk) as rec:
        chunks = list(rec.chunks())
    used = 6 if data.shape[1] >= 6 else 3  # three currents, and three voltages if there
    assert rec.roles == ["ia", "ib", "ic", "va", "vb", "vc"][:used]
    lost = np.isnan(data).all(axis=1) if data.dtype.kind == "f" else np.zeros(len(data), bool)
    kept = np.flatnonzero(~lost)
    if not kept.size:  # nothing but lost samples: nothing to deliver
        assert chunks == []
        return
    got = np.concatenate([c.samples for c in chunks])
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, data[kept, :used].astype(np.float64))
    # Each run of lost rows is one gap before the sample after it, which lost that many;
    # a run at the very end has no sample after it.
    since_last = kept - np.concatenate(([-1], kept[:-1])) - 1  # lost rows before each
    found, before = [], 0
    for c in chunks:
        found += [(before + g, n) for g, n in zip(c.gaps, c.lost, strict=True)]
        before += len(c.samples)
    assert found == [(i, int(n)) for i, n in enumerate(since_last) if n]


def test_npy_streams_and_maps_columns(tmp_path):
    data = np.random.default_rng(0).normal(size=(1000, 6)).astype(np.float32)
    np.save(tmp_path / "r.npy", data)
    with open_recording(tmp_path / "r.npy", fs=2000.0, chunk_samples=300) as rec:
        got, _ = read_all(rec)
    assert rec.roles == ["ia", "ib", "ic", "va", "vb", "vc"]
    np.testing.assert_array_equal(got, data.astype(np.float64))
    with open_recording(tmp_path / "r.npy", fs=2000.0, columns=["5", "4", "3"]) as rec:
        got, _ = read_all(rec)
    np.testing.assert_array_equal(got, data[:, [5, 4, 3]].astype(np.float64))


# --- bad input --------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputMissingError, match=r"nope\.csv: no such file") as err:
        open_recording(tmp_path / "nope.csv")
    assert err.value.exit_code == 66


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "file is empty; expected a header row"),
        ("t_s,ia,ib,ic\n", "header but no samples"),
        ("t_s,x,y,z\n0,1,2,3\n", "header has columns t_s,x,y,z; expected"),
        ("t_s,ia,ib,ic\n0,1,2,3\n0.001,1,abc,3\n", "line 3, column 3: 'abc' is not a number"),
        ("t_s,ia,ib,ic\n0,1,2,3\n0.001,1,2\n", "line 3: 3 fields, expected 4"),
        ("t_s,ia,ib,ic\n0,1,2,3\n0,1,2,3\n0.002,1,2,3\n", "does not increase"),
        ("ia,ib,ic\n1,2,3\n", "give it with --fs"),
    ],
)
def test_bad_csv_is_named_with_line_and_expectation(tmp_path, content, needle):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InputDataError) as err:
        with open_recording(path) as rec:
            list(rec.chunks())
    assert needle in str(err.value)
    assert str(path) in str(err.value)
    assert err.value.exit_code == 65


def test_truncated_csv_delivers_every_good_row_before_the_error(tmp_path):
    data = np.arange(300, dtype=float).reshape(100, 3)
    path = tmp_path / "cut.csv"
    write_csv(path, data)
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 6])  # last row cut short
    got = []
    with pytest.raises(InputDataError, match=r"line 101: .* \(the file may be truncated\)"):
        with open_recording(path, chunk_samples=40) as rec:
            for c in rec.chunks():
                got.append(c.samples)
    np.testing.assert_array_equal(np.concatenate(got), data[:99])


def test_bad_npy(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputDataError, match=r"not a readable \.npy"):
        open_recording(tmp_path / "junk.npy", fs=1000.0)
    np.save(tmp_path / "narrow.npy", np.zeros((10, 2)))
    with pytest.raises(InputDataError, match="at least 3 channels"):
        open_recording(tmp_path / "narrow.npy", fs=1000.0)
    np.save(tmp_path / "ok.npy", np.zeros((10, 3)))
    with pytest.raises(InputDataError, match="give --fs"):
        open_recording(tmp_path / "ok.npy")


def test_truncated_npy_delivers_the_rows_before_the_cut(tmp_path):
    data = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    np.save(tmp_path / "r.npy", data)
    raw = (tmp_path / "r.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[: len(raw) - 3 * 4 * 150])
    got = []
    with pytest.raises(InputDataError, match=r"ends after 850 of 1000 rows"):
        with open_recording(tmp_path / "cut.npy", fs=1000.0, chunk_samples=100) as rec:
            for c in rec.chunks():
                got.append(c.samples)
    np.testing.assert_array_equal(np.concatenate(got), data[:850])
