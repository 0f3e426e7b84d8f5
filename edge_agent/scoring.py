"""Anomaly scoring with a model bundle (``model.onnx`` + ``model.json``) and onnxruntime.

The scorer runs in the processing thread beside the acquisition thread on a small board,
so the onnxruntime session is pinned to one thread, sequential execution, CPU only. One
call scores a feature vector in tens of microseconds.

A bundle is checked once, at load: a broken or mismatched bundle is reported with the
file and field at fault (exit 65, or 66 when missing) before the daemon starts, never in
the hot loop.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from edge_agent.errors import InputDataError, InputMissingError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["BUNDLE_FORMAT", "DEFAULT_MODEL_DIR", "Scorer", "operating_limits"]

BUNDLE_FORMAT = "edge-agent-model/1"  # same as edge_agent.training.bundle (not imported: onnx)
# A model judges only a motor whose nameplate current is within this factor of its own
# (Scorer.another_motor): its motor's nameplate corrected after training (10.4 A for
# 10 A) keeps it; a motor of another size does not.
MOTOR_CURRENT_TOLERANCE = 1.25
# Sources that read a real motor (an ADC), where a model of a simulated one is not used
# (Scorer.refusal); a recording or the simulator is judged by any model asked for.
MEASURED_SOURCES = ("serial", "tcp")
_MODEL = "model.onnx"
_CARD = "model.json"


def _default_model_dir() -> Traversable:
    # Installed (also editable): models/ is the package edge_agent.models. In a source tree
    # that was never installed it is only the top-level folder beside edge_agent/.
    try:
        return resources.files("edge_agent.models") / "default"
    except (ModuleNotFoundError, TypeError, AttributeError):
        return Path(__file__).resolve().parent.parent / "models" / "default"


DEFAULT_MODEL_DIR: Traversable = _default_model_dir()


def _nameplate(motor: Any) -> tuple[float, float, int]:
    """Nameplate current (A), frequency (Hz) and pole pairs of a motor's settings."""
    return float(motor["rated_current"]), float(motor["rated_hz"]), int(motor["pole_pairs"])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_card(card: object, where: str) -> tuple[list[str], float]:
    """Feature names and threshold from a parsed card; InputDataError naming the key."""
    if not isinstance(card, dict):
        raise InputDataError(f"{where}: expected a JSON object (the model card)")
    for key in ("format", "feature_names", "threshold"):
        if key not in card:
            raise InputDataError(f"{where}: required key {key!r} is missing")
    fmt = card["format"]
    if not isinstance(fmt, str) or fmt.split(".")[0] != BUNDLE_FORMAT:
        raise InputDataError(
            f"{where}: 'format' is {fmt!r}; expected {BUNDLE_FORMAT!r} "
            "(a bundle written by `edge-agent train`)"
        )
    names = card["feature_names"]
    if (
        not isinstance(names, list)
        or not names
        or not all(isinstance(n, str) and n for n in names)
        or len(set(names)) != len(names)
    ):
        raise InputDataError(
            f"{where}: 'feature_names' must be a non-empty list of distinct strings, got {names!r}"
        )
    thr = card["threshold"]
    if (
        isinstance(thr, bool)
        or not isinstance(thr, (int, float))
        or not math.isfinite(thr)
        or thr <= 0
    ):
        raise InputDataError(f"{where}: 'threshold' must be a positive finite number, got {thr!r}")
    return list(names), float(thr)


def _check_baseline(card: dict, where: str) -> dict[str, float]:
    """The card's optional "baseline": {line: {"p95": dB, ...}} as {line: p95}."""
    baseline = card.get("baseline", {})
    expected = 'expected {"feature": {"p50": dB, "p95": dB, "analyses": n}, ...}'
    if not isinstance(baseline, dict):
        raise InputDataError(f"{where}: 'baseline' is {type(baseline).__name__}; {expected}")
    out = {}
    for name, stats in baseline.items():
        p95 = stats.get("p95") if isinstance(stats, dict) else None
        if isinstance(p95, bool) or not isinstance(p95, (int, float)) or not math.isfinite(p95):
            raise InputDataError(f"{where}: 'baseline' entry {name!r} is {stats!r}; {expected}")
        out[name] = float(p95)
    return out


def _check_negative_sequence(card: dict, where: str) -> float | None:
    """The card's optional "negative_sequence": the motor's healthy i2, A."""
    entry = card.get("negative_sequence")
    if entry is None:
        return None
    i2 = entry.get("i2") if isinstance(entry, dict) else None
    if isinstance(i2, bool) or not isinstance(i2, (int, float)) or not 0 <= i2 < math.inf:
        expected = 'expected {"i2": A, ...} with 0 <= i2, finite'
        raise InputDataError(f"{where}: 'negative_sequence' is {entry!r}; {expected}")
    return float(i2)


def _check_operating_range(card: dict, where: str) -> dict[str, tuple[float, float]] | None:
    """The card's optional "operating_range": {"i1": [low, high], "supply_hz": [low, high],
    ...} of the training windows, as {name: (low, high)}; None when the card has none (a
    bundle from a version before it: every window is judged)."""
    entry = card.get("operating_range")
    if entry is None:
        return None
    expected = 'expected {"i1": [low, high], "supply_hz": [low, high], ...}, 0 <= low <= high'
    out = {}
    for name in ("i1", "supply_hz"):
        pair = entry.get(name) if isinstance(entry, dict) else None
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
            or not 0 <= pair[0] <= pair[1] < math.inf
        ):
            raise InputDataError(f"{where}: 'operating_range' is {entry!r}; {expected}")
        out[name] = (float(pair[0]), float(pair[1]))
    return out


def _check_simulated(card: dict, where: str) -> bool:
    """The card's optional "simulated": true for a model of a simulated motor."""
    value = card.get("simulated", False)
    if not isinstance(value, bool):
        raise InputDataError(
            f"{where}: 'simulated' is {value!r}; expected true (a model of a simulated motor, "
            "as the bundled default) or false"
        )
    return value


def operating_limits(
    operating_range: Mapping[str, Sequence[float]], margin: float
) -> tuple[float, float, float]:
    """The lowest i1 (A), and the lowest and highest supply frequency (Hz), of a window the
    model judges: the card's ``operating_range`` widened by ``margin`` (a fraction). A
    heavier load has no limit: a fault can raise the current."""
    (i1_low, _), (f_low, f_high) = operating_range["i1"], operating_range["supply_hz"]
    return i1_low * (1.0 - margin), f_low * (1.0 - margin), f_high * (1.0 + margin)


def _check_normalisation(card: dict, names: list[str], where: str) -> np.ndarray | None:
    """The card's "normalisation" as rows (mean, scale), one column per feature; None when
    the card has none (a hand-made bundle: anomaly alerts then name no features)."""
    norm = card.get("normalisation")
    if norm is None:
        return None
    expected = f'expected {{"mean": [...], "scale": [...]}}, {len(names)} finite numbers each'
    try:
        rows = np.array([norm["mean"], norm["scale"]], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise InputDataError(f"{where}: 'normalisation' is {norm!r}; {expected}") from None
    if rows.shape != (2, len(names)) or not np.isfinite(rows).all() or (rows[1] <= 0).any():
        raise InputDataError(f"{where}: 'normalisation' is {norm!r}; {expected}, scales > 0")
    return rows


class Scorer:
    """Scores feature vectors with a model bundle; higher scores are more anomalous.

    Attributes: ``feature_names`` (input order), ``threshold`` (a score above it is
    anomalous), ``card`` (the parsed model.json) and ``path`` (the bundle folder).
    """

    def __init__(
        self, session: ort.InferenceSession, card: dict, path: Path, *, input_name: str
    ) -> None:
        self._session = session
        self._input = input_name
        self.card = card
        self.path = path
        self.feature_names, self.threshold = _check_card(card, str(path / _CARD))
        # The healthy 95th percentile (dB) of lines the diagnosis judges by their rise.
        self.baseline = _check_baseline(card, str(path / _CARD))
        # The healthy negative-sequence current (A) the stator rule judges by without
        # voltages.
        self.negative_sequence = _check_negative_sequence(card, str(path / _CARD))
        # The current and supply frequency of the training windows (A, Hz), low and high.
        self.operating_range = _check_operating_range(card, str(path / _CARD))
        self._normalisation = _check_normalisation(card, self.feature_names, str(path / _CARD))
        # Trained on a simulated motor (the bundled default), not on recordings of one.
        self.simulated = _check_simulated(card, str(path / _CARD))

    @classmethod
    def load(cls, path: str | Path | Traversable | None = None) -> Scorer:
        """Load and check the bundle in folder ``path`` (None: the bundled default model).

        Raises InputMissingError (exit 66) if the folder or one of its files is missing,
        InputDataError (exit 65) if the card or the ONNX model is unusable.
        """
        folder: Traversable = DEFAULT_MODEL_DIR if path is None else Path(path)
        shown = Path(str(folder))
        hint = "expected a folder with model.onnx and model.json, as written by `edge-agent train`"
        if not folder.is_dir():
            raise InputMissingError(f"model bundle {shown}: folder not found; {hint}")
        for name in (_MODEL, _CARD):
            if not folder.joinpath(name).is_file():
                raise InputMissingError(f"model bundle {shown}: {name} not found; {hint}")
        card_path = shown / _CARD
        model_path = shown / _MODEL

        try:
            card = json.loads(folder.joinpath(_CARD).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputDataError(f"{card_path}: not valid JSON: {_first_line(exc)}") from None
        except OSError as exc:
            raise InputMissingError(f"{card_path}: cannot read: {exc.strerror}") from None
        names, _ = _check_card(card, str(card_path))
        _check_baseline(card, str(card_path))
        _check_negative_sequence(card, str(card_path))
        _check_operating_range(card, str(card_path))
        _check_simulated(card, str(card_path))

        try:
            model_bytes = folder.joinpath(_MODEL).read_bytes()
        except OSError as exc:
            raise InputMissingError(f"{model_path}: cannot read: {exc.strerror}") from None
        opts = ort.SessionOptions()
        # One thread, sequential: the acquisition thread must keep its core.
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3  # errors only; warnings would land in the journal
        try:
            # From bytes, so a bundle inside a zipped package works as well as a folder.
            session = ort.InferenceSession(
                model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime's errors derive from Exception only
            raise InputDataError(
                f"{model_path}: onnxruntime cannot load the model: {_first_line(exc)}"
            ) from None

        inputs = session.get_inputs()
        outputs = [o.name for o in session.get_outputs()]
        if len(inputs) != 1 or "score" not in outputs:
            raise InputDataError(
                f"{model_path}: expected one input and a 'score' output, got inputs "
                f"{[i.name for i in inputs]} and outputs {outputs}"
            )
        shape = inputs[0].shape
        width = shape[-1] if len(shape) == 2 else None
        if width != len(names):
            raise InputDataError(
                f"{model_path}: the graph takes input of shape {shape} but {card_path} lists "
                f"{len(names)} feature_names; expected [batch, {len(names)}]"
            )
        # The card and the graph must come from the same fit (files are replaced one by one).
        meta = session.get_modelmeta().custom_metadata_map.get("feature_names")
        if meta is not None and json.loads(meta) != names:
            raise InputDataError(
                f"{card_path}: feature_names differ from those stored in {model_path}; "
                "the two files are from different bundles"
            )
        return cls(session, card, Path(str(folder)), input_name=inputs[0].name)

    def score(self, X: np.ndarray) -> np.ndarray:
        """Scores of feature rows ``X`` (n, d) or one row (d,), columns in ``feature_names``
        order; returns (n,) float64. A row with a NaN scores NaN."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[np.newaxis, :]
        d = len(self.feature_names)
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"X has shape {X.shape}; expected (n, {d}) in feature_names order")
        (scores,) = self._session.run(["score"], {self._input: np.ascontiguousarray(X)})
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def score_features(self, features: Mapping[str, float | None]) -> float | None:
        """Score one window's features by name; None if any model feature is missing,
        None or non-finite (a window with a data problem gets no score, not a wrong one)."""
        row = np.empty(len(self.feature_names), dtype=np.float32)
        for i, name in enumerate(self.feature_names):
            value = features.get(name)
            if value is None:
                return None
            try:
                value = float(value)
            except (TypeError, ValueError):
                return None
            if not math.isfinite(value):
                return None
            row[i] = value
        return float(self.score(row)[0])

    def furthest(self, features: Mapping[str, float | None], n: int = 3) -> list[dict]:
        """The ``n`` model features furthest from the training windows' mean, in units of
        the model's scale (their healthy spread, or the sensors' resolution where that is
        larger): what an anomaly alert names as its evidence. Empty without a
        normalisation in the card."""
        if self._normalisation is None:
            return []
        out = []
        for name, mean, scale in zip(self.feature_names, *self._normalisation, strict=True):
            value = features.get(name)
            if value is not None and math.isfinite(value):
                out.append({"feature": name, "value": value, "healthy_mean": float(mean),
                            "deviation": (value - mean) / scale})  # fmt: skip
        out.sort(key=lambda d: -abs(d["deviation"]))
        return out[:n]

    def outside(self, features: Mapping[str, float | None], margin: float) -> str | None:
        """Why a window lies outside the operating range the model learnt (the card's
        ``operating_range``), or None: its current more than ``margin`` (a fraction) under
        the training windows' lowest, or its supply frequency outside theirs by more than
        ``margin``. A model knows nothing of a lighter load or another speed, so its score
        there says nothing of the motor. A heavier load is not outside: a fault can raise
        the current. None without a range in the card or without the features."""
        if self.operating_range is None:
            return None
        i1, hz = features.get("i1"), features.get("supply_hz")
        i1_min, hz_min, hz_max = operating_limits(self.operating_range, margin)
        if i1 is not None and i1 < i1_min:
            low = self.operating_range["i1"][0]
            return (
                f"the current, i1 {i1:.3g} A, is under the {low:.3g} A of the lightest "
                "load in the model's training"
            )
        if hz is not None and not hz_min <= hz <= hz_max:
            f_low, f_high = self.operating_range["supply_hz"]
            return (
                f"the supply frequency, {hz:.1f} Hz, is outside the {f_low:.1f}-{f_high:.1f} "
                "Hz of the model's training"
            )
        return None

    def another_motor(self, motor: Mapping[str, Any]) -> str | None:
        """How the motor the model was trained for (the card's ``motor``) differs from
        ``motor`` (``MotorConfig.model_dump()``) in what its features depend on, or None:
        its nameplate current (by more than MOTOR_CURRENT_TOLERANCE), frequency or pole
        pairs. The model's features are in amperes of its motor, so its scores and line
        levels say nothing of another. None when the card names no motor."""
        trained = self.card.get("motor")
        try:
            (i_t, f_t, p_t), (i_m, f_m, p_m) = _nameplate(trained), _nameplate(motor)
        except (KeyError, TypeError, ValueError):
            return None
        if (
            i_t > 0
            and 1 / MOTOR_CURRENT_TOLERANCE <= i_m / i_t <= MOTOR_CURRENT_TOLERANCE
            and math.isclose(f_m, f_t, rel_tol=0.01)
            and p_m == p_t
        ):
            return None
        return (
            f"trained for a motor of {i_t:g} A, {f_t:g} Hz, {p_t} pole pairs; [motor] here "
            f"is {i_m:g} A, {f_m:g} Hz, {p_m} pole pairs"
        )

    def refusal(self, motor: Mapping[str, Any], source: str | None) -> str | None:
        """Why this model must not judge the motor ``motor`` (``MotorConfig.model_dump()``)
        read from ``source`` (``[acquisition] source``, None for a replay), or None: a
        model of another motor (another_motor), or a model of a simulated motor on a
        source that reads a real one (MEASURED_SOURCES). A real motor's healthy harmonics,
        asymmetry and Park's vector are not a simulation's: the ITSC motor's healthy runs
        scored every window anomalous against a model of simulated runs of its nameplate."""
        other = self.another_motor(motor)
        if other is not None:
            return (
                f"{other}. Its scores and line levels say nothing of this motor (if the "
                "model is this motor's, set [motor] right)"
            )
        if self.simulated and source in MEASURED_SOURCES:
            return (
                f"it learned a simulated motor (its card says so), and the {source} source "
                "reads a real one, whose healthy harmonics, asymmetry and Park's vector are "
                "not a simulation's: it would call healthy windows anomalous"
            )
        return None

    def is_anomalous(self, score: float | None) -> bool:
        """True if ``score`` exceeds the threshold; a missing score is never anomalous."""
        return score is not None and score > self.threshold

    def __repr__(self) -> str:
        return (
            f"Scorer(path={str(self.path)!r}, features={len(self.feature_names)}, "
            f"threshold={self.threshold:.6g})"
        )
