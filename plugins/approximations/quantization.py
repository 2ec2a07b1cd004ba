"""Quantization: per-layer uniform affine quantization of the weights (knob: bits per weight).

Each weight becomes a b-bit integer q with ``w ≈ (q - zero_point) * scale``; the range is
``[min(w, 0), max(w, 0)]`` so that 0 is exactly representable (pruned or padded zeros stay zeros)
and ``scale = range / (2**b - 1)``. ``granularity="tensor"`` uses one (scale, zero_point) per
layer, ``"channel"`` one per slice along ``channel_axis`` (0 for torch conv / linear weights, whose
output channels come first; -1 for Keras kernels, whose output channels come last).

Size (per layer of W weights, B = ``bits`` the baseline value width): ``W·b + n·2·B`` with n = 1
per tensor or the number of channels — every scale and zero-point is counted at B bits. Scales
are stored as float32, so an artifact reproduces the weights bit for bit.

Proxy: the squared quantization error summed over the layer (W × the quantization MSE), in the
same unit as weight sharing's inertia and pruning's removed norm. Knob values are listed
ascending (most compressive first); each is its own group in divide-and-conquer's layer-wise step,
as every bit-width is its own size level (the analogue of weight sharing's index bit-width).
"""
from __future__ import annotations

import numpy as np

from wsx.approximation import Approximated, Approximation
from wsx.clusterer import Clusterer
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo

GRANULARITIES = ("tensor", "channel")


def quantize(weights: np.ndarray, n_bits: int, axis: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, scale, zero_point) of ``weights`` on ``n_bits``; one (scale, zero_point) per slice
    along ``axis`` (None: per tensor). q has the weights' shape."""
    w = np.asarray(weights, dtype=np.float64)
    rows = _rows(w, axis)
    levels = 2 ** int(n_bits) - 1
    lo = np.minimum(rows.min(axis=1), 0.0)
    hi = np.maximum(rows.max(axis=1), 0.0)
    scale = ((hi - lo) / levels).astype(np.float32)  # stored width: float32
    scale[scale == 0] = 1.0  # an all-zero slice: any scale reproduces it
    s64 = scale.astype(np.float64)[:, None]
    zero_point = np.clip(np.round(-lo / s64[:, 0]), 0, levels).astype(np.int64)
    q = np.clip(np.round(rows / s64) + zero_point[:, None], 0, levels).astype(np.int64)
    return _unrows(q, w.shape, axis), scale, zero_point


def dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int | None) -> np.ndarray:
    """float32 weights back from (q, scale, zero_point), exactly as ``Quantization.apply`` makes them."""
    q = np.asarray(q, dtype=np.int64)
    s64 = np.asarray(scale, dtype=np.float32).astype(np.float64)[:, None]
    out = ((_rows(q, axis) - np.asarray(zero_point, dtype=np.int64)[:, None]) * s64).astype(np.float32)
    return _unrows(out, q.shape, axis)


def _rows(a: np.ndarray, axis: int | None) -> np.ndarray:
    """``a`` as one row per (scale, zero_point): the whole tensor, or one slice along ``axis``."""
    return a.reshape(1, -1) if axis is None else np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)


def _unrows(rows: np.ndarray, shape: tuple, axis: int | None) -> np.ndarray:
    """The inverse of ``_rows`` for a tensor of ``shape``."""
    if axis is None:
        return rows.reshape(shape)
    axis %= len(shape)  # callers may count from the end
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.moveaxis(rows.reshape(moved), 0, axis)


class Quantization(Approximation):
    """Uniform affine weight quantization per layer (knob: bits in [min_bits, max_bits]);
    proxy: summed squared quantization error.

    ``granularity`` is "tensor" or "channel"; ``channel_axis`` the axis of the channels for
    "channel" (negative values count from the end). ``bits`` is B, the baseline value width, at
    which every scale and zero-point is counted.
    """

    name = "quantization"
    knob_name = "bits"
    idempotent = True  # quantizing quantized weights again gives them back (wsx.testing checks it)

    def __init__(self, *, bits: int = 32, min_bits: int = 2, max_bits: int = 8, granularity: str = "tensor",
                 channel_axis: int = 0):
        self.bits = bits
        self.min_bits = min_bits
        self.max_bits = max_bits
        self.granularity = granularity
        self.channel_axis = channel_axis

    def _axis(self, layer: LayerInfo) -> int | None:
        """The channel axis for ``layer`` (None per tensor), validating the settings."""
        if self.granularity not in GRANULARITIES:
            raise InvalidSettingError(f"granularity={self.granularity!r} is unknown; use one of "
                                      f"{list(GRANULARITIES)}")
        if self.granularity == "tensor":
            return None
        ndim = len(layer.shape)
        if int(self.channel_axis) != self.channel_axis or not -ndim <= self.channel_axis < ndim:
            raise InvalidSettingError(f"channel_axis={self.channel_axis!r} does not exist in layer "
                                      f"{layer.name!r} of shape {tuple(layer.shape)}; use an axis in "
                                      f"[{-ndim}, {ndim - 1}] (0 for torch, -1 for Keras kernels)")
        return int(self.channel_axis) % ndim

    def _check_range(self) -> None:
        ok = all(isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in (self.min_bits, self.max_bits))
        if not ok or not 1 <= self.min_bits <= self.max_bits <= 32:
            raise InvalidSettingError(f"min_bits={self.min_bits!r}, max_bits={self.max_bits!r}: give whole "
                                      "numbers with 1 <= min_bits <= max_bits <= 32")

    def n_parameter_sets(self, layer: LayerInfo) -> int:
        """How many (scale, zero_point) pairs the layer stores."""
        axis = self._axis(layer)
        return 1 if axis is None else int(layer.shape[axis])

    def knob_values(self, layer: LayerInfo) -> list[int]:
        self._check_range()
        return list(range(int(self.min_bits), int(self.max_bits) + 1))

    def check_knob(self, layer: LayerInfo, knob) -> int:
        self._check_range()
        try:
            whole = int(knob) == knob
        except (TypeError, ValueError, OverflowError):
            whole = False
        if isinstance(knob, (bool, np.bool_)) or not whole or not self.min_bits <= int(knob) <= self.max_bits:
            raise InvalidSettingError(
                f"bits={knob!r} for layer {layer.name!r} is outside [{self.min_bits}, {self.max_bits}]; "
                "give a whole number of bits per weight in that range (set min_bits / max_bits to widen it)")
        return int(knob)

    def size_bits(self, layer: LayerInfo, knob) -> int:
        n_bits = self.check_knob(layer, knob)
        return int(layer.size) * n_bits + self.n_parameter_sets(layer) * 2 * int(self.bits)

    def apply(self, weights: np.ndarray, knob, *, layer: LayerInfo,
              clusterer: Clusterer | None = None) -> Approximated:
        n_bits = self.check_knob(layer, knob)
        axis = self._axis(layer)
        q, scale, zero_point = quantize(weights, n_bits, axis)
        approx = dequantize(q, scale, zero_point, axis)
        err = float(np.sum((np.asarray(weights, dtype=np.float64) - approx) ** 2))
        dtype = np.uint8 if n_bits <= 8 else np.uint16 if n_bits <= 16 else np.uint32
        return Approximated(approx, err, {"q": q.astype(dtype), "scale": scale, "zero_point": zero_point,
                                          "axis": axis, "bits": n_bits})

    def decode(self, payload: dict, layer: LayerInfo) -> np.ndarray:
        """The layer's weights back from a payload (what an artifact reader does)."""
        return dequantize(payload["q"], payload["scale"], payload["zero_point"], payload["axis"])


@hookimpl
def wsx_approximations():
    return [Quantization]
