"""Training: fit the autoencoder on healthy feature vectors and write a model bundle.

Used by ``edge-agent train``; the daemon never imports this package (it needs onnx, which
the scoring path does not).
"""

from __future__ import annotations

from edge_agent.training.autoencoder import (
    Autoencoder,
    FitResult,
    choose_threshold,
    describe_threshold_rule,
    fit,
)
from edge_agent.training.bundle import sha256_file, to_onnx, write_bundle

__all__ = [
    "Autoencoder",
    "FitResult",
    "choose_threshold",
    "describe_threshold_rule",
    "fit",
    "sha256_file",
    "to_onnx",
    "write_bundle",
]
