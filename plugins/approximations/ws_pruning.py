"""Weight sharing after pruning, in Deep Compression's order (knob: the pair (sparsity, k)).

The smallest-magnitude weights are set to zero and kept exact; the remaining weights share k values
found by the clusterer. Proxy: the pruned squared norm plus the k-means inertia of the kept weights.

Storage per layer (W weights, n = round(sparsity·W) pruned — at least one weight kept —, m = W - n
kept, b = ceil(log2 k), B bits per codebook value), the cheapest of three exact formats, each priced
from the shape alone:

- ``indexed``: W·ceil(log2(k + 1)) + k·B — every weight an index, one extra code meaning "zero"
  (with nothing pruned this is plain weight sharing, W·b + k·B);
- ``bitmap``:  W + m·b + k·B — a keep-mask, then an index per kept weight;
- ``coo``:     m·(ceil(log2 W) + b) + k·B — flat position and index of each kept weight.

Knob values are (sparsity, k) pairs with k <= m, listed by size, most compressive first. The
layer-wise step of divide-and-conquer groups them by (sparsity, b): within one sparsity, k values of
one index width cost about the same, as in weight sharing.
"""
from __future__ import annotations

from itertools import product
from typing import Sequence

import numpy as np

from wsx.approximation import Approximated, Approximation
from wsx.clusterer import Clusterer
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo
from wsx.metrics import index_bits

from .pruning import cheapest, check_sparsity, magnitude_order, n_pruned, position_bits

DEFAULT_SPARSITIES = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_KS = (2, 4, 8, 16, 32, 64, 128, 256)
FORMATS = ("indexed", "bitmap", "coo")


def format_bits(size: int, kept: int, k: int, bits: int) -> dict[str, int]:
    """Bits of each storage format (see the module docstring)."""
    b, codebook = index_bits(k), k * bits
    codes = k + (1 if kept < size else 0)  # the reserved "zero" code exists only if something is pruned
    return {"indexed": size * index_bits(codes) + codebook,
            "bitmap": size + kept * b + codebook,
            "coo": kept * (position_bits(size) + b) + codebook}


def cheapest_format(size: int, kept: int, k: int, bits: int) -> tuple[str, int]:
    return cheapest(format_bits(size, kept, k, bits))


class WeightSharingPruning(Approximation):
    """Magnitude pruning, then k shared values for the kept weights (knob: (sparsity, k)).

    ``sparsities`` and ``ks`` span the default grid of knob values; ``bits`` is B.
    """

    name = "weight-sharing+pruning"
    knob_name = "sparsity,k"
    uses_clusterer = True
    idempotent = True  # zeros stay the smallest, k shared values cluster onto themselves

    def __init__(self, *, bits: int = 32, sparsities: Sequence[float] = DEFAULT_SPARSITIES,
                 ks: Sequence[int] = DEFAULT_KS):
        self.bits = bits
        self.sparsities = sparsities
        self.ks = ks

    def check_knob(self, layer: LayerInfo, knob) -> tuple[float, int]:
        try:
            s, k = knob
            sparsity = check_sparsity(layer, s)
            kept = layer.size - n_pruned(layer.size, sparsity)
            ok = not isinstance(k, (bool, np.bool_)) and int(k) == k and 1 <= int(k) <= kept
        except (TypeError, ValueError):
            ok, kept = False, None
        if not ok:
            raise InvalidSettingError(
                f"knob {knob!r} for layer {layer.name!r} is not a valid (sparsity, k): give sparsity in "
                f"[0, 1) and a whole k in [1, kept weights{'' if kept is None else f' = {kept}'}]")
        return sparsity, int(k)

    def knob_values(self, layer: LayerInfo) -> list[tuple[float, int]]:
        pairs = set()
        for s, k in product(self.sparsities, self.ks):
            s = check_sparsity(layer, s)
            if k <= layer.size - n_pruned(layer.size, s):
                pairs.add((s, int(k)))
        return sorted(pairs, key=lambda p: (self.size_bits(layer, p), p))

    def size_bits(self, layer: LayerInfo, knob) -> int:
        s, k = self.check_knob(layer, knob)
        return cheapest_format(layer.size, layer.size - n_pruned(layer.size, s), k, self.bits)[1]

    def group_key(self, layer: LayerInfo, knob) -> tuple[float, int]:
        s, k = self.check_knob(layer, knob)
        return s, index_bits(k)

    def apply(self, weights: np.ndarray, knob, *, layer: LayerInfo,
              clusterer: Clusterer | None = None) -> Approximated:
        return self.apply_many(weights, [knob], layer=layer, clusterer=clusterer)[0]

    def apply_many(self, weights: np.ndarray, knobs: Sequence, *, layer: LayerInfo,
                   clusterer: Clusterer | None = None) -> list[Approximated]:
        """One magnitude sort per layer and one ``cluster_many`` per sparsity."""
        if clusterer is None:
            raise InvalidSettingError("weight-sharing+pruning needs a clusterer; pass clusterer= to explore")
        pairs = [self.check_knob(layer, kn) for kn in knobs]
        flat, order, removed = magnitude_order(weights)
        done: dict[tuple, Approximated] = {}
        for s in dict.fromkeys(s for s, _ in pairs):
            n = n_pruned(flat.size, s)
            keep = np.sort(order[n:])
            ks = list(dict.fromkeys(k for s2, k in pairs if s2 == s))
            for k, c in zip(ks, clusterer.cluster_many(flat[keep], ks)):
                codebook = np.asarray(c.centroids).astype(np.float32)
                out = np.zeros(flat.size, dtype=np.float32)
                out[keep] = codebook[c.labels]
                fmt, _ = cheapest_format(flat.size, keep.size, k, self.bits)
                done[(s, k)] = Approximated(out.reshape(np.shape(weights)), float(removed[n] + c.inertia),
                                            {"format": fmt, "codebook": codebook,
                                             "indices": np.asarray(c.labels, dtype=np.int64),
                                             "positions": keep.astype(np.int64)})
        return [done[p] for p in pairs]

    def decode(self, payload: dict, layer: LayerInfo) -> np.ndarray:
        """The layer's weights back from a payload (what an artifact reader does)."""
        out = np.zeros(layer.size, dtype=np.float32)
        out[np.asarray(payload["positions"])] = np.asarray(payload["codebook"], dtype=np.float32)[payload["indices"]]
        return out.reshape(layer.shape)


@hookimpl
def wsx_approximations():
    return [WeightSharingPruning]
