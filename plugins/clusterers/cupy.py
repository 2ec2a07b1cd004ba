"""The sorted 1-D k-means of ``sorted1d`` with the layer-sized work on a CUDA GPU through CuPy.

Why: sorting and prefix sums of the largest layers are the only O(n) work; on a GPU they take a
fraction of the CPU's time and only O(k) numbers cross back per step. The clusterer registers
everywhere and reports itself unavailable without CuPy or a CUDA device. Results equal
``sorted1d``'s up to floating-point summation order.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from wsx.hookspecs import hookimpl
from wsx.plugins import module_available

from .sorted1d import Sorted1DClusterer, SortedWeights


class CupySortedWeights(SortedWeights):
    """``SortedWeights`` whose O(n) arrays are float64 CuPy arrays on the current device (``s``:
    sample weights, or None)."""

    def __init__(self, w, s=None):
        import cupy as cp

        self.cp = cp
        g = cp.asarray(w, dtype=cp.float64)
        self.n = n = int(g.size)
        self.order = cp.argsort(g)
        self.sorted = g[self.order]
        self.p0 = None
        if s is not None:
            sw = cp.asarray(s, dtype=cp.float64)[self.order]
            self.p0 = cp.zeros(n + 1, dtype=cp.float64)
            self.p0[1:] = cp.cumsum(sw)
            self.mean = float((sw * self.sorted).sum() / self.p0[-1])
        else:
            self.mean = float(self.sorted.mean())
        x = self.sorted - self.mean  # centred: keeps the prefix sums well conditioned
        sx = x if s is None else sw * x
        self.p1 = cp.zeros(n + 1, dtype=cp.float64)
        self.p2 = cp.zeros(n + 1, dtype=cp.float64)
        self.p1[1:] = cp.cumsum(sx)
        self.p2[1:] = cp.cumsum(sx * x)

    def search(self, values: np.ndarray) -> np.ndarray:
        v = self.cp.asarray(np.asarray(values, dtype=np.float64))
        return self.cp.asnumpy(self.cp.searchsorted(self.sorted, v, side="left")).astype(np.int64)

    def prefix(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = self.cp.asarray(np.asarray(pos, dtype=np.int64))
        return self.cp.asnumpy(self.p1[idx]), self.cp.asnumpy(self.p2[idx])

    def values(self, pos: np.ndarray) -> np.ndarray:
        return self.cp.asnumpy(self.sorted[self.cp.asarray(np.asarray(pos, dtype=np.int64))])

    def counts(self, pos: np.ndarray) -> np.ndarray:
        if self.p0 is None:
            return np.asarray(pos, dtype=np.float64)
        return self.cp.asnumpy(self.p0[self.cp.asarray(np.asarray(pos, dtype=np.int64))])

    def at_mass(self, fractions: np.ndarray) -> np.ndarray:
        v = self.cp.asarray(np.asarray(fractions, dtype=np.float64)) * self.p0[-1]
        return np.minimum(self.cp.asnumpy(self.cp.searchsorted(self.p0[1:], v)), self.n - 1).astype(np.int64)

    def distinct(self) -> int:
        return int((self.sorted[1:] != self.sorted[:-1]).sum()) + 1

    def labels_device(self, bounds: np.ndarray):
        """Labels in input order as a CuPy int64 array."""
        cp = self.cp
        inner = cp.asarray(np.asarray(bounds[1:-1], dtype=np.int64))
        by_rank = cp.searchsorted(inner, cp.arange(self.n, dtype=cp.int64), side="right")
        out = cp.empty(self.n, dtype=cp.int64)
        out[self.order] = by_rank
        return out

    def labels(self, bounds: np.ndarray) -> np.ndarray:
        return self.cp.asnumpy(self.labels_device(bounds))


class CupyClusterer(Sorted1DClusterer):
    """``sorted1d`` with sorting, prefix sums and labels on a CUDA GPU (CuPy); numpy in and out."""

    name = "cupy"
    extra = "cupy"
    priority: ClassVar[int] = 80  # below sorted1d: host<->device round trips per step cost more than
    #                               they save on typical layers; pick it explicitly for huge ones

    @classmethod
    def available(cls) -> tuple[bool, str]:
        found = module_available("cupy", cls.extra)
        if not found[0]:
            return found
        try:
            import cupy

            if cupy.cuda.runtime.getDeviceCount() < 1:
                return False, "cupy is installed but no CUDA device is visible"
        except Exception as exc:  # no driver, no runtime: unavailable, never an import-time failure
            return False, f"cupy is installed but CUDA is not usable here ({type(exc).__name__}: {exc})"
        return True, ""

    def _prepare(self, w: np.ndarray, s: np.ndarray | None = None) -> CupySortedWeights:
        return CupySortedWeights(w, s)


@hookimpl
def wsx_clusterers():
    return [CupyClusterer]
