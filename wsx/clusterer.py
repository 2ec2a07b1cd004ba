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
    ``inertia`` is sum_j (w_j - centroids[labels[j]])**2.
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
    """

    name: ClassVar[str] = ""
    extra: ClassVar[str | None] = None  # pip extra that provides the framework, if any

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, why and what to install)."""
        return True, ""

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def cluster(self, weights: np.ndarray, k: int) -> Clustering:
        w = _as_1d(weights)
        k = _check_k(k, w.size)
        trivial = _trivial(w, k)
        if trivial is not None:
            return trivial
        return self._cluster(w, k)

    def cluster_many(self, weights: np.ndarray, ks: Sequence[int]) -> list[Clustering]:
        """Cluster the same weights for several k (implementations may reuse sorting and warm starts)."""
        w = _as_1d(weights)
        return [self.cluster(w, k) for k in ks]

    @abstractmethod
    def _cluster(self, w: np.ndarray, k: int) -> Clustering:
        """Cluster 1-D float64 ``w`` (more than k distinct values) into k centroids."""


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


def _trivial(w: np.ndarray, k: int) -> Clustering | None:
    """Exact answers where no iteration is needed: k=1, or k at least the number of distinct values."""
    if k == 1:
        c = np.array([w.mean()])
        return Clustering(c, np.zeros(w.size, dtype=np.int64), float(((w - c[0]) ** 2).sum()))
    uniq, inv = np.unique(w, return_inverse=True)
    if uniq.size <= k:
        return Clustering(uniq, inv.astype(np.int64), 0.0)
    return None
