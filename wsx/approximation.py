"""Approximation interface: the per-layer knob (k for weight sharing, sparsity, bits...)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from .clusterer import Clusterer
from .layers import LayerInfo


@dataclass
class Approximated:
    """A layer's weights after applying one knob value.

    ``weights`` has the layer's shape and dtype float32, ``proxy`` is the cheap error estimate
    (inertia for weight sharing) and ``payload`` what an artifact stores (e.g. codebook + indices).
    """

    weights: np.ndarray
    proxy: float
    payload: dict = field(default_factory=dict)


class Approximation(ABC):
    """Turns a layer's weights into a cheaper representation controlled by one knob.

    ``bits`` (B) is the width of a stored value: 32 for a float32 baseline, 16 or 8 for quantized ones.
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None
    knob_name: ClassVar[str] = "knob"
    uses_clusterer: ClassVar[bool] = False

    def __init__(self, *, bits: int = 32):
        self.bits = bits

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def baseline_bits(self, layer: LayerInfo) -> int:
        return int(layer.size) * int(self.bits)

    @abstractmethod
    def knob_values(self, layer: LayerInfo) -> list:
        """Default candidate knob values for ``layer``, most compressive first."""

    @abstractmethod
    def size_bits(self, layer: LayerInfo, knob: Any) -> int:
        """Storage of ``layer`` approximated with ``knob``, in bits."""

    @abstractmethod
    def apply(self, weights: np.ndarray, knob: Any, *, layer: LayerInfo,
              clusterer: Clusterer | None = None) -> Approximated:
        """Approximate ``weights`` (the layer's original array) with ``knob``."""

    def apply_many(self, weights: np.ndarray, knobs: Sequence, *, layer: LayerInfo,
                   clusterer: Clusterer | None = None) -> list[Approximated]:
        """Several knob values on one layer; override to share work between them."""
        return [self.apply(weights, kn, layer=layer, clusterer=clusterer) for kn in knobs]

    def group_key(self, layer: LayerInfo, knob: Any) -> Any:
        """Knob values in one group cost about the same; the layer-wise step keeps the best-AL knob
        per group (weight sharing groups k by index bit-width ceil(log2 k), thesis §5.2)."""
        return knob

    def check_knob(self, layer: LayerInfo, knob: Any) -> Any:
        """Validate a user-given knob; raise InvalidSettingError naming the valid range."""
        return knob
