"""Weight sharing: each layer keeps k distinct values; a weight is a ceil(log2 k)-bit index."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from wsx.approximation import Approximated, Approximation
from wsx.clusterer import Clusterer, Clustering
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo
from wsx.metrics import index_bits, weight_sharing_bits


def log_k_range(n_values: int = 100, k_min: int = 2, k_max: int = 1024, cap: int | None = None) -> list[int]:
    """``n_values`` log-spaced integers in [k_min, k_max] (duplicates after rounding dropped), capped
    at ``cap`` (a layer's weight count)."""
    hi = k_max if cap is None else min(k_max, cap)
    lo = min(k_min, hi)
    ks = np.unique(np.round(np.geomspace(lo, hi, n_values)).astype(int))
    return [int(k) for k in ks]


class WeightSharing(Approximation):
    """One codebook of k shared values per layer (knob: k); proxy: k-means inertia."""

    name = "weight-sharing"
    knob_name = "k"
    uses_clusterer = True

    def __init__(self, *, bits: int = 32, k_values: int = 100, k_min: int = 2, k_max: int = 1024):
        self.bits = bits
        self.k_values = k_values
        self.k_min = k_min
        self.k_max = k_max

    def knob_values(self, layer: LayerInfo) -> list[int]:
        return log_k_range(self.k_values, self.k_min, self.k_max, cap=layer.size)

    def size_bits(self, layer: LayerInfo, knob: int) -> int:
        return weight_sharing_bits(layer.size, int(knob), self.bits)

    def group_key(self, layer: LayerInfo, knob: int) -> int:
        return index_bits(int(knob))

    def check_knob(self, layer: LayerInfo, knob) -> int:
        if int(knob) != knob or not 1 <= int(knob) <= layer.size:
            raise InvalidSettingError(f"k={knob!r} for layer {layer.name!r} is outside [1, {layer.size}] "
                                      "(its weight count); pick a whole k in that range")
        return int(knob)

    def _approximated(self, weights: np.ndarray, c: Clustering) -> Approximated:
        shared = c.reconstruct().reshape(weights.shape).astype(np.float32)
        return Approximated(shared, c.inertia, {"codebook": c.centroids, "indices": c.labels})

    def apply(self, weights: np.ndarray, knob: int, *, layer: LayerInfo,
              clusterer: Clusterer | None = None) -> Approximated:
        return self.apply_many(weights, [knob], layer=layer, clusterer=clusterer)[0]

    def apply_many(self, weights: np.ndarray, knobs: Sequence[int], *, layer: LayerInfo,
                   clusterer: Clusterer | None = None) -> list[Approximated]:
        if clusterer is None:
            raise InvalidSettingError("weight sharing needs a clusterer; pass clusterer= to explore")
        ks = [self.check_knob(layer, kn) for kn in knobs]
        return [self._approximated(weights, c) for c in clusterer.cluster_many(weights, ks)]


@hookimpl
def wsx_approximations():
    return [WeightSharing]
