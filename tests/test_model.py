"""The autoencoder, its ONNX export, the model bundle and the Scorer, on real onnxruntime."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge_agent.errors import InputDataError, InputMissingError
from edge_agent.scoring import Scorer
from edge_agent.training import (
    choose_threshold,
    describe_threshold_rule,
    fit,
    sha256_file,
    to_onnx,
    write_bundle,
)

NAMES = [f"f{i}" for i in range(10)]
CREATED = "2024-01-01T00:00:00Z"


def healthy(n: int, seed: int) -> np.ndarray:
    """3 latent factors -> 10 correlated features with offsets and 2 % noise."""
    loading = np.random.default_rng(1234).normal(size=(3, 10))
    rng = np.random.default_rng(seed)
    offsets = np.linspace(1.0, 50.0, 10)  # features in unlike units, as in real windows
    return rng.normal(size=(n, 3)) @ loading + 0.05 * rng.normal(size=(n, 10)) + offsets


@functools.cache
def fitted():
    X = healthy(500, seed=1)
    result = fit(X, epochs=800, seed=0)
    threshold = choose_threshold(np.concatenate([result.train_scores, result.val_scores]))
    return X, result, threshold


def make_bundle(out: Path, seed: int = 0) -> Path:
    X, result, threshold = fitted()
    if seed != 0:
        result = fit(X, epochs=800, seed=seed)
    return write_bundle(
        out,
        result,
        NAMES,
        threshold=threshold,
        threshold_rule=describe_threshold_rule(),
        sources=[{"path": "healthy.csv", "sha256": "0" * 64, "windows": len(X)}],
        created=CREATED,
        extra={"motor": {"pole_pairs": 2, "supply_hz": 50.0}, "fs": 15000},
    )


# --- fit -----------------------------------------------------------------------------------


def test_fit_learns_healthy_data_and_flags_faults():
    X, result, threshold = fitted()
    assert result.history[-1] < 0.05 * result.history[0]
    assert result.n_train + result.n_val == len(X) and result.n_val == 100
    assert np.mean(result.val_scores > threshold) <= 0.02

    fresh = healthy(2000, seed=7)  # unseen healthy windows
    assert np.mean(result.model.score(fresh) > threshold) <= 0.02

    std = X.std(axis=0)
    shifted = fresh[:200].copy()
    shifted[:, 3] += 6 * std[3]
    assert np.all(result.model.score(shifted) > threshold)

    # Broken correlation: feature 5 mirrored about its mean, so each value stays within
    # the healthy range on its own but no longer agrees with the other features.
    z5 = (fresh[:, 5] - X[:, 5].mean()) / std[5]
    rows = fresh[(np.abs(z5) > 1.0) & (np.abs(z5) < 2.5)][:200].copy()
    rows[:, 5] = 2 * X[:, 5].mean() - rows[:, 5]
    assert np.all((rows[:, 5] > X[:, 5].min()) & (rows[:, 5] < X[:, 5].max()))
    assert np.mean(result.model.score(rows) > threshold) >= 0.95


def test_fit_is_deterministic_and_small_data_has_no_validation():
    X = healthy(8, seed=3)
    a, b = fit(X, epochs=50, seed=5), fit(X, epochs=50, seed=5)
    assert a.n_val == 0 and a.val_scores.size == 0 and a.n_train == 8
    for wa, wb in zip(a.model.weights, b.model.weights, strict=True):
        np.testing.assert_array_equal(wa, wb)
    assert a.hyperparameters["hidden"] == [10, 3]


def test_scale_floor_keeps_near_constant_feature_tame():
    X = healthy(200, seed=4)
    X[:, 0] = 50.0 + 1e-6 * np.random.default_rng(0).normal(size=len(X))  # supply_hz-like
    model = fit(X, epochs=50).model
    assert model.scale[0] == pytest.approx(0.5)  # 1 % of |mean|, not the tiny std


@pytest.mark.parametrize(
    ("X", "match"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((3, 10)), "at least 4"),
        (np.zeros((20, 1)), "at least 2"),
        (np.where(np.eye(20, 10) > 0, np.nan, 1.0), "non-finite"),
    ],
)
def test_fit_rejects_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        fit(X, epochs=1)


def test_choose_threshold_rule():
    scores = np.linspace(0.0, 1.0, 1001)
    assert choose_threshold(scores, quantile=0.99, margin=2.0) == pytest.approx(1.98)
    assert "0.995 quantile" in describe_threshold_rule()
    with pytest.raises(ValueError, match="empty"):
        choose_threshold(np.array([]))


# --- ONNX export ---------------------------------------------------------------------------


def test_onnx_matches_numpy_model():
    _, result, _ = fitted()
    proto = to_onnx(result.model, NAMES)
    assert proto.ir_version <= 10 and proto.opset_import[0].version == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["feature_names"]) == NAMES
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = healthy(64, seed=9) + np.random.default_rng(2).normal(scale=2.0, size=(64, 10))
    score, recon = session.run(["score", "reconstruction"], {"features": rows.astype(np.float32)})
    assert score.shape == (64,) and recon.shape == (64, 10)
    np.testing.assert_allclose(score, result.model.score(rows), rtol=1e-4)
    np.testing.assert_allclose(recon, result.model.reconstruct(rows), rtol=1e-4, atol=1e-4)


def test_to_onnx_rejects_wrong_names():
    _, result, _ = fitted()
    with pytest.raises(ValueError, match="input width"):
        to_onnx(result.model, NAMES[:-1])


# --- bundle and Scorer ---------------------------------------------------------------------


def test_bundle_roundtrip(tmp_path):
    _, result, threshold = fitted()
    out = make_bundle(tmp_path / "bundle")
    card = json.loads((out / "model.json").read_text())
    for key in (
        "format",
        "feature_names",
        "normalisation",
        "threshold",
        "threshold_rule",
        "score",
        "hyperparameters",
        "training",
        "created",
        "edge_agent_version",
    ):
        assert key in card, key
    assert card["format"] == "edge-agent-model/1" and card["created"] == CREATED
    assert card["motor"]["pole_pairs"] == 2 and card["fs"] == 15000
    training = card["training"]
    assert training["windows_train"] == 400 and training["windows_val"] == 100
    assert training["sources"][0]["windows"] == 500
    assert 0.0 <= training["val_false_positive_rate"] <= 0.02
    assert card["onnx"]["sha256"] == sha256_file(out / "model.onnx")

    scorer = Scorer.load(out)
    assert scorer.feature_names == NAMES and scorer.threshold == pytest.approx(threshold)
    rows = healthy(5, seed=11)
    np.testing.assert_allclose(scorer.score(rows), result.model.score(rows), rtol=1e-4)
    features = dict(zip(NAMES, rows[0].tolist(), strict=True))
    features["extra_feature"] = 1.0  # ignored: the model picks its own features
    s = scorer.score_features(features)
    assert s == pytest.approx(result.model.score(rows[0])[0], rel=1e-4)
    assert not scorer.is_anomalous(s) and not scorer.is_anomalous(None)
    assert scorer.is_anomalous(scorer.score_features({**features, "f3": features["f3"] + 100}))
    assert scorer.score_features({k: v for k, v in features.items() if k != "f2"}) is None
    assert scorer.score_features({**features, "f2": None}) is None
    assert scorer.score_features({**features, "f2": float("nan")}) is None


def test_bundle_is_reproducible_byte_for_byte(tmp_path):
    a = make_bundle(tmp_path / "a", seed=3)
    b = make_bundle(tmp_path / "b", seed=3)
    for name in ("model.onnx", "model.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    make_bundle(a, seed=3)  # overwriting in place leaves no temp files behind
    assert sorted(p.name for p in a.iterdir()) == ["model.json", "model.onnx"]


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")


def edit_card(bundle: Path, **changes) -> None:
    card = json.loads((bundle / "model.json").read_text())
    card.update(changes)
    (bundle / "model.json").write_text(json.dumps(card))


def test_missing_folder_or_file(tmp_path, bundle):
    with pytest.raises(InputMissingError, match="folder not found") as err:
        Scorer.load(tmp_path / "nowhere")
    assert err.value.exit_code == 66
    (bundle / "model.onnx").unlink()
    with pytest.raises(InputMissingError, match=r"model\.onnx not found") as err:
        Scorer.load(bundle)
    assert err.value.exit_code == 66 and str(bundle) in str(err.value)


def test_truncated_onnx(bundle):
    data = (bundle / "model.onnx").read_bytes()
    (bundle / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match="onnxruntime cannot load") as err:
        Scorer.load(bundle)
    assert err.value.exit_code == 65 and str(bundle / "model.onnx") in str(err.value)


def test_garbage_card(bundle):
    (bundle / "model.json").write_text("{not json")
    with pytest.raises(InputDataError, match="not valid JSON") as err:
        Scorer.load(bundle)
    assert err.value.exit_code == 65 and "model.json" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"threshold": -1.0}, "'threshold' must be a positive"),
        ({"threshold": "high"}, "'threshold' must be a positive"),
        ({"feature_names": "f0,f1"}, "'feature_names' must be"),
        ({"format": "something-else/2"}, "'format'"),
    ],
)
def test_bad_card_values(bundle, changes, match):
    edit_card(bundle, **changes)
    with pytest.raises(InputDataError, match=match) as err:
        Scorer.load(bundle)
    assert err.value.exit_code == 65 and "model.json" in str(err.value)


def test_missing_card_key(bundle):
    card = json.loads((bundle / "model.json").read_text())
    del card["threshold"]
    (bundle / "model.json").write_text(json.dumps(card))
    with pytest.raises(InputDataError, match="'threshold' is missing"):
        Scorer.load(bundle)


def test_width_mismatch(bundle):
    edit_card(bundle, feature_names=[*NAMES, "f10"])
    with pytest.raises(InputDataError, match=r"\[batch, 11\]") as err:
        Scorer.load(bundle)
    assert err.value.exit_code == 65


def test_card_from_another_bundle(bundle):
    edit_card(bundle, feature_names=list(reversed(NAMES)))
    with pytest.raises(InputDataError, match="different bundles"):
        Scorer.load(bundle)


def test_onnx_model_passes_checker(bundle):
    onnx.checker.check_model(onnx.load(bundle / "model.onnx"), full_check=True)


# What onnxruntime reads to decide on telemetry: the opt-out, and the variables by which it
# recognises a CI machine (where it stays silent by itself, which would hide a regression).
ORT_TELEMETRY_VARIABLES = (
    "ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "TF_BUILD", "GITHUB_ACTIONS",
    "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL", "CODEBUILD_BUILD_ID", "BUILDKITE",
    "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
)  # fmt: skip


def test_scoring_leaves_no_telemetry_behind(tmp_path):
    """onnxruntime (1.29 on) uploads usage telemetry from Linux unless told not to, and
    keeps a device id and an upload queue under ~/.cache/Microsoft. edge-agent opts out
    for its users: a replay scored by the default model leaves nothing there. (Without the
    opt-out in edge_agent/__init__.py, this run writes ~/.cache/Microsoft/DeveloperTools/
    .onnxruntime/deviceid and onnxruntime.db.)"""
    drop = ("XDG_CACHE_HOME", *ORT_TELEMETRY_VARIABLES)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    home = tmp_path / "home"
    env["HOME"] = str(home)
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, check=True)
    rec = tmp_path / "healthy.npy"
    run([sys.executable, "-m", "edge_agent", "simulate", "--duration", "3", "-o", str(rec)])
    res = run([sys.executable, "-m", "edge_agent", "replay", str(rec), "--fs", "15000"])
    assert '"score":' in res.stdout and '"score":null' not in res.stdout  # the model ran
    assert not (home / ".cache" / "Microsoft").exists()
