"""Deterministic, seeded workloads, built once per session and shared by the benchmarks.

Everything comes from :mod:`edge_agent.simulate` with a fixed seed and the default
configuration: the default nameplate (4-pole, 1440 rpm at 50 Hz, 10 A) at 80 % load,
sampled at 15 kS/s, windows of 1 s every 0.5 s and an 8 s long window decimated by 7.
CT gains are drawn within ±1 %, as ``edge-agent simulate`` does by default: with
perfectly matched CTs the Park's vector 2f line falls to the -80 dB floor, which the
bundled model has never seen, and every window would score as anomalous.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from edge_agent.config import BearingConfig, Config, MotorConfig
from edge_agent.features import FeatureExtractor
from edge_agent.pipeline import Pipeline
from edge_agent.simulate import SimulationSpec, operating_point, simulate

FS = 15000.0
SEED = 0
CT_MISMATCH = 0.01
SIGNAL_S = 30.0  # a whole number of supply cycles, so cycling through its hops is seamless
REPLAY_S = 60.0
CONFIG = Config()
HOP_S = CONFIG.windows.hop_s
LENGTH = round(CONFIG.windows.length_s * FS)
HOP = round(HOP_S * FS)
DECIMATION = max(1, int(FS // CONFIG.windows.long_fs))


def spec(duration_s: float) -> SimulationSpec:
    return SimulationSpec(fs=FS, duration_s=duration_s, ct_mismatch=CT_MISMATCH, seed=SEED)


@functools.cache
def samples() -> np.ndarray:
    """``SIGNAL_S`` of currents, shape (n, 3) in A, as a recording delivers them."""
    _, x = simulate(spec(SIGNAL_S), CONFIG.motor)
    return x


@functools.cache
def samples_with_voltages() -> np.ndarray:
    """``SIGNAL_S`` of currents and phase voltages, shape (n, 6): ia, ib, ic, va, vb, vc."""
    s = SimulationSpec(
        fs=FS, duration_s=SIGNAL_S, voltages=True, ct_mismatch=CT_MISMATCH, seed=SEED
    )
    _, x = simulate(s, CONFIG.motor)
    return x


@functools.cache
def hops(voltages: bool = False) -> tuple[np.ndarray, ...]:
    """``samples()`` (or ``samples_with_voltages()``) cut into consecutive hops of shape
    (HOP, channels), for ``Pipeline.update``."""
    x = samples_with_voltages() if voltages else samples()
    return tuple(np.ascontiguousarray(x[i : i + HOP]) for i in range(0, x.shape[0], HOP))


# --- full windows, 3 currents + 3 voltages, as the pipeline holds them ------------------

ROLES = ["ia", "ib", "ic", "va", "vb", "vc"]
WARM_S = 10.0  # fills the 1 s short window and the 7.65 s long window, with margin
# A 6205 on a 28-bar rotor: with both, every feature is computed (the slot-harmonic slip
# search and the bearing lines need them); the default nameplate has neither.
BEARING_6205 = BearingConfig(n_balls=9, ball_diameter_mm=7.94, pitch_diameter_mm=39.04)
FULL = Config(motor=MotorConfig(rotor_bars=28, bearing=BEARING_6205))
FIXED_SUPPLY = Config(motor=MotorConfig(rotor_bars=28, bearing=BEARING_6205, supply_hz=50.0))

# name: (configuration, simulated fault, add principal slot harmonics)
WORKLOADS = {
    "healthy": (FULL, None, False),
    "healthy, default nameplate": (CONFIG, None, False),
    "broken-bar": (FULL, "broken-bar", False),  # slip from the broken-bar pair
    "eccentricity": (FULL, "eccentricity", False),  # slip from f ± f_r
    "slot harmonics": (FULL, None, True),  # slip from the rotor-slot harmonics
    "bearing-outer, fixed supply_hz": (FIXED_SUPPLY, "bearing-outer", False),
    "supply-unbalance": (FULL, "supply-unbalance", False),  # z2_ohm
    "stator-short": (FULL, "stator-short", False),
}
TIMED = "healthy"
SLOT_HARMONIC_DB = -50.0


@dataclass(frozen=True)
class Window:
    config: Config
    fs_long: float
    extractor: FeatureExtractor  # the pipeline's own
    x: np.ndarray  # (3, n) currents, A
    v: np.ndarray  # (3, n) voltages, V
    z: np.ndarray  # long window: decimated i_alpha + j i_beta at fs_long


def add_slot_harmonics(samples: np.ndarray, spec: SimulationSpec, motor: MotorConfig) -> None:
    """Add the principal slot harmonics R·f_r ± f (forward-rotating, ``SLOT_HARMONIC_DB``
    re the fundamental) to the currents in place: the simulator has none."""
    op = operating_point(spec, motor)
    t = np.arange(samples.shape[0]) / spec.fs
    amp = math.sqrt(2) * op.current_rms * 10 ** (SLOT_HARMONIC_DB / 20)
    pattern = -2 * np.pi * np.arange(3) / 3
    for hz in (motor.rotor_bars * op.rotor_hz + spec.supply_hz,
               motor.rotor_bars * op.rotor_hz - spec.supply_hz):  # fmt: skip
        samples[:, :3] += amp * np.cos(2 * np.pi * hz * t[:, None] + 0.3 + pattern)


def run(extractor, w: Window) -> dict[str, float | None]:
    """Short and long features of the window, as the pipeline calls them."""
    out = extractor.short(w.x, w.v)
    out.update(extractor.long(w.z, out["supply_hz"], out["i1"], extractor.slot_spectrum))
    return out


def clean(value) -> float | None:
    """As the pipeline records a feature: a finite float, or None (NaN, ±inf, missing)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@functools.cache
def window(name: str) -> Window:
    config, fault, slots = WORKLOADS[name]
    spec = SimulationSpec(
        fs=FS,
        duration_s=WARM_S,
        fault=fault,
        voltages=True,
        ct_mismatch=CT_MISMATCH,
        seed=SEED,
    )
    _, samples = simulate(spec, config.motor)
    if slots:
        add_slot_harmonics(samples, spec, config.motor)
    # The long window analysed at every window, so that the last record's came from it.
    every = config.model_copy(
        update={"windows": config.windows.model_copy(update={"long_hop_s": HOP_S})}
    )
    pipe = Pipeline(every, FS, ROLES)
    records = pipe.update(samples)
    w = Window(
        config=config,
        fs_long=pipe.fs_long,
        extractor=pipe.extractor,
        # The pipeline's own short window (float32), as the last record was computed from.
        x=pipe._recent[:3].copy(),
        v=pipe._recent[3:].copy(),
        z=np.array(pipe.long_window),  # a copy: the pipeline reuses its buffers
    )
    # The last record was computed from these very windows, the long one included.
    recorded = [r for r in records if r["type"] == "window"][-1]["features"]
    assert recorded["brb_lsb_db"] is not None
    again = {k: clean(v) for k, v in run(w.extractor, w).items()}
    assert [k for k in again if again[k] is None] == [k for k in again if recorded[k] is None]
    measured = [k for k in again if again[k] is not None]
    assert [again[k] for k in measured] == pytest.approx(
        [recorded[k] for k in measured], rel=1e-12, abs=1e-12
    )
    return w
