"""Weight sharing: each codebook keeps k distinct values; a weight is a ceil(log2 k)-bit index.

Sharing granularity (thesis §4.2.2) decides which weights share one codebook:

- ``"layer"`` (default): one codebook per layer, size = W·ceil(log2 k) + k·B (thesis eq. 4.1);
- ``"channel"``: one codebook per output channel (``channel_axis``: 0 for torch layouts, -1 for
  Keras kernels, which put output channels last);
- ``"kernel"``: one codebook per 2-D kernel, i.e. per (output, input) channel pair of a conv weight.

With G codebooks of k values each, size = W·ceil(log2 k) + G·k·B, and k is capped at the weights per
codebook (more values than weights buy nothing). A tensor with too few axes for the granularity
falls back to the next coarser one (a Linear weight has no 2-D kernels: per channel; a bias: per
layer).

``preserve_zeros=True`` keeps exact zeros (an already-pruned layer) exactly zero: 0.0 takes one of
the k codebook entries and the non-zero weights share the other k-1 values, found without the zeros
pulling any centroid towards them. The size formula is unchanged, because the zero is one of the k
stored values. With k=1 that single value is the zero.

Payload (what an artifact stores): ``codebook`` and ``indices``. Per layer: the k sorted values and
one index per weight in the layer's flattened order. Grouped: ``codebook`` of shape (G, k), sorted
per row (a group with fewer distinct values than k repeats its last value), ``indices`` of shape
(G, W/G) in group order, and ``granularity``. With output channels first (torch) group g owns the
flattened weights [g·W/G, (g+1)·W/G); other layouts transpose first (``group_axes``).

**Stored values are B bits** (``bits``): with B=16 each codebook value is rounded to float16, with
B=8 to an 8-bit affine grid per codebook (``(q − zero_point)·scale``, q in 0..255, spanning the
codebook's values and 0; ``affine_grid``), so the scored model is the one the size k·B describes. B=32 and 64
keep float32 values (what ``apply`` writes). The proxy is then the inertia of the rounded codebook.

**Sensitivity** (``sensitivity="fisher"``): each weight counts in the clustering by its importance,
its squared gradient of a loss on calibration data summed over samples (``wsx.sensitivity``; the
engine computes them once per exploration, on the search subset, through the backend's
``importances``), as in SqueezeLLM and coremltools' SKM palettizer; the proxy is the weighted
inertia. ``apply`` then needs the importances: ``importance=`` per call.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from wsx.approximation import Approximated, Approximation
from wsx.clusterer import Clusterer
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo
from wsx.metrics import index_bits, weight_sharing_bits
from wsx.sensitivity import SENSITIVITIES

GRANULARITIES = ("layer", "channel", "kernel")
STORED = (8, 16)  # widths B whose codebook values are rounded (wider ones stay float32)


def log_k_range(n_values: int = 100, k_min: int = 2, k_max: int = 1024, cap: int | None = None) -> list[int]:
    """``n_values`` log-spaced integers in [k_min, k_max] (duplicates after rounding dropped), capped
    at ``cap`` (a layer's weight count)."""
    hi = k_max if cap is None else min(k_max, cap)
    lo = min(k_min, hi)
    ks = np.unique(np.round(np.geomspace(lo, hi, n_values)).astype(int))
    return [int(k) for k in ks]


def bit_width_grid(weights: int, groups: int = 1, bits: int = 32, k_min: int = 2, k_max: int = 1024,
                   cap: int | None = None, min_saving: float = 0.01, max_members: int = 8) -> list[int]:
    """Per index bit-width b (k in (2^(b-1), 2^b]) its largest k, plus smaller ones where the codebook
    matters: the k of one bit-width differ in size by the codebook only (G·k·B bits), so a smaller k
    is worth a scoring only on layers where it saves at least ``min_saving`` of the layer's size
    (small layers); then up to ``max_members`` of them, evenly spaced from the bit-width's smallest k.
    ``weights`` is the layer's weight count W, ``groups`` its codebook count G, ``cap`` the weights
    per codebook (no k beyond it)."""
    hi = k_max if cap is None else min(k_max, cap)
    lo = min(k_min, hi)
    out: list[int] = []
    for b in range(index_bits(lo), index_bits(hi) + 1):
        first, top = max(lo, (1 << (b - 1)) + 1 if b else 1), min(hi, 1 << b)
        if top < first:
            continue
        size = weight_sharing_bits(weights, top, bits, groups)
        share = (top - first) * groups * bits / size if size else 0.0
        extra = min(top - first, int(share / min_saving) if min_saving > 0 else top - first, max_members)
        if extra > 0:
            out.extend(int(k) for k in np.round(np.linspace(first, top, extra + 1)[:-1]))
        out.append(top)
    return sorted(set(out))


def group_axes(shape: tuple, granularity: str, channel_axis: int = 0) -> tuple[tuple[int, ...], int, str]:
    """(axis order that makes each codebook's weights one contiguous run, number of codebooks G,
    granularity actually used) for a tensor of ``shape``."""
    ndim = len(shape)
    identity = tuple(range(ndim))
    if granularity == "kernel" and ndim < 3:
        granularity = "channel"
    if granularity == "channel" and ndim < 2:
        granularity = "layer"
    if granularity == "layer":
        return identity, 1, "layer"
    out = channel_axis % ndim
    if granularity == "channel":
        order = (out,) + tuple(a for a in identity if a != out)
        return order, int(shape[out]), "channel"
    inp = out + 1 if out < ndim - 1 else out - 1  # input channels sit next to output channels
    order = (out, inp) + tuple(a for a in identity if a not in (out, inp))
    return order, int(shape[out]) * int(shape[inp]), "kernel"


class WeightSharing(Approximation):
    """k shared values per codebook (knob: k); proxy: k-means inertia (summed over codebooks).

    ``granularity`` ("layer", "channel", "kernel") and ``channel_axis`` pick which weights share a
    codebook; ``preserve_zeros`` keeps exact zeros exact (see the module docstring).

    The candidate k per layer (``k_grid``), between ``k_min`` and ``k_max``: "bits" (default) is
    ``bit_width_grid``: per index bit-width its largest k, and smaller k only where the codebook is at
    least ``min_saving`` of the layer's size (about 10 values on a large layer, a few more per
    bit-width on small ones); "log" is the thesis' ``k_values`` log-spaced values (81 distinct for
    2..1024).
    """

    name = "weight-sharing"
    knob_name = "k"
    uses_clusterer = True

    def __init__(self, *, bits: int = 32, k_grid: str = "bits", k_values: int = 100, k_min: int = 2,
                 k_max: int = 1024, min_saving: float = 0.01, granularity: str = "layer", channel_axis: int = 0,
                 preserve_zeros: bool = False, sensitivity: str | None = None):
        self.bits = bits
        self.k_grid = k_grid
        self.min_saving = min_saving
        self.k_values = k_values
        self.k_min = k_min
        self.k_max = k_max
        self.granularity = granularity
        self.channel_axis = channel_axis
        self.preserve_zeros = preserve_zeros
        self.sensitivity = sensitivity

    @property
    def needs_importances(self) -> bool:
        """Whether ``apply`` clusters with per-weight importances (``importance=``)."""
        if self.sensitivity not in SENSITIVITIES:
            raise InvalidSettingError(f"sensitivity={self.sensitivity!r}: use None (every weight counts the same) "
                                      "or 'fisher' (squared gradients on calibration data)")
        return self.sensitivity is not None

    # -- sizes ----------------------------------------------------------------------------------
    def _groups(self, layer: LayerInfo) -> tuple[tuple[int, ...], int, str]:
        if self.granularity not in GRANULARITIES:
            raise InvalidSettingError(f"unknown granularity {self.granularity!r}; use one of {list(GRANULARITIES)}")
        if layer.size == 0:
            return tuple(range(len(layer.shape))), 1, "layer"
        return group_axes(tuple(layer.shape), self.granularity, self.channel_axis)

    def _codebooks(self, layer: LayerInfo) -> tuple[int, int]:
        """(number of codebooks G, weights per codebook: the cap on k)."""
        _, groups, _ = self._groups(layer)
        return groups, max(layer.size // groups, 1)

    def _effective_k(self, layer: LayerInfo, knob: int) -> int:
        return min(int(knob), self._codebooks(layer)[1])

    def knob_values(self, layer: LayerInfo) -> list[int]:
        groups, cap = self._codebooks(layer)
        if self.k_grid == "log":
            return log_k_range(self.k_values, self.k_min, self.k_max, cap=cap)
        if self.k_grid != "bits":
            raise InvalidSettingError(f"k_grid={self.k_grid!r}; use 'bits' (per index bit-width its largest k, and "
                                      "smaller ones where the codebook matters) or 'log' (k_values log-spaced values)")
        return bit_width_grid(layer.size, groups, self.bits, self.k_min, self.k_max, cap=cap,
                              min_saving=self.min_saving)

    def size_bits(self, layer: LayerInfo, knob: int) -> int:
        groups, cap = self._codebooks(layer)
        return weight_sharing_bits(layer.size, min(int(knob), cap), self.bits, groups=groups)

    def group_key(self, layer: LayerInfo, knob: int) -> int:
        return index_bits(self._effective_k(layer, knob))

    def check_knob(self, layer: LayerInfo, knob) -> int:
        if isinstance(knob, (bool, np.bool_)) or int(knob) != knob or not 1 <= int(knob) <= layer.size:
            raise InvalidSettingError(f"k={knob!r} for layer {layer.name!r} is outside [1, {layer.size}] "
                                      "(its weight count); pick a whole k in that range")
        return int(knob)

    # -- clustering -----------------------------------------------------------------------------
    def _cluster_group(self, clusterer: Clusterer, w: np.ndarray, ks: list[int],
                       s: np.ndarray | None = None) -> list[tuple]:
        """(sorted codebook of B-bit values, int64 indices, (weighted) inertia) of one group's 1-D
        weights for every k; ``s`` the weights' importances (None, or all zero: all equal)."""
        if s is not None and not np.any(s > 0):
            s = None
        out = [(self._stored(c), labels, err) for c, labels, err in self._clusters(clusterer, w, ks, s)]
        if self.bits in STORED:  # the proxy is the error of the values actually stored
            out = [(c, labels, float(np.sum((1.0 if s is None else s) * (w - c[labels]) ** 2)))
                   for c, labels, _ in out]
        return out

    def _clusters(self, clusterer: Clusterer, w: np.ndarray, ks: list[int], s: np.ndarray | None) -> list[tuple]:
        zero = w == 0
        if not self.preserve_zeros or not zero.any():
            found = clusterer.cluster_many(w, ks) if s is None else clusterer.cluster_many(w, ks, s)
            return [(c.centroids, c.labels, c.inertia) for c in found]
        nonzero = w[~zero]
        s_nonzero = None if s is None or not np.any(s[~zero] > 0) else s[~zero]
        out = []
        wanted = sorted({min(k - 1, nonzero.size) for k in ks if k > 1 and nonzero.size})
        found = {}
        if wanted:
            many = clusterer.cluster_many(nonzero, wanted) if s_nonzero is None else \
                clusterer.cluster_many(nonzero, wanted, s_nonzero)
            found = dict(zip(wanted, many))
        for k in ks:
            m = min(k - 1, nonzero.size)
            if m == 0:  # only the zero is stored
                err = nonzero ** 2 if s_nonzero is None else s_nonzero * nonzero ** 2
                out.append((np.zeros(1), np.zeros(w.size, np.int64), float(np.sum(err))))
                continue
            c = found[m]
            at = int(np.searchsorted(c.centroids, 0.0))
            has_zero = at < c.centroids.size and c.centroids[at] == 0.0
            codebook = c.centroids if has_zero else np.insert(c.centroids, at, 0.0)
            labels = np.full(w.size, at, dtype=np.int64)
            labels[~zero] = c.labels + ((c.labels >= at) & (not has_zero))
            out.append((codebook, labels, c.inertia))
        return out

    def _stored(self, codebook: np.ndarray) -> np.ndarray:
        """The codebook as B-bit values (see the module docstring), float64."""
        if self.bits == 16:
            return codebook.astype(np.float16).astype(np.float64)
        if self.bits == 8:
            return affine_grid(codebook)
        return codebook

    def apply(self, weights: np.ndarray, knob: int, *, layer: LayerInfo,
              clusterer: Clusterer | None = None, importance: np.ndarray | None = None) -> Approximated:
        return self.apply_many(weights, [knob], layer=layer, clusterer=clusterer, importance=importance)[0]

    def apply_many(self, weights: np.ndarray, knobs: Sequence[int], *, layer: LayerInfo,
                   clusterer: Clusterer | None = None, importance: np.ndarray | None = None) -> list[Approximated]:
        if clusterer is None:
            raise InvalidSettingError("weight sharing needs a clusterer; pass clusterer= to explore")
        if self.needs_importances and importance is None:
            raise InvalidSettingError(
                f"weight sharing with sensitivity={self.sensitivity!r} clusters by per-weight importances; pass "
                f"importance= (an array of layer {layer.name!r}'s shape, e.g. from the backend's importances())")
        ks = [self._effective_k(layer, self.check_knob(layer, kn)) for kn in knobs]
        w = np.asarray(weights)
        s = None
        if self.needs_importances:
            s = np.asarray(importance, dtype=np.float64)
            if s.shape != w.shape:
                raise InvalidSettingError(f"importance for layer {layer.name!r} has shape {s.shape}; give one value "
                                          f"per weight, shape {w.shape}")
        order, groups, granularity = self._groups(layer)
        if groups == 1:
            parts = self._cluster_group(clusterer, w.astype(np.float64).ravel(), ks, None if s is None else s.ravel())
            return [Approximated(_expand(codebook, labels, w.shape, order), float(inertia),
                                 {"codebook": codebook, "indices": labels})
                    for codebook, labels, inertia in parts]
        rows = np.transpose(w, order).astype(np.float64).reshape(groups, -1)
        s_rows = None if s is None else np.transpose(s, order).reshape(groups, -1)
        per_group = [self._cluster_group(clusterer, row, ks, None if s_rows is None else s_rows[g])
                     for g, row in enumerate(rows)]
        out = []
        for i, k in enumerate(ks):
            codebook = np.empty((groups, k))
            indices = np.empty(rows.shape, dtype=np.int64)
            inertia = 0.0
            for g, parts in enumerate(per_group):
                values, labels, err = parts[i]
                codebook[g, :values.size] = values
                codebook[g, values.size:] = values[-1]
                indices[g] = labels
                inertia += float(err)
            out.append(Approximated(_expand(codebook, indices, w.shape, order), inertia,
                                    {"codebook": codebook, "indices": indices, "granularity": granularity}))
        return out

    def decode(self, payload: dict, layer: LayerInfo) -> np.ndarray:
        """The float32 weights a payload stands for (what ``apply`` wrote)."""
        order, _, _ = self._groups(layer)
        return _expand(np.asarray(payload["codebook"], dtype=np.float64),
                       np.asarray(payload["indices"], dtype=np.int64), tuple(layer.shape), order)


def affine_grid(values: np.ndarray, levels: int = 256) -> np.ndarray:
    """``values`` rounded to an asymmetric ``levels``-step affine grid ``(q - zero_point)·scale`` that
    spans them and holds 0 exactly (the 8-bit affine quantisation of PyTorch and TFLite)."""
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = (hi - lo) / (levels - 1)
    if scale == 0.0:
        return np.zeros_like(values, dtype=np.float64)
    zero_point = round(-lo / scale)
    q = np.clip(np.round(values / scale) + zero_point, 0, levels - 1)
    return (q - zero_point) * scale


def _expand(codebook: np.ndarray, indices: np.ndarray, shape: tuple, order: tuple) -> np.ndarray:
    """float32 weights of ``shape`` from a codebook and indices; ``apply`` and ``decode`` share it,
    so a payload restores exactly what was scored."""
    if codebook.ndim == 1:
        return codebook[indices].reshape(shape).astype(np.float32)
    shared = np.take_along_axis(codebook, indices, axis=1).reshape(tuple(shape[a] for a in order))
    return np.transpose(shared, np.argsort(order)).astype(np.float32)


@hookimpl
def wsx_approximations():
    return [WeightSharing]
