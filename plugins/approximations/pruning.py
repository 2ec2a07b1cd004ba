"""Pruning: per-layer unstructured magnitude sparsity (knob: the fraction of weights set to zero).

Why magnitude: without retraining, zeroing the smallest weights is the cheapest change in the
layer's output energy; the proxy error is exactly what was removed, ``sum(pruned w**2)``.

Storage (what ``size_bits`` counts, per layer of W weights of B bits, n pruned, nnz = W - n kept).
The layer is stored in the cheapest of three formats, each exact and each priced from the layer's
shape alone, so a strategy knows a candidate's compression rate before scoring it:

- ``dense``:  W·B — every weight stored, zeros included (sparsity 0 is this: the layer untouched);
- ``bitmap``: W + nnz·B — a 1-bit keep-mask per weight, then the kept values in index order;
- ``coo``:    nnz·(ceil(log2 W) + B) — the flat index and the value of each kept weight.

Relative-index (CSR-style) encodings with r-bit gaps can beat ``coo`` but need padding entries
whose count depends on where the zeros fall, i.e. on the weights; a size that the knob and the
shape do not determine would make the compression rate of a candidate depend on data the
strategy never sees, so they are not used here.

n = round(sparsity·W), but one weight is always kept (a layer of zeros is a removed layer, and
would cost 0 bits). Kept weights that happen to be zero are still stored (nnz counts kept
positions, not non-zeros).
Knob values are sparsities in [0, 1), listed ascending (least pruned first); each knob value is
its own group in divide-and-conquer's layer-wise step because every sparsity has its own size.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from wsx.approximation import Approximated, Approximation
from wsx.clusterer import Clusterer
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo
from wsx.metrics import index_bits

DEFAULT_SPARSITIES = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00, 0.05, ..., 0.95
FORMATS = ("dense", "bitmap", "coo")


def n_pruned(size: int, sparsity: float) -> int:
    """How many of ``size`` weights a sparsity removes: rounded to nearest, one weight always kept
    (a layer of zeros is a removed layer, not a pruned one)."""
    return max(min(int(round(float(sparsity) * int(size))), int(size) - 1), 0)


def position_bits(size: int) -> int:
    """Bits of one flat index into a tensor of ``size`` weights."""
    return index_bits(size)


def format_bits(size: int, kept: int, bits: int) -> dict[str, int]:
    """Bits of each storage format for ``kept`` of ``size`` weights, values of ``bits`` bits."""
    return {"dense": size * bits,
            "bitmap": size + kept * bits,
            "coo": kept * (position_bits(size) + bits)}


def cheapest(sizes: dict[str, int]) -> tuple[str, int]:
    """(format name, bits) of the smallest entry; ties go to the first listed (the simpler format)."""
    name = min(sizes, key=sizes.__getitem__)
    return name, sizes[name]


def cheapest_format(size: int, kept: int, bits: int) -> tuple[str, int]:
    """(format name, bits) of the cheapest format; ties go to the simpler one (FORMATS order)."""
    return cheapest(format_bits(size, kept, bits))


def magnitude_order(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat float32 weights, their pruning order, removed) where pruning the first n of the order
    removes ``removed[n]`` of squared norm; every sparsity of a layer reuses the one sort."""
    flat = np.asarray(weights, dtype=np.float32).ravel()
    order = np.argsort(np.abs(flat), kind="stable")  # ties: lower flat index pruned first
    removed = np.concatenate([[0.0], np.cumsum(flat[order].astype(np.float64) ** 2)])
    return flat, order, removed


def check_sparsity(layer: LayerInfo, knob) -> float:
    """A sparsity as a plain float in [0, 1), or InvalidSettingError naming the valid range."""
    try:
        value = math.nan if isinstance(knob, (str, bytes, bool, np.bool_)) else float(knob)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value < 1.0:
        raise InvalidSettingError(
            f"sparsity={knob!r} for layer {layer.name!r} is outside [0, 1); give the fraction of "
            "weights to prune (e.g. 0.9 for 90 %)")
    return value


class Pruning(Approximation):
    """Unstructured magnitude pruning per layer (knob: sparsity); proxy: pruned squared norm.

    ``sparsities`` is the default grid of knob values (None: 0, 0.05, ..., 0.95); ``bits`` is B,
    the width of a stored value.
    """

    name = "pruning"
    knob_name = "sparsity"
    idempotent = True  # pruning pruned weights again changes nothing (wsx.testing checks it)

    def __init__(self, *, bits: int = 32, sparsities: Sequence[float] | None = None):
        self.bits = bits
        self.sparsities = sparsities

    def knob_values(self, layer: LayerInfo) -> list[float]:
        grid = DEFAULT_SPARSITIES if self.sparsities is None else self.sparsities
        return sorted({self.check_knob(layer, s) for s in grid})

    def check_knob(self, layer: LayerInfo, knob) -> float:
        return check_sparsity(layer, knob)

    def size_bits(self, layer: LayerInfo, knob) -> int:
        kept = layer.size - n_pruned(layer.size, self.check_knob(layer, knob))
        return cheapest_format(layer.size, kept, self.bits)[1]

    def apply(self, weights: np.ndarray, knob, *, layer: LayerInfo,
              clusterer: Clusterer | None = None) -> Approximated:
        return self.apply_many(weights, [knob], layer=layer)[0]

    def apply_many(self, weights: np.ndarray, knobs: Sequence, *, layer: LayerInfo,
                   clusterer: Clusterer | None = None) -> list[Approximated]:
        """Sort the magnitudes once; each sparsity zeroes a prefix of that order."""
        sparsities = [self.check_knob(layer, kn) for kn in knobs]
        flat, order, removed = magnitude_order(weights)
        out = []
        for s in sparsities:
            n = n_pruned(flat.size, s)
            pruned = flat.copy()
            pruned[order[:n]] = 0.0
            out.append(Approximated(pruned.reshape(np.shape(weights)), float(removed[n]),
                                    self._payload(pruned, order[:n])))
        return out

    def _payload(self, pruned: np.ndarray, dropped: np.ndarray) -> dict:
        """What the cheapest format stores (see the module docstring)."""
        keep = np.ones(pruned.size, dtype=bool)
        keep[dropped] = False
        fmt, _ = cheapest_format(pruned.size, int(keep.sum()), self.bits)
        if fmt == "dense":
            return {"format": fmt, "values": pruned.copy()}
        if fmt == "bitmap":
            return {"format": fmt, "mask": np.packbits(keep), "values": pruned[keep]}
        return {"format": fmt, "indices": np.flatnonzero(keep).astype(np.int64), "values": pruned[keep]}

    def decode(self, payload: dict, layer: LayerInfo) -> np.ndarray:
        """The layer's weights back from a payload (what an artifact reader does)."""
        values = np.asarray(payload["values"], dtype=np.float32)
        if payload["format"] == "dense":
            return values.reshape(layer.shape)
        out = np.zeros(layer.size, dtype=np.float32)
        if payload["format"] == "bitmap":
            keep = np.unpackbits(payload["mask"], count=layer.size).astype(bool)
            out[keep] = values
        else:
            out[np.asarray(payload["indices"])] = values
        return out.reshape(layer.shape)


@hookimpl
def wsx_approximations():
    return [Pruning]
