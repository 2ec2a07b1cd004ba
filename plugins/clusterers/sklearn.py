"""Reference clusterer: scikit-learn's KMeans (slow, n x k distances, but a well-known yardstick)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from wsx.clusterer import Clusterer, Clustering
from wsx.hookspecs import hookimpl


_THREADED_FROM = 100_000  # weights


class SklearnClusterer(Clusterer):
    """scikit-learn ``KMeans`` (k-means++ init, Lloyd), kept as a quality and speed reference.

    ``n_init`` defaults to 10 restarts: a single k-means++ run stalls 5-20 % above the optimum on
    small layers, which would make a poor yardstick (the clusterer benchmark times ``n_init=1`` too).
    """

    name = "sklearn"
    priority: ClassVar[int] = 0  # the slowest: never picked by clusterer=None while another is usable
    supports_sample_weight: ClassVar[bool] = True

    def __init__(self, *, seed: int = 0, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4):
        self.seed = seed
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol

    def _cluster(self, w: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> Clustering:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        km = KMeans(n_clusters=k, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                    random_state=self.seed)
        # small layers fit single-threaded: OpenMP start-up and spinning cost more than they save
        with threadpool_limits(1 if w.size < _THREADED_FROM else None):
            km.fit(w.reshape(-1, 1), sample_weight=sample_weight)
        centers = km.cluster_centers_.ravel()
        order = np.argsort(centers)
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        labels = rank[km.labels_]
        centroids = centers[order]
        sq = (w - centroids[labels]) ** 2
        inertia = float(sq.sum() if sample_weight is None else (sample_weight * sq).sum())
        return Clustering(centroids, labels.astype(np.int64), inertia)


@hookimpl
def wsx_clusterers():
    return [SklearnClusterer]
