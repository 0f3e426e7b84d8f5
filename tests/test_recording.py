"""Streaming readers: what comes back equals what was written, and bad files are named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_agent.errors import InputDataError, InputMissingError
from edge_agent.recording import open_recording


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
        gaps = [c.start + g for c in rec.chunks() for g in c.gaps]
    assert gaps == [60]
    # The sample rate is that of the steps, not of the span with the gap (664 Hz before).
    assert rec.fs == 1000.0


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int16]),
        st.tuples(st.integers(1, 400), st.sampled_from([3, 4, 6])),
    ),
    st.integers(1, 97),
)
def test_npy_round_trip_any_dtype_values_and_chunk_size(tmp_path_factory, data, chunk):
    """Float32, float64 or raw int16 ADC codes, NaN and ±inf included: every sample comes
    back, as float64, in order, whatever the chunk size."""
    path = tmp_path_factory.mktemp("npy") / "r.npy"
    np.save(path, data)
    with open_recording(path, fs=2000.0, chunk_samples=chunk) as rec:
        got, chunks = read_all(rec)
    used = 6 if data.shape[1] >= 6 else 3  # three currents, and three voltages if there
    assert rec.roles == ["ia", "ib", "ic", "va", "vb", "vc"][:used]
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, data[:, :used].astype(np.float64))
    assert sum(len(c.samples) for c in chunks) == data.shape[0]


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
