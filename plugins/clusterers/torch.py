"""The sorted 1-D k-means of ``sorted1d`` with the layer-sized work in torch, on CPU or CUDA.

Why: a torch model's weights already live on its device; sorting, prefix sums and labels stay there
(``cluster_tensor``), and only O(k) numbers cross to the host per step. Results equal ``sorted1d``'s
up to floating-point summation order. torch is imported inside methods, so ``import wsx`` never
imports it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from wsx.clusterer import Clustering, _check_k, _check_weights
from wsx.hookspecs import hookimpl
from wsx.plugins import module_available

from .sorted1d import Sorted1DClusterer, SortedWeights, _stats


@dataclass(frozen=True)
class TensorClustering:
    """``Clustering`` with torch tensors on the input's device (centroids float64 ascending,
    labels int64 in input order)."""

    centroids: Any
    labels: Any
    inertia: float

    def reconstruct(self):
        return self.centroids[self.labels]

    def numpy(self) -> Clustering:
        return Clustering(self.centroids.cpu().numpy(), self.labels.cpu().numpy(), self.inertia)


class TorchSortedWeights(SortedWeights):
    """``SortedWeights`` whose O(n) arrays are float64 torch tensors on one device (``s``: sample
    weights, a tensor on the same device, or None)."""

    def __init__(self, t, s=None):
        import torch

        self.torch = torch
        self.device = t.device
        self.n = n = int(t.numel())
        self.sorted, self.order = torch.sort(t)
        self.p0 = None
        if s is not None:
            sw = s[self.order]
            self.p0 = torch.zeros(n + 1, dtype=torch.float64, device=self.device)
            torch.cumsum(sw, 0, out=self.p0[1:])
            self.mean = float((sw * self.sorted).sum() / self.p0[-1])
        else:
            self.mean = float(self.sorted.mean())
        x = self.sorted - self.mean  # centred: keeps the prefix sums well conditioned
        self.p1 = torch.zeros(n + 1, dtype=torch.float64, device=self.device)
        self.p2 = torch.zeros(n + 1, dtype=torch.float64, device=self.device)
        sx = x if s is None else sw * x
        torch.cumsum(sx, 0, out=self.p1[1:])
        torch.cumsum(sx * x, 0, out=self.p2[1:])
        # on CPU the O(k) steps read the same memory through numpy views: no per-call tensor overhead
        self._host = (self.sorted.numpy(), self.p1.numpy(), self.p2.numpy(),
                      None if s is None else self.p0.numpy()) if t.device.type == "cpu" else None

    def _index(self, pos: np.ndarray):
        return self.torch.as_tensor(np.asarray(pos, dtype=np.int64), device=self.device)

    def search(self, values: np.ndarray) -> np.ndarray:
        if self._host is not None:
            return np.searchsorted(self._host[0], values, side="left").astype(np.int64)
        v = self.torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device)
        return self.torch.searchsorted(self.sorted, v, side="left").cpu().numpy().astype(np.int64)

    def prefix(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._host is not None:
            return self._host[1][pos], self._host[2][pos]
        idx = self._index(pos)
        return self.p1[idx].cpu().numpy(), self.p2[idx].cpu().numpy()

    def values(self, pos: np.ndarray) -> np.ndarray:
        if self._host is not None:
            return self._host[0][pos]
        return self.sorted[self._index(pos)].cpu().numpy()

    def counts(self, pos: np.ndarray) -> np.ndarray:
        if self.p0 is None:
            return np.asarray(pos, dtype=np.float64)
        if self._host is not None:
            return self._host[3][pos]
        return self.p0[self._index(pos)].cpu().numpy()

    def at_mass(self, fractions: np.ndarray) -> np.ndarray:
        if self._host is not None:
            p0 = self._host[3]
            return np.minimum(np.searchsorted(p0[1:], fractions * p0[-1]), self.n - 1).astype(np.int64)
        total = float(self.p0[-1])
        v = self.torch.as_tensor(np.asarray(fractions, dtype=np.float64) * total, device=self.device)
        return np.minimum(self.torch.searchsorted(self.p0[1:], v).cpu().numpy(), self.n - 1).astype(np.int64)

    def distinct(self) -> int:
        return int((self.sorted[1:] != self.sorted[:-1]).sum()) + 1

    def labels_tensor(self, bounds: np.ndarray):
        torch = self.torch
        inner = self._index(bounds[1:-1])
        by_rank = torch.searchsorted(inner, torch.arange(self.n, device=self.device), right=True)
        out = torch.empty(self.n, dtype=torch.int64, device=self.device)
        out[self.order] = by_rank
        return out

    def labels(self, bounds: np.ndarray) -> np.ndarray:
        return self.labels_tensor(bounds).cpu().numpy()


class TorchClusterer(Sorted1DClusterer):
    """``sorted1d`` in torch: ``cluster`` takes numpy like every clusterer (working on ``device``,
    default CPU); ``cluster_tensor`` / ``cluster_many_tensor`` take a tensor and keep everything on
    its device."""

    name = "torch"
    extra = "torch"
    priority: ClassVar[int] = 50

    def __init__(self, *, seed: int = 0, init: str = "density", refine: bool = True, max_iter: int = 1000,
                 device: str | None = None):
        super().__init__(seed=seed, init=init, refine=refine, max_iter=max_iter)
        self.device = device

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return module_available("torch", cls.extra)

    def _prepare(self, w: np.ndarray, s: np.ndarray | None = None) -> TorchSortedWeights:
        import torch

        device = self.device or "cpu"
        return TorchSortedWeights(torch.as_tensor(w, dtype=torch.float64, device=device),
                                  None if s is None else torch.as_tensor(s, dtype=torch.float64, device=device))

    # -- tensors in, tensors out ------------------------------------------------------------------
    def _as_1d_tensor(self, t):
        import torch

        t = torch.as_tensor(t).detach().reshape(-1).to(torch.float64)
        _check_weights(t.numel(), bool(torch.isfinite(t).all()))
        return t

    def _trivial_tensor(self, data: TorchSortedWeights, k: int) -> TensorClustering:
        """k = 1 (the weighted mean), or k >= the number of distinct values: exact, no iteration."""
        torch = data.torch
        if k == 1:
            mean = torch.full((1,), data.mean, dtype=torch.float64, device=data.device)
            labels = torch.zeros(data.n, dtype=torch.int64, device=data.device)
            mass = float(data.counts(data.n))
            return TensorClustering(mean, labels, float(data.p2[-1] - data.p1[-1] ** 2 / mass))
        uniq, inv = torch.unique(data.sorted, sorted=True, return_inverse=True)
        labels = torch.empty(data.n, dtype=torch.int64, device=data.device)
        labels[data.order] = inv
        return TensorClustering(uniq, labels, 0.0)

    def _finish_tensor(self, data: TorchSortedWeights, b: np.ndarray) -> TensorClustering:
        cnt, t1, sse = _stats(data, b)
        c = data.torch.as_tensor(t1 / cnt + data.mean, dtype=data.torch.float64, device=data.device)
        return TensorClustering(c, data.labels_tensor(b), float(sse.sum()))

    def cluster_many_tensor(self, weights, ks: Sequence[int], sample_weight=None) -> list[TensorClustering]:
        """Cluster a tensor (any shape, flattened) for every k, with optional sample weights (a tensor
        or array of one importance per weight); results stay on the tensor's device."""
        self._check_params()
        t = self._as_1d_tensor(weights)
        ks = [_check_k(k, t.numel()) for k in ks]
        s, scale = (None, 1.0) if sample_weight is None else self._sample_weight(
            sample_weight.detach().cpu().numpy() if hasattr(sample_weight, "detach") else sample_weight, t.numel())
        data = TorchSortedWeights(t, None if s is None else data_tensor(s, t.device))
        distinct = data.distinct()
        hard = [k for k in dict.fromkeys(ks) if 1 < k < distinct]
        found = dict(zip(hard, self._bounds_many(data, hard)))
        out = [self._trivial_tensor(data, k) if k not in found else self._finish_tensor(data, found[k]) for k in ks]
        return out if scale == 1.0 else [TensorClustering(c.centroids, c.labels, c.inertia * scale) for c in out]

    def cluster_tensor(self, weights, k: int, sample_weight=None) -> TensorClustering:
        return self.cluster_many_tensor(weights, [k], sample_weight)[0]


def data_tensor(s: np.ndarray, device):
    import torch

    return torch.as_tensor(s, dtype=torch.float64, device=device)


@hookimpl
def wsx_clusterers():
    return [TorchClusterer]
