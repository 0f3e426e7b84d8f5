"""The spectral engine and its FFT backends against references and analytic truths.

Both backends (FFTW through pyFFTW, and scipy) are tested whatever ``EDGE_AGENT_FFT``
says: the test extra installs pyFFTW, so a missing one fails here rather than skipping.
"""

from __future__ import annotations

import cmath
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
from edge_agent.kernels import fft
from edge_agent.kernels.engine import fundamental, phase_spectra, phasors
from edge_agent.kernels.park import clarke, epva_line_db, modulus_lines_db, park_ellipse
from edge_agent.kernels.sequence import dft_phasors
from edge_agent.kernels.spectrum import harmonics, space_vector_power, space_vector_spectrum
from edge_agent.kernels.stats import rms
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests import naive

RNG = np.random.default_rng(11)
BACKENDS = list(fft.BACKENDS)


def three_phase(fs, n, f=50.0, amps=(10.0, 10.0, 10.0), shifts=(0.0, -120.0, 120.0)):
    t = np.arange(n) / fs
    return np.stack(
        [a * np.cos(2 * np.pi * f * t + np.radians(s)) for a, s in zip(amps, shifts, strict=True)]
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_phase_spectra_match_three_dfts_and_the_clarke_transform(backend, dtype):
    x = RNG.normal(size=(3, 1000)).astype(dtype)
    spec = phase_spectra(x, 1000.0, backend=backend)
    phase, pos, neg, df = naive.phase_spectra(x, 1000.0)
    assert spec.df == df == 1000.0 / 1024  # padded to a fast length
    # Single-precision transforms: errors relative to the largest bin.
    for got, ref in ((spec.phase, phase), (spec.pos, pos), (spec.neg, neg)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * ref.max())


@pytest.mark.parametrize("backend", BACKENDS)
def test_phase_spectra_separate_sequences_and_stop_at_fmax(backend):
    fs, n = 15000.0, 15000
    x = three_phase(fs, n) + three_phase(fs, n, amps=(1.0,) * 3, shifts=(0.0, 120.0, -120.0))
    spec = phase_spectra(x, fs, fmax=1000.0, backend=backend)
    k = round(50.0 / spec.df)
    band = slice(k - 2, k + 3)
    # 10 A positive and 1 A negative sequence. Hann's main lobe sums to A² × ENBW, 1.5 bins
    # of the unpadded length: 1.536 bins after padding 15000 → 15360.
    enbw = 1.5 * (fs / n) / spec.df
    assert spec.pos[band].sum() / enbw == pytest.approx(100.0, rel=1e-3)
    assert spec.neg[band].sum() / enbw == pytest.approx(1.0, rel=1e-3)
    assert spec.phase[0, band].sum() / enbw == pytest.approx(11.0**2, rel=1e-3)
    assert spec.neg[band].sum() / spec.pos[band].sum() == pytest.approx(0.01, rel=1e-5)
    assert spec.pos.shape[0] == math.ceil(1000.0 / spec.df) + 1


def test_backends_agree_to_single_precision():
    x = RNG.normal(size=(3, 15000))
    a = phase_spectra(x, 15000.0, backend="fftw")
    b = phase_spectra(x, 15000.0, backend="scipy")
    np.testing.assert_allclose(a.phase, b.phase, rtol=0, atol=1e-6 * b.phase.max())
    z = RNG.normal(size=16384) + 1j * RNG.normal(size=16384)
    pa = space_vector_power(z, backend="fftw")
    pb = space_vector_power(z, backend="scipy")
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-6 * pb.max())


@settings(max_examples=25, deadline=None)
@given(
    st.integers(fft.FOUR_STEP_MIN // 4, 4200).map(lambda m: 4 * m),
    st.sampled_from(fft.KINDS),
    st.sampled_from(["noise", "line", "constant"]),
)
@example(15360, "c2c", "noise")  # the short window's transforms
@example(15360, "r2c", "noise")
@example(16384, "c2c", "line")  # the long window's
@example(4 * 3841, "r2c", "noise")  # an odd quarter length: rows of (m + 1) / 2 bins
@example(fft.FOUR_STEP_MIN, "r2c", "constant")
def test_scipy_long_transforms_in_four_steps_are_as_exact_as_one(n, kind, signal):
    # Lengths of 4096 and more that are multiples of 4 run as four batched transforms and a
    # radix-4 pass (kernels.fft): the plan's own buffer, not scipy's array, comes back.
    i = np.arange(n)
    if signal == "noise":
        x = RNG.normal(size=n) + (1j * RNG.normal(size=n) if kind == "c2c" else 0)
    elif signal == "line":  # lines on bins 377 and 1000, 60 dB apart
        x = np.exp(2j * np.pi * 377 * i / n) + 1e-3 * np.cos(2 * np.pi * 1000 * i / n)
        x = x if kind == "c2c" else x.real
    else:
        x = np.full(n, 2.5 + (1j if kind == "c2c" else 0))
    x = x.astype(np.complex64 if kind == "c2c" else np.float32)
    plan = fft.plan(n, kind, "scipy")
    plan.input[:] = x
    got = plan()
    assert got is plan()  # the four-step path ran (one call of length n returns a new array)
    ref = np.fft.fft(x.astype(np.complex128))[: got.shape[0]]
    one = (scipy.fft.fft if kind == "c2c" else scipy.fft.rfft)(x)  # one call of length n
    assert got.shape == one.shape
    top = np.abs(ref).max()
    # Single precision, like one transform: the error of either stays near 1e-7 of the top.
    assert np.abs(got - ref).max() <= max(3e-7 * top, 1.5 * np.abs(one - ref).max())
    if signal == "line":
        assert abs(got[1000]) / (n / 2) == pytest.approx(1e-3, rel=1e-3)
        rest = got.copy()  # (got is the plan's own buffer)
        rest[[377, 1000, -1000 if kind == "c2c" else 1000]] = 0  # the cosine's -1000 too
        assert np.abs(rest).max() < 1e-6 * top  # nothing anywhere else


def test_a_nan_sample_spoils_every_bin_of_a_four_step_transform():
    plan = fft.plan(15360, "r2c", "scipy")
    plan.input[:] = RNG.normal(size=15360)
    plan.input[4097] = np.nan  # one row of the four
    assert np.isnan(plan()).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_space_vector_power_reads_a_squared_at_plus_f_only(backend):
    fs, n = 2000.0, 16384
    x = three_phase(fs, n, f=50.0)
    f, p = space_vector_spectrum(x, fs, backend=backend)
    k = round(50.0 * n / fs)
    # Blackman-Harris main lobe (±4 bins) of an off-bin line sums to A² · ENBW (2.0044).
    assert p[k - 4 : k + 5].sum() / 2.0044 == pytest.approx(100.0, rel=1e-3)
    np.testing.assert_allclose(f[:3], [0.0, fs / n, 2 * fs / n])
    with pytest.raises(ValueError, match="complex"):
        space_vector_power(np.ones(16))


@pytest.mark.parametrize("f_over_fs", [1 / 300, 0.123456789, 0.49])
def test_phasors_of_a_long_window_keep_the_exponential_exact(f_over_fs):
    # The exponential is built block by block from two directly computed ones, so its
    # rounding does not build up along 15000 samples: a unit line reads 1 to 1e-12.
    n, fs = 15000, 1.0
    i = np.arange(n)
    x = np.stack([np.cos(2 * np.pi * f_over_fs * i + 0.3), RNG.normal(size=n)])
    ph = phasors(x, fs, f_over_fs)
    np.testing.assert_allclose(ph, naive.dft_phasors(x, fs, f_over_fs), rtol=0, atol=1e-10)
    # Whole cycles or not, the Hann window's leakage from the line's image at -f is small.
    assert abs(ph[0]) == pytest.approx(1.0, abs=1e-3 if f_over_fs < 0.01 else 1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fundamental_equals_phasors_rms_and_epva_references(dtype):
    fs, n = 5000.0, 5000
    x = three_phase(fs, n, f=49.7, amps=(10.0, 9.5, 10.0)) + RNG.normal(size=(3, n))
    v = 230 * three_phase(fs, n, f=49.7, shifts=(25.0, -95.0, 145.0)) + 3.0
    x, v = x.astype(dtype), v.astype(dtype)
    got = fundamental(x, fs, 49.7, v)
    x64, v64 = x.astype(np.float64), v.astype(np.float64)
    np.testing.assert_allclose(
        got.phasors, naive.dft_phasors(np.concatenate([x64, v64]), fs, 49.7), rtol=1e-9
    )
    np.testing.assert_allclose(got.rms, naive.rms(np.concatenate([x64, v64])), rtol=1e-12)
    assert got.epva_db == pytest.approx(naive.epva_line_db(x64, fs, 2 * 49.7), abs=1e-9)
    # The same as the single-purpose kernels, with or without other rows.
    alone = fundamental(x, fs, 49.7)
    np.testing.assert_allclose(alone.phasors, got.phasors[:3], rtol=1e-12)
    assert alone.epva_db == pytest.approx(epva_line_db(x, fs, 2 * 49.7), abs=1e-9)
    np.testing.assert_allclose(got.rms[3:], rms(v), rtol=1e-12)


def test_fundamental_epva_line_of_a_known_unbalance():
    # I2 = 5 % of I1: the Park's vector modulus ripples at 2f by 5 % of its mean.
    fs, n = 10000.0, 10000
    i1 = three_phase(fs, n)
    i2 = three_phase(fs, n, amps=(0.5, 0.5, 0.5), shifts=(0.0, 120.0, -120.0))
    got = fundamental(i1 + i2, fs, 50.0)
    assert got.epva_db == pytest.approx(20 * math.log10(0.05), abs=0.05)
    assert abs(got.phasors[0]) == pytest.approx(10.5, rel=1e-9)
    assert fundamental(i1, fs, 50.0).epva_db < -150


def test_fundamental_edge_cases():
    fs, n = 1000.0, 1000
    x = three_phase(fs, n, f=300.0)
    # 2f beyond fs/2: no EPVA line, phasors still.
    got = fundamental(x, fs, 300.0)
    assert math.isnan(got.epva_db)
    assert abs(got.phasors[0]) == pytest.approx(10.0, rel=1e-9)
    # All-zero currents: phasors and rms 0, the line (re a zero mean) undefined.
    zero = fundamental(np.zeros((3, n)), fs, 50.0)
    assert not zero.phasors.any() and not zero.rms.any() and math.isnan(zero.epva_db)
    # Without the Park's vector any number of rows works.
    assert fundamental(np.ones((5, n)), fs, 50.0, park=False).phasors.shape == (5,)
    assert math.isnan(fundamental(x, fs, 50.0, park=False).epva_db)
    with pytest.raises(ValueError, match=r"phases a, b, c"):
        fundamental(np.ones((2, n)), fs, 50.0)
    with pytest.raises(ValueError, match="others has 999 samples"):
        fundamental(x, fs, 50.0, np.ones((3, n - 1)))
    with pytest.raises(ValueError, match="between 0 and fs/2"):
        fundamental(x, fs, 500.0)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 6),
    n=st.integers(2, 600),
    f=st.floats(0.5, 499.0),
    f32=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fundamental_property_any_shape(rows, n, f, f32, seed):
    # Any rows and length (blocks whole or partial), either precision: the phasors and
    # rms of the per-purpose kernels, a NaN sample spoiling only its own row.
    x = np.random.default_rng(seed).normal(scale=5.0, size=(rows, n))
    if f32:
        x = x.astype(np.float32)
    bad = rows > 1 and n % 3 == 0
    if bad:
        x[1, n // 2] = np.nan
    got = fundamental(x, 1000.0, f, park=False)
    ref_ph = dft_phasors(x, 1000.0, f)
    ref_rms = rms(x)
    ok = np.ones(rows, dtype=bool)
    if bad:
        ok[1] = False
    np.testing.assert_allclose(got.phasors[ok], ref_ph[ok], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.rms[ok], ref_rms[ok], rtol=1e-9)
    assert np.isnan(got.phasors[~ok]).all() and np.isnan(got.rms[~ok]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shared_phasors_equal_per_channel_dft(dtype):
    x = RNG.normal(size=(6, 700)).astype(dtype)
    np.testing.assert_allclose(
        phasors(x, 1000.0, 49.3), naive.dft_phasors(x.astype(np.float64), 1000.0, 49.3),
        rtol=1e-9, atol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(phasors(x, 1000.0, 49.3), dft_phasors(x, 1000.0, 49.3), rtol=1e-9)


def test_modulus_lines_of_the_space_vector_equal_those_of_its_modulus():
    fs, n = 2000.0, 4000
    x = three_phase(fs, n, amps=(10.0, 9.0, 10.5)) + RNG.normal(scale=0.05, size=(3, n))
    z = (2 / 3) * (x[0] - 0.5 * (x[1] + x[2])) + 1j * (x[1] - x[2]) / math.sqrt(3)
    freqs = [3.0, 24.25, 100.0, 1500.0]  # the last lies beyond fs/2: NaN
    a = modulus_lines_db(z, fs, freqs)
    b = modulus_lines_db(np.abs(z), fs, freqs)
    np.testing.assert_allclose(a, b, rtol=1e-12)
    assert np.isnan(a[3])
    # The 2f line of the (amplitude-invariant) modulus is that of Park's modulus: both are
    # the same shape up to a constant factor.
    assert a[2] == pytest.approx(epva_line_db(x, fs, 100.0), abs=1e-9)
    assert a[2] == pytest.approx(naive.epva_line_db(x, fs, 100.0), abs=1e-9)


def test_epva_line_matches_reference_in_both_precisions():
    x = three_phase(5000.0, 5000, amps=(10.0, 9.5, 10.0)) + RNG.normal(size=(3, 5000))
    ref = naive.epva_line_db(x, 5000.0, 100.0)
    assert epva_line_db(x, 5000.0, 100.0) == pytest.approx(ref, abs=1e-9)
    # float32 samples, read exactly: the reference on the same values, to 1e-9 dB.
    x32 = x.astype(np.float32)
    assert epva_line_db(x32, 5000.0, 100.0) == pytest.approx(
        naive.epva_line_db(x32.astype(np.float64), 5000.0, 100.0), abs=1e-9
    )


def test_backend_choice_is_validated_and_plans_are_per_thread(monkeypatch):
    monkeypatch.setenv("EDGE_AGENT_FFT", "fastest")
    with pytest.raises(ValueError, match="EDGE_AGENT_FFT='fastest'"):
        fft.default_backend()
    monkeypatch.setenv("EDGE_AGENT_FFT", "scipy")
    assert fft.default_backend() == "scipy"
    monkeypatch.setenv("EDGE_AGENT_FFT", "auto")
    assert fft.default_backend() == "fftw"  # installed by the test extra
    mine = fft.plan(1024, "c2c")
    assert fft.plan(1024, "c2c") is mine
    other = []
    th = threading.Thread(target=lambda: other.append(fft.plan(1024, "c2c")))
    th.start()
    th.join()
    assert other[0] is not mine and other[0].input is not mine.input
    with pytest.raises(ValueError, match="kind"):
        fft.Plan(1024, "r2r", "scipy")


# --- FFTW plans measured once per machine (kernels.fft.tune) -----------------------------

_TUNE = """
import sys
from edge_agent.kernels import fft
print(*(fft.tune(int(n), kind, "fftw") for n, kind in (a.split(":") for a in sys.argv[1:])))
"""


def tune_in_a_new_process(wisdom, *transforms: str) -> tuple[list[str], str]:
    """What fft.tune says for each "n:kind", in a fresh process keeping plans in ``wisdom``."""
    env = {**os.environ, "EDGE_AGENT_FFT_WISDOM": str(wisdom)}
    res = subprocess.run(
        [sys.executable, "-c", _TUNE, *transforms],
        env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return res.stdout.split(), res.stderr


def test_fftw_plans_are_measured_once_per_machine_and_kept_in_the_wisdom_file(tmp_path):
    wisdom = tmp_path / "cache" / "fftw-wisdom"  # its folder is made
    # 3375 = 15^3 and 3000 are no sub-problem of a 4800-point transform. (2400 was: FFTW
    # may measure 4800 r2c as a 2400-point complex FFT and keep that in its wisdom, which
    # made 2400 c2c "known" in one CI run.)
    states, err = tune_in_a_new_process(wisdom, "4800:r2c", "4800:r2c", "3375:c2c")
    assert states == ["measured", "known", "measured"], err
    doc = json.loads(wisdom.read_text())
    assert doc["format"] == "edge-agent fftw wisdom 1" and "fftwf_wisdom" in doc["wisdom"][1]
    # Another process (the next start of the daemon) measures nothing.
    states, err = tune_in_a_new_process(wisdom, "3375:c2c", "4800:r2c")
    assert states == ["known", "known"] and err == ""
    # A new length is measured and added; the others stay known.
    assert tune_in_a_new_process(wisdom, "3000:c2c")[0] == ["measured"]
    assert tune_in_a_new_process(wisdom, "3375:c2c", "3000:c2c", "4800:r2c")[0] == ["known"] * 3


_FOREIGN = [f"(fftw-3.3.5 {p}_wisdom #x1 #x2 #x3 #x4\n)\n" for p in ("fftw", "fftwf", "fftwl")]


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x9fnot text",
        b"(fftw-3.3.5 fftwf_wisdom #x1 #x2 #x3 #x4)",  # FFTW's own export, not our file
        b'{"format": "edge-agent fftw wisdom 1", "wisdom": ["x"]}',
        # Ours, but from another FFTW build or processor: FFTW refuses it.
        json.dumps({"format": "edge-agent fftw wisdom 1", "wisdom": _FOREIGN}).encode(),
    ],
    ids=["binary", "not-json", "too-few-precisions", "refused-by-fftw"],
)
def test_a_damaged_or_foreign_wisdom_file_is_measured_again_and_rewritten(tmp_path, content):
    wisdom = tmp_path / "fftw-wisdom"
    wisdom.write_bytes(content)
    states, err = tune_in_a_new_process(wisdom, "2400:c2c")
    assert states == ["measured"]
    assert str(wisdom) in err and "measured again" in err
    assert tune_in_a_new_process(wisdom, "2400:c2c") == (["known"], "")


def test_an_unwritable_wisdom_file_leaves_the_measured_plans_to_the_process(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    wisdom = blocker / "fftw-wisdom"  # its folder cannot be made
    states, err = tune_in_a_new_process(wisdom, "2400:c2c", "2400:c2c", "4800:r2c")
    assert states == ["measured", "known", "measured"]
    assert err.count(f"could not keep the measured FFT plans in {wisdom}") == 1  # once
    assert "EDGE_AGENT_FFT_WISDOM" in err


def test_plans_made_before_the_wisdom_are_made_again_in_every_thread(tmp_path, monkeypatch):
    """A plan cached (by estimate) before tune() measured its transform would stay slower:
    the next plan() call, in any thread, makes it again; without new wisdom it is kept."""
    monkeypatch.setenv("EDGE_AGENT_FFT_WISDOM", str(tmp_path / "fftw-wisdom"))
    n = 3456  # a length no other test plans
    before = fft.plan(n, "c2c", "fftw")
    other: list = []

    def in_other_thread():
        other.append(fft.plan(n, "c2c", "fftw"))
        started.set()
        measured.wait(30)
        other.append(fft.plan(n, "c2c", "fftw"))

    started, measured = threading.Event(), threading.Event()
    th = threading.Thread(target=in_other_thread)
    th.start()
    started.wait(30)
    assert fft.tune(n, "c2c", "fftw") == "measured"
    measured.set()
    th.join()
    after = fft.plan(n, "c2c", "fftw")
    assert after is not before and other[1] is not other[0]
    assert fft.plan(n, "c2c", "fftw") is after  # nothing new learnt: the same plan
    assert fft.tune(n, "c2c", "fftw") == "known" and fft.plan(n, "c2c", "fftw") is after


def test_the_wisdom_file_is_in_systemds_cache_directory_or_the_users_cache(monkeypatch):
    monkeypatch.delenv("EDGE_AGENT_FFT_WISDOM")
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/edge-agent")  # a unit's CacheDirectory=
    assert fft.wisdom_path() == Path("/var/cache/edge-agent/fftw-wisdom")
    monkeypatch.delenv("CACHE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", "/home/pi/.cache")
    assert fft.wisdom_path() == Path("/home/pi/.cache/edge-agent/fftw-wisdom")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/pi")
    assert fft.wisdom_path() == Path("/home/pi/.cache/edge-agent/fftw-wisdom")
    monkeypatch.setenv("EDGE_AGENT_FFT_WISDOM", "~/plans")
    assert fft.wisdom_path() == Path("/home/pi/plans")
    monkeypatch.setenv("EDGE_AGENT_FFT_WISDOM", " None ")
    assert fft.wisdom_path() is None


def test_measuring_is_off_with_none_and_for_scipy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tune_in_a_new_process("none", "2400:c2c") == (["off"], "")
    assert list(tmp_path.iterdir()) == []
    assert fft.tune(2400, "c2c", "scipy") == "off"
    with pytest.raises(ValueError, match="kind"):
        fft.tune(2400, "r2r", "fftw")
    with pytest.raises(ValueError, match="n=1"):
        fft.tune(1, "c2c", "fftw")


_COMPARE = """
import os, sys
import numpy as np
from edge_agent.kernels import fft
from edge_agent.kernels.engine import fft_length, phase_spectra
from edge_agent.kernels.spectrum import space_vector_power

rng = np.random.default_rng(5)
t = np.arange(15000) / 15000.0
x = np.stack([10 * np.cos(2 * np.pi * 50 * t - k * 2 * np.pi / 3) for k in range(3)])
x = (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)
z = np.exp(2j * np.pi * 50 * np.arange(16384) / 2142.857) + 1e-3 * rng.standard_normal(16384)

def spectra():
    s = phase_spectra(x, 15000.0, backend="fftw")
    return [s.phase.copy(), s.pos.copy(), space_vector_power(z, backend="fftw")]

estimated = spectra()
os.environ["EDGE_AGENT_FFT_WISDOM"] = sys.argv[1]
n = fft_length(15000)
states = [fft.tune(n, "c2c", "fftw"), fft.tune(n, "r2c", "fftw"), fft.tune(16384, "c2c", "fftw")]
measured = spectra()
print(*states, *(float(np.max(np.abs(a - b)) / np.max(a)) for a, b in zip(estimated, measured)))
"""


def test_measured_plans_give_the_estimated_plans_spectra_to_float32_rounding(tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", _COMPARE, str(tmp_path / "fftw-wisdom")],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    *states, d_phase, d_pos, d_long = res.stdout.split()
    assert states == ["measured"] * 3
    # Differences of float32 rounding, relative to the largest line: far below any feature.
    assert max(float(d_phase), float(d_pos), float(d_long)) < 1e-6


@settings(max_examples=30, deadline=None)
@given(
    st.integers(64, 2000),
    st.sampled_from(BACKENDS),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from(["random", "constant", "clipped"]),
)
def test_phase_spectra_property_any_length_and_input(n, backend, dtype, kind):
    if kind == "random":
        x = RNG.normal(size=(3, n))
    elif kind == "constant":
        x = np.full((3, n), 2.5)
    else:
        x = np.clip(three_phase(1000.0, n) * 2, -12.0, 12.0)
    x = x.astype(dtype)
    spec = phase_spectra(x, 1000.0, backend=backend)
    phase, pos, neg, _ = naive.phase_spectra(x, 1000.0)
    top = max(phase.max(), 1e-30)
    for got, ref in ((spec.phase, phase), (spec.pos, pos), (spec.neg, neg)):
        assert got.shape == ref.shape
        assert np.all(np.isfinite(got)) and np.all(got >= 0)
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * top)


def test_nan_input_spoils_the_spectra_but_never_crashes():
    x = RNG.normal(size=(3, 500))
    x[1, 17] = np.nan
    spec = phase_spectra(x, 1000.0)
    assert np.isnan(spec.phase[1]).all() and np.isfinite(spec.phase[2]).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clarke_turns_a_balanced_set_into_a_rotating_vector_and_drops_zero_sequence(dtype):
    fs, n = 1000.0, 400
    x = three_phase(fs, n, f=50.0) + 3.0  # 3 A of zero sequence (a DC offset on every phase)
    ab = clarke(x.astype(dtype))
    t = np.arange(n) / fs
    np.testing.assert_allclose(ab[0] + 1j * ab[1], 10.0 * np.exp(2j * np.pi * 50.0 * t), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(3, n\)"):
        clarke(np.ones((2, 5)))


def test_harmonics_equal_band_power_ratios_one_by_one():
    p = RNG.random(size=(3, 500))
    p[2, 48:53] = 0.0  # no fundamental in this row
    thd, ratios = harmonics(p, 1.0, 50.3, 9, 2)
    for row, r in zip(p[:2], ratios, strict=False):
        fund = naive.band_power(row, 1.0, 50.3, 2)
        ref = [math.sqrt(naive.band_power(row, 1.0, h * 50.3, 2) / fund) for h in range(1, 10)]
        np.testing.assert_allclose(r, ref, rtol=1e-12)
    np.testing.assert_allclose(thd[:2], naive.thd(p[:2], 1.0, 50.3, 9, 2), rtol=1e-12)
    assert np.isnan(thd[2]) and np.isnan(ratios[2]).all()
    # A 3 % fifth harmonic on a 10 A line: ratio 0.03, and the THD with it.
    line = np.zeros((1, 500))
    line[0, 50], line[0, 250] = 100.0, 0.09
    thd, ratios = harmonics(line, 1.0, 50.0, 7, 2)
    assert ratios[0, 4] == pytest.approx(0.03) and thd[0] == pytest.approx(0.03)
    assert ratios[0, 2] == 0.0
    with pytest.raises(ValueError, match="beyond the spectrum"):
        harmonics(line, 1.0, 50.0, 10, 2)


def _compiled_signatures() -> dict[str, int]:
    """Number of compiled signatures of every jitted kernel, by qualified name."""
    import importlib
    import pkgutil

    import edge_agent.kernels as pkg
    from numba.core.registry import CPUDispatcher

    counts = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"edge_agent.kernels.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher):
                counts[f"{info.name}.{name}"] = len(obj.signatures)
    return counts


@pytest.mark.parametrize("backend", BACKENDS)
def test_warm_up_leaves_nothing_for_the_first_window_to_compile(backend, monkeypatch):
    """A compile at the first live window would stall analysis for seconds (cold cache),
    with either FFT backend (scipy's has kernels of its own: the four-step's join)."""
    monkeypatch.setenv("EDGE_AGENT_FFT", backend)
    from edge_agent import kernels
    from edge_agent.config import Config
    from edge_agent.pipeline import Pipeline
    from edge_agent.simulate import SimulationSpec, simulate

    kernels.warm_up()  # raises if any kernel rejects the types the pipeline gives it
    before = _compiled_signatures()
    config = Config()
    spec = SimulationSpec(duration_s=10.0, voltages=True, fault="broken-bar", severity=40.0)
    _, x = simulate(spec, config.motor)
    pipe = Pipeline(config, 15000.0, ["ia", "ib", "ic", "va", "vb", "vc"])
    records = pipe.update(x)
    assert records[-1]["features"]["brb_lsb_db"] is not None  # the long window ran too
    assert _compiled_signatures() == before


def test_park_modulus_of_a_balanced_set_is_constant_and_ripples_with_unbalance():
    from edge_agent.kernels.park import park_modulus

    x = three_phase(1000.0, 400)
    m = park_modulus(x)
    np.testing.assert_allclose(m, math.sqrt(1.5) * 10.0, rtol=1e-12)  # power-invariant
    # With unbalance it ripples at 2f, and its 2f line is the one epva_line_db reads.
    u = three_phase(1000.0, 1000, amps=(10.0, 9.0, 10.5))
    assert np.ptp(park_modulus(u)) > 0.5
    assert modulus_lines_db(park_modulus(u), 1000.0, [100.0])[0] == pytest.approx(
        epva_line_db(u, 1000.0, 100.0), abs=1e-9
    )


@given(
    a1=st.floats(0.0, 100.0),
    a2=st.floats(0.0, 100.0),
    p1=st.floats(-math.pi, math.pi),
    p2=st.floats(-math.pi, math.pi),
)
@settings(max_examples=100, deadline=None)
def test_park_ellipse_is_the_locus_traced_by_the_sequence_phasors(a1, a2, p1, p2):
    """The Park's vector i1·e^{jωt} + conj(i2)·e^{-jωt}, sampled over a cycle: its shortest
    over its longest radius, and the direction of the longest (mod 180°)."""
    i1, i2 = cmath.rect(a1, p1), cmath.rect(a2, p2)
    ratio, axis = park_ellipse(i1, i2)
    if a1 + a2 < 1e-6:
        assert math.isnan(ratio) == (a1 + a2 == 0)
        return
    wt = np.linspace(0, 2 * np.pi, 36000, endpoint=False)
    z = i1 * np.exp(1j * wt) + np.conj(i2) * np.exp(-1j * wt)
    r = np.abs(z)
    assert ratio == pytest.approx(r.min() / r.max(), abs=1e-3)  # the sampling step
    if abs(a1 - a2) > 1e-3 * (a1 + a2) and min(a1, a2) > 1e-3 * (a1 + a2):
        along = math.degrees(np.angle(z[np.argmax(r)])) % 180.0
        assert min(abs(along - axis), 180.0 - abs(along - axis)) < 0.05
