"""edge-agent: motor current signature analysis for three-phase induction motors.

Library use, e.g. in a notebook::

    import numpy as np
    import edge_agent

    x = np.load("currents.npy")            # shape (n_samples, 3): ia, ib, ic in amperes
    records = edge_agent.analyze(x, fs=15000)
    windows = [r for r in records if r["type"] == "window"]
"""

from __future__ import annotations

import os
from typing import Any

# onnxruntime (1.29 and later) sends usage telemetry to Microsoft from Linux by default,
# and keeps a device identifier and an upload queue under ~/.cache/Microsoft. A motor's
# edge box in a plant network must not call out: opt out before onnxruntime is loaded
# (it reads the variable once). A value the user set is left as it is.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"

__all__ = ["Config", "Pipeline", "__version__", "analyze", "load_config"]

# Imported on first use: the pipeline pulls in numba and scipy (about a second), which
# `edge-agent --help` or `check-config` should not pay for.
_LAZY = {
    "Config": "edge_agent.config",
    "load_config": "edge_agent.config",
    "Pipeline": "edge_agent.pipeline",
    "analyze": "edge_agent.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edge_agent' has no attribute {name!r}")
