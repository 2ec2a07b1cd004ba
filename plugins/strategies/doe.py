"""Designs of experiments over a discrete product space (thesis Table 5.2).

Each sampler returns an int array of shape (n, d) whose column j holds indices in [0, sizes[j]):
gene j picks one of layer j's candidate knob values. Rows are distinct as long as the space allows.
The samplers come from scipy.stats.qmc and scikit-learn; the discrete mapping is
``floor(u * size)`` for a point u in the unit cube.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

POOL_FACTOR = 20  # candidate-pool size per wanted sample for pool-based designs (maximin, kmeans)


def _uniform(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random((n, d))


def _lhs(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.LatinHypercube(d, seed=rng).random(n)


def _lhs_spacefilling(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Latin hypercube improved for space filling (centred-discrepancy optimisation, scipy)."""
    from scipy.stats import qmc

    return qmc.LatinHypercube(d, optimization="random-cd", seed=rng).random(n)


def _halton(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.Halton(d, scramble=True, seed=rng).random(n)


def _maximin(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy maximin design: from a random pool, repeatedly add the point farthest from those chosen."""
    pool = rng.random((max(POOL_FACTOR * n, n), d))
    chosen = [int(rng.integers(len(pool)))]
    dist = np.linalg.norm(pool - pool[chosen[0]], axis=1)
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pool - pool[nxt], axis=1))
    return pool[chosen]


def _kmeans(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random k-means cluster design (thesis' best): cluster a random pool into n groups with
    scikit-learn's KMeans and keep the pool point nearest each centroid."""
    from sklearn.cluster import KMeans

    pool = rng.random((max(POOL_FACTOR * n, n), d))
    if n >= len(pool):
        return pool
    from sklearn.metrics import pairwise_distances_argmin

    km = KMeans(n_clusters=n, n_init=1, max_iter=50, random_state=int(rng.integers(2**31 - 1))).fit(pool)
    return pool[pairwise_distances_argmin(km.cluster_centers_, pool)]


SAMPLERS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "uniform": _uniform,
    "lhs": _lhs,
    "lhs-spacefilling": _lhs_spacefilling,
    "halton": _halton,
    "maximin": _maximin,
    "kmeans": _kmeans,
}


def space_size(sizes: Sequence[int]) -> int:
    return int(np.prod([int(s) for s in sizes], dtype=object))


def sample(name: str, sizes: Sequence[int], n: int, seed, exclude: set | None = None) -> np.ndarray:
    """``n`` distinct index rows from design ``name`` over the product of ``sizes``.

    Rows in ``exclude`` (tuples) and duplicates created by the discrete mapping are replaced by
    uniform random rows, so the count is exact unless the space (minus ``exclude``) is smaller.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown design {name!r}; use one of {sorted(SAMPLERS)}")
    sizes = np.asarray([int(s) for s in sizes], dtype=int)
    rng = np.random.default_rng(seed)
    exclude = set(exclude or ())
    room = space_size(sizes) - len(exclude)
    n = int(min(n, max(room, 0)))
    if n <= 0:
        return np.zeros((0, len(sizes)), dtype=int)
    u = SAMPLERS[name](len(sizes), n, rng)
    rows = np.minimum(np.floor(u * sizes).astype(int), sizes - 1)
    seen, out = set(exclude), []
    for row in map(tuple, rows):
        if row not in seen:
            seen.add(row)
            out.append(row)
    if room <= 4 * n and len(out) < n:  # small space: enumerate what is left
        rest = [r for r in np.ndindex(*sizes) if r not in seen]
        pick = rng.permutation(len(rest))[: n - len(out)]
        out.extend(rest[i] for i in pick)
    while len(out) < n:
        row = tuple(int(v) for v in rng.integers(0, sizes))
        if row not in seen:
            seen.add(row)
            out.append(row)
    return np.asarray(out, dtype=int).reshape(-1, len(sizes))
