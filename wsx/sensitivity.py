"""Per-weight importances for sensitivity-weighted clustering (SqueezeLLM, coremltools' SKM).

A weight's importance is its squared gradient of a loss on calibration data, summed over samples
(the diagonal of the empirical Fisher information). The loss comes from what the metric reads:

- ``"ce"``: labels that are class indices (one whole number per sample) against 2-D outputs (logits):
  cross-entropy, the loss such a classifier was trained on;
- ``"mse"``: floating labels shaped like the outputs: half the squared error;
- ``"projection"``: no labels, or a metric that compares with the uncompressed model. The output
  distance to the uncompressed model has zero gradient at the original weights, so its curvature
  is used instead: for ``r`` drawn from N(0, 1) per sample, the squared gradient of ``r · f(x)``
  has expectation diag(Jᵀ J), the diagonal of the Gauss-Newton matrix of ½‖f(w) − f(w₀)‖².

Backends that declare ``supports_gradients`` compute the per-sample gradients with their framework's
automatic differentiation (``_squared_gradients``); this module holds what they share.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SENSITIVITIES = (None, "fisher")


def loss_target(metric, labels: Any, outputs: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """(loss kind, its per-sample target) for one batch: see the module docstring. ``outputs`` are the
    uncompressed model's selected outputs on the batch (numpy, one row per sample)."""
    bound = metric.bind(labels is not None)
    if labels is not None and not bound.needs_reference and isinstance(labels, np.ndarray):
        if labels.dtype.kind in "iu" and labels.ndim == 1 and outputs.ndim == 2 and outputs.shape[1] > 1:
            return "ce", labels.astype(np.int64)
        if labels.dtype.kind == "f" and labels.shape == outputs.shape:
            return "mse", labels.astype(outputs.dtype)
    return "projection", rng.standard_normal(outputs.shape).astype(np.float32)
