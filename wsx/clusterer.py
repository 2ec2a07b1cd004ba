"""Clusterer interface: 1-D k-means over a layer's weights."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from .errors import InvalidSettingError, InvalidModelError


@dataclass(frozen=True)
class Clustering:
    """Result of clustering n weights into at most k shared values.

    ``centroids`` are sorted ascending, ``labels[j]`` indexes the centroid weight j maps to and
    ``inertia`` is sum_j s_j (w_j - centroids[labels[j]])**2, with s_j the sample weights (1 when none
    were given).
    """

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float

    def reconstruct(self) -> np.ndarray:
        return self.centroids[self.labels]


class Clusterer(ABC):
    """Clusters 1-D weight arrays. Deterministic for a given ``seed``.

    Subclasses implement ``_cluster(w, k)`` on a 1-D float64 array with 1 <= k < number of distinct
    values; the public methods validate input and handle the trivial cases.

    **Sample weights** (per-weight importances, e.g. squared gradients): a clusterer that declares
    ``supports_sample_weight`` minimises the weighted inertia sum_j s_j (w_j - c_j)**2, each centroid
    the weighted mean of its cluster; it implements ``_cluster(w, k, sample_weight=None)``. The public
    methods check the weights (one finite, non-negative value per weight, not all zero), raise those
    below 1e-12 of the largest to that (so every cluster keeps a defined mean), and hand equal weights
    to the unweighted path (the same clustering; the inertia scaled by the weight).
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # pip extra that provides the framework, if any
    supports_sample_weight: ClassVar[bool] = False

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, why and what to install)."""
        return True, ""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def cluster(self, weights: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> Clustering:
        w = _as_1d(weights)
        k = _check_k(k, w.size)
        s, scale = self._sample_weight(sample_weight, w.size)
        trivial = _trivial(w, k, s)
        if trivial is not None:
            return _scaled(trivial, scale)
        return _scaled(self._cluster(w, k) if s is None else self._cluster(w, k, sample_weight=s), scale)

    def cluster_many(self, weights: np.ndarray, ks: Sequence[int],
                     sample_weight: np.ndarray | None = None) -> list[Clustering]:
        """Cluster the same weights for several k (implementations may reuse sorting and warm starts)."""
        w = _as_1d(weights)
        if sample_weight is None:  # subclasses written before sample weights override cluster(w, k)
            return [self.cluster(w, k) for k in ks]
        return [self.cluster(w, k, sample_weight) for k in ks]

    @abstractmethod
    def _cluster(self, w: np.ndarray, k: int) -> Clustering:
        """Cluster 1-D float64 ``w`` (more than k distinct values) into k centroids."""

    def _sample_weight(self, sample_weight, n: int) -> tuple[np.ndarray | None, float]:
        """(checked sample weights or None for equal ones, the factor equal weights scale the inertia by)."""
        if sample_weight is None:
            return None, 1.0
        if not type(self).supports_sample_weight:
            raise InvalidSettingError(f"clusterer {self.name!r} does not take sample weights (per-weight "
                                      "importances); use one that does, such as 'sorted1d'")
        s = check_sample_weight(sample_weight, n)
        if s[0] == s[-1] and np.all(s == s[0]):
            return None, float(s[0])
        return np.maximum(s, s.max() * 1e-12), 1.0


def check_sample_weight(sample_weight, n: int) -> np.ndarray:
    """Sample weights as a float64 vector of ``n`` finite, non-negative values, not all zero."""
    try:
        s = np.asarray(sample_weight, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise InvalidSettingError(f"sample_weight must be an array of numbers, got {type(sample_weight).__name__}") \
            from None
    if s.size != n:
        raise InvalidSettingError(f"sample_weight has {s.size} values for {n} weights; give one per weight")
    if not np.all(np.isfinite(s)) or (s.size and s.min() < 0):
        raise InvalidSettingError("sample_weight holds negative, NaN or Inf values; importances must be "
                                  "finite and non-negative")
    if s.size and s.max() <= 0:
        raise InvalidSettingError("sample_weight is zero everywhere; give at least one positive importance")
    return s


def _scaled(res: Clustering, scale: float) -> Clustering:
    """The clustering of equal sample weights: the unweighted one, its inertia times the weight."""
    return res if scale == 1.0 else Clustering(res.centroids, res.labels, res.inertia * scale)


def _as_1d(weights) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).ravel()
    _check_weights(w.size, bool(np.all(np.isfinite(w))))
    return w


def _check_weights(size: int, finite: bool) -> None:
    """The weight checks every clusterer shares, whatever array type holds the weights."""
    if size == 0:
        raise InvalidModelError("cannot cluster an empty weight tensor; exclude that layer")
    if not finite:
        raise InvalidModelError(
            "weights contain NaN or Inf; fix the model (or exclude the layer) before exploring")


def _check_k(k, n: int) -> int:
    if isinstance(k, (bool, np.bool_)) or int(k) != k:
        raise InvalidSettingError(f"k must be a whole number, got {k!r}")
    k = int(k)
    if k < 1 or k > n:
        raise InvalidSettingError(f"k={k} is outside [1, {n}] for a tensor of {n} weights; "
                                  "pick k between 1 and the number of weights")
    return k


def _trivial(w: np.ndarray, k: int, s: np.ndarray | None = None) -> Clustering | None:
    """Exact answers where no iteration is needed: k=1 (the weighted mean), or k at least the number
    of distinct values."""
    if k == 1:
        c = np.array([w.mean() if s is None else np.average(w, weights=s)])
        sq = (w - c[0]) ** 2
        return Clustering(c, np.zeros(w.size, dtype=np.int64), float(sq.sum() if s is None else (s * sq).sum()))
    uniq, inv = np.unique(w, return_inverse=True)
    if uniq.size <= k:
        return Clustering(uniq, inv.astype(np.int64), 0.0)
    return None
