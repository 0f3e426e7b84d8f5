"""edge-agent: motor current signature analysis for three-phase induction motors.

Library use, e.g. in a notebook::

    import numpy as np
    import edge_agent

    x = np.load("currents.npy")            # shape (n_samples, 3): ia, ib, ic in amperes
    records = edge_agent.analyze(x, fs=15000)
    windows = [r for r in records if r["type"] == "window"]
"""

from __future__ import annotations

__version__ = "0.1.0"

from edge_agent.config import Config, load_config
from edge_agent.pipeline import Pipeline, analyze

__all__ = ["Config", "Pipeline", "__version__", "analyze", "load_config"]
