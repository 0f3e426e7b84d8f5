"""Model bundle: the fitted autoencoder as ONNX plus its model card (ARCHITECTURE.md contract).

A bundle is a folder with ``model.onnx`` and ``model.json``. The daemon only needs
onnxruntime to score; the card says what the model expects (feature names in input order),
how its threshold was chosen and what data it was trained on, so an alert can be traced
back to a model and its training recordings.

Both files are deterministic for a given fit and ``created`` string: rebuilding a bundle
from the same data gives byte-identical files, which makes a changed model visible in a
diff or a checksum.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_agent.training.autoencoder import Autoencoder, FitResult

__all__ = [
    "BUNDLE_FORMAT",
    "CARD_NAME",
    "IR_VERSION",
    "MODEL_NAME",
    "OPSET",
    "SCORE_DEFINITION",
    "sha256_file",
    "to_onnx",
    "write_bundle",
]

BUNDLE_FORMAT = "edge-agent-model/1"
MODEL_NAME = "model.onnx"
CARD_NAME = "model.json"
SCORE_DEFINITION = "mean squared reconstruction error of the normalised features"
# Opset 17 takes ReduceMean's axes as an attribute (18 moved them to an input). IR 8 is the
# lowest IR that allows opset 17; onnx 1.23 would otherwise write IR 14, which onnxruntime
# (<= 13) refuses, and older onnxruntime builds on a Raspberry Pi still read IR 8.
OPSET = 17
IR_VERSION = 8


def _edge_agent_version() -> str:
    # Imported lazily: edge_agent/__init__ imports the pipeline, which may import us.
    try:
        from edge_agent import __version__

        return str(__version__)
    except ImportError:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("edge-agent")
        except PackageNotFoundError:
            return "unknown"


def to_onnx(model: Autoencoder, feature_names: list[str]) -> onnx.ModelProto:
    """The autoencoder as an ONNX graph, normalisation included.

    Input ``features``: float32 [batch, d], raw feature values in ``feature_names`` order.
    Outputs ``score``: float32 [batch], mean squared reconstruction error of the normalised
    features (the anomaly score; same as :meth:`Autoencoder.score`), and
    ``reconstruction``: float32 [batch, d] in normalised units ``(x - mean) / scale``.
    The feature names are also in the model's metadata (``feature_names``, a JSON list).
    """
    d = model.n_features
    names = list(feature_names)
    if len(names) != d:
        raise ValueError(f"{len(feature_names)=} must equal the model's input width {d}")
    if len(set(names)) != d or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{feature_names=} must be distinct non-empty strings")

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name=name)

    inits = [const("norm_mean", model.mean), const("norm_scale", model.scale)]
    nodes = [
        helper.make_node("Sub", ["features", "norm_mean"], ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "norm_scale"], ["normalised"], name="scale"),
    ]
    prev = "normalised"
    last = len(model.weights) - 1
    for i, (W, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        inits += [const(f"W{i}", W), const(f"b{i}", b)]
        out = "reconstruction" if i == last else f"h{i}"
        pre = f"h{i}_pre" if i < last else out
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"h{i}_mm"], name=f"dense{i}"))
        nodes.append(helper.make_node("Add", [f"h{i}_mm", f"b{i}"], [pre], name=f"bias{i}"))
        if i < last:
            nodes.append(helper.make_node("Tanh", [pre], [out], name=f"tanh{i}"))
        prev = out
    nodes += [
        helper.make_node("Sub", ["reconstruction", "normalised"], ["residual"], name="residual"),
        helper.make_node("Mul", ["residual", "residual"], ["squared"], name="square"),
        helper.make_node(
            "ReduceMean", ["squared"], ["score"], name="mean_sq", axes=[1], keepdims=0
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "edge_agent_autoencoder",
        inputs=[helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", d])],
        outputs=[
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info("reconstruction", TensorProto.FLOAT, ["batch", d]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edge-agent",
        producer_version=_edge_agent_version(),
        doc_string=f"edge-agent MCSA autoencoder; score = {SCORE_DEFINITION}",
    )
    proto.ir_version = IR_VERSION
    helper.set_model_props(
        proto,
        {
            "format": BUNDLE_FORMAT,
            "feature_names": json.dumps(names),
            "score": SCORE_DEFINITION,
        },
    )
    onnx.checker.check_model(proto, full_check=True)
    return proto


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (recordings can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    # A reader (the daemon's hot reload) must never see a half-written file.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _quantile(scores: np.ndarray, q: float) -> float | None:
    return float(np.quantile(scores, q)) if len(scores) else None


def write_bundle(
    out_dir: str | os.PathLike[str],
    fit_result: FitResult,
    feature_names: list[str],
    *,
    threshold: float,
    threshold_rule: str,
    sources: list[dict],
    created: str | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model.onnx`` and ``model.json`` into ``out_dir`` and return ``out_dir``.

    ``sources`` describes the training recordings, e.g. ``[{"path": "healthy.csv",
    "sha256": sha256_file(p), "windows": 1200}]``. ``created`` (ISO 8601) replaces the
    current UTC time so that a bundle can be rebuilt byte for byte. The keys of ``extra``
    (e.g. ``{"motor": {...}, "fs": 15000}``) are merged into the card's top level; they may
    not replace a contract key. Each file is replaced atomically, ``model.onnx`` first and
    the card last.
    """
    threshold = float(threshold)
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"{threshold=} must be a positive finite number")
    out = Path(out_dir)
    proto = to_onnx(fit_result.model, feature_names)
    model_bytes = proto.SerializeToString()
    model = fit_result.model
    val = np.asarray(fit_result.val_scores, dtype=np.float64)
    train = np.asarray(fit_result.train_scores, dtype=np.float64)
    if created is None:
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        created = now.isoformat().replace("+00:00", "Z")

    card: dict = {
        "format": BUNDLE_FORMAT,
        "feature_names": list(feature_names),
        "normalisation": {
            "mean": [float(x) for x in model.mean],
            "scale": [float(x) for x in model.scale],
        },
        "threshold": float(threshold),
        "threshold_rule": threshold_rule,
        "score": SCORE_DEFINITION,
        "hyperparameters": fit_result.hyperparameters,
        "training": {
            "sources": list(sources),
            "windows_train": int(fit_result.n_train),
            "windows_val": int(fit_result.n_val),
            "final_loss": float(fit_result.history[-1]) if fit_result.history else None,
            "train_score_p50": _quantile(train, 0.5),
            "train_score_p99": _quantile(train, 0.99),
            "val_score_p50": _quantile(val, 0.5),
            "val_score_p99": _quantile(val, 0.99),
            "val_false_positive_rate": float(np.mean(val > threshold)) if len(val) else None,
        },
        "onnx": {
            "file": MODEL_NAME,
            "sha256": hashlib.sha256(model_bytes).hexdigest(),
            "opset": OPSET,
            "ir_version": IR_VERSION,
            "input": "features",
            "outputs": ["score", "reconstruction"],
        },
        "created": created,
        "edge_agent_version": _edge_agent_version(),
    }
    for key, value in (extra or {}).items():
        if key in card:
            raise ValueError(f"extra key {key!r} would replace the card's own {key!r}")
        card[key] = value
    # allow_nan=False: a NaN in the card would be invalid JSON for other readers.
    card_bytes = (json.dumps(card, sort_keys=True, indent=2, allow_nan=False) + "\n").encode()

    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / MODEL_NAME, model_bytes)
    _write_atomic(out / CARD_NAME, card_bytes)
    return out
