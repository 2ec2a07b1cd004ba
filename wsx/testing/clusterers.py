"""Conformance suite for Clusterer plugins, checked on typical (Laplacian-like) weights.

    from wsx.testing.clusterers import check_clusterer
    check_clusterer(MyClusterer)          # raises AssertionError naming the broken rule

Third-party clusterers run it in their own tests; wsx runs it over every registered, available
clusterer. ``CHECKS`` maps a readable name to each check so a test suite can parametrise over them.

What is checked, and why the rest of wsx needs it:

- parameters: keyword-only, stored under their own names, ``get_params`` rebuilds an equal object
  (results record them and ``wsx.apply`` rebuilds the clusterer from them); ``name`` set,
  ``available()`` a (bool, str) pair, ``priority`` an int when present (``clusterer=None`` picks the
  highest);
- shapes: int64 labels, one per weight in input order, indexing k strictly ascending float centroids,
  every centroid used; 2-D and float32 input accepted, the input left unmodified;
- inertia: equal to the squared error recomputed from centroids and labels (it is the proxy error);
  labels point at the nearest centroid (a k-means fixed point: what ``apply`` writes is the best the
  codebook can do);
- determinism: a rebuilt object with the same seed gives the same bits;
- trivial cases: k = 1 gives the mean, k >= the number of distinct values reproduces the weights;
- quality: inertia within ``rtol`` (2 %) of the exact optimum on small inputs (the ``kmeans1d``
  package when installed, else an exact dynamic programme shipped here);
- ``cluster_many``: one result per k, each no worse than ``cluster`` for that k;
- errors: a k outside [1, n] or not whole raises ``InvalidSettingError``; NaN, Inf or an empty
  tensor raises ``InvalidModelError``;
- sample weights (per-weight importances), for clusterers that declare ``supports_sample_weight``:
  the inertia is the weighted squared error, each centroid the weighted mean of its cluster, labels
  the nearest centroid, within ``rtol`` of the exact weighted optimum (a weighted dynamic programme)
  on small inputs with heavy-tailed importances, ``cluster_many`` no worse than ``cluster``, equal
  weights give the unweighted clustering, and bad weights raise ``InvalidSettingError``; a clusterer
  without the capability must refuse them with ``InvalidSettingError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..clusterer import Clusterer, Clustering
from ..errors import InvalidModelError, InvalidSettingError
from ._common import check_init_params

__all__ = ["CHECKS", "Context", "check_clusterer", "checks", "context", "optimal_inertia", "typical_importances",
           "typical_weights"]


def typical_weights(n: int, seed: int = 0, *, kind: str = "mixture") -> np.ndarray:
    """Trained-looking float32 weights: ``"laplace"``, ``"gauss"``, or a ``"mixture"`` of a peaked
    Laplacian (70 %) and a wider, shifted Gaussian (30 %), as real conv layers look."""
    rng = np.random.default_rng(seed)
    if kind == "laplace":
        w = rng.laplace(0.0, 0.05, n)
    elif kind == "gauss":
        w = rng.normal(0.0, 0.05, n)
    elif kind == "mixture":
        w = np.where(rng.random(n) < 0.7, rng.laplace(0.0, 0.03, n), rng.normal(0.01, 0.06, n))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return w.astype(np.float32)


def typical_importances(n: int, seed: int = 0) -> np.ndarray:
    """Heavy-tailed positive per-weight importances (squared gradients span orders of magnitude)."""
    return np.random.default_rng(seed).lognormal(0.0, 1.5, n)


def optimal_inertia(weights: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> float:
    """The exact minimum k-means inertia of 1-D ``weights`` (weighted by ``sample_weight`` when
    given): from ``kmeans1d`` when installed and unweighted, else from an O(k n^2) dynamic programme
    (fine for a few hundred weights)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    if sample_weight is not None:
        return _dp_inertia(w, k, np.asarray(sample_weight, dtype=np.float64).ravel())
    try:
        import kmeans1d
    except ImportError:
        return _dp_inertia(w, k)
    labels, centroids = kmeans1d.cluster(w, k)
    c = np.asarray(centroids, dtype=np.float64)
    return float(np.sum((w - c[np.asarray(labels)]) ** 2))


def _dp_inertia(w: np.ndarray, k: int, s: np.ndarray | None = None) -> float:
    order = np.argsort(w, kind="stable")
    x = w[order]
    s = np.ones_like(x) if s is None else s[order]
    n = x.size
    k = min(k, n)
    x = x - np.average(x, weights=s)
    p0 = np.concatenate(([0.0], np.cumsum(s)))
    p1 = np.concatenate(([0.0], np.cumsum(s * x)))
    p2 = np.concatenate(([0.0], np.cumsum(s * x * x)))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")  # segment [i, j)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = (p2[j] - p2[i]) - (p1[j] - p1[i]) ** 2 / (p0[j] - p0[i])
    cost = np.where(j > i, np.maximum(cost, 0.0), np.inf)
    best = cost[0].copy()  # one cluster covering [0, j)
    for _ in range(k - 1):
        best = np.min(best[:, None] + cost, axis=0)
    return float(best[n])


# -- inputs the checks share -----------------------------------------------------------------------
QUALITY_CASES = (("laplace", 400, 2), ("laplace", 400, 3), ("mixture", 500, 5), ("gauss", 300, 8),
                 ("mixture", 600, 8), ("laplace", 250, 4))


@dataclass
class Context:
    """What the checks share: the clusterer class, its options, tolerances and inputs."""

    cls: type
    params: dict = field(default_factory=dict)
    rtol: float = 0.02  # allowed excess inertia over the optimum on the quality cases
    weighted_rtol: float = 0.02  # the same with heavy-tailed sample weights
    seed: int = 0
    quality_cases: tuple = QUALITY_CASES

    def make(self, **overrides) -> Clusterer:
        return self.cls(**{"seed": self.seed, **self.params, **overrides})

    def weights(self, n: int = 300, seed: int | None = None, kind: str = "mixture") -> np.ndarray:
        return typical_weights(n, self.seed if seed is None else seed, kind=kind)


def _name(ctx: Context) -> str:
    return ctx.cls.__name__


def _assert_valid(ctx: Context, res: Clustering, w: np.ndarray, k: int, what: str,
                  sample_weight: np.ndarray | None = None) -> None:
    name = _name(ctx)
    flat = np.asarray(w, dtype=np.float64).ravel()
    distinct = np.unique(flat).size
    assert isinstance(res, Clustering), f"{name}.{what} must return a Clustering, got {type(res).__name__}"
    c, labels = np.asarray(res.centroids), np.asarray(res.labels)
    assert c.ndim == 1 and np.issubdtype(c.dtype, np.floating), f"{name}.{what}: centroids must be 1-D floats"
    assert c.size == min(k, distinct), \
        f"{name}.{what}: {c.size} centroids for k={k} on {distinct} distinct values (expected {min(k, distinct)})"
    assert np.all(np.isfinite(c)), f"{name}.{what}: non-finite centroids"
    assert np.all(np.diff(c) > 0), f"{name}.{what}: centroids must be strictly ascending"
    assert labels.shape == (flat.size,) and labels.dtype == np.int64, \
        f"{name}.{what}: labels must be int64 of shape ({flat.size},), got {labels.dtype} {labels.shape}"
    assert labels.min() >= 0 and labels.max() < c.size, f"{name}.{what}: labels outside [0, {c.size})"
    assert np.unique(labels).size == c.size, f"{name}.{what}: some centroids have no weight (empty clusters)"
    s = np.ones_like(flat) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
    sse = float(np.sum(s * (flat - c[labels]) ** 2))
    assert np.isclose(res.inertia, sse, rtol=1e-7, atol=1e-12 * max(1.0, float(np.sum(s * flat ** 2)))), \
        f"{name}.{what}: inertia {res.inertia!r} differs from the recomputed (weighted) squared error {sse!r}"
    nearest = np.abs(flat[:, None] - c[None, :]).min(axis=1)
    mine = np.abs(flat - c[labels])
    assert np.all(mine <= nearest + 1e-12 * (1 + np.abs(flat))), \
        f"{name}.{what}: some labels do not point at the nearest centroid"


# -- the checks ------------------------------------------------------------------------------------
def check_params(ctx: Context) -> None:
    cls, name = ctx.cls, _name(ctx)
    assert issubclass(cls, Clusterer), f"{name} must subclass wsx.Clusterer"
    assert isinstance(cls.name, str) and cls.name, f"{name}.name must be a non-empty string"
    ok = cls.available()
    assert isinstance(ok, tuple) and len(ok) == 2 and isinstance(ok[0], bool) and isinstance(ok[1], str), \
        f"{name}.available() must return (bool, str)"
    prio = getattr(cls, "priority", 0)
    assert isinstance(prio, int) and not isinstance(prio, bool), f"{name}.priority must be an int"
    check_init_params(cls, ctx.make(), name, required=("seed",))


def check_shapes(ctx: Context) -> None:
    clus = ctx.make()
    w = ctx.weights(300)
    before = w.tobytes()
    for k in (2, 7, 32):
        _assert_valid(ctx, clus.cluster(w, k), w, k, f"cluster(k={k})")
    assert w.tobytes() == before, f"{_name(ctx)}.cluster modified its input"
    w2 = w.reshape(20, 15)
    res = clus.cluster(w2, 5)
    _assert_valid(ctx, res, w2, 5, "cluster(2-D input)")
    res64 = clus.cluster(w.astype(np.float64), 5)
    _assert_valid(ctx, res64, w, 5, "cluster(float64 input)")
    tied = np.round(ctx.weights(400, kind="laplace") * 40) / 40  # few distinct values, many ties
    _assert_valid(ctx, clus.cluster(tied, 4), tied, 4, "cluster(tied weights)")


def check_deterministic(ctx: Context) -> None:
    w = ctx.weights(500, seed=ctx.seed + 1)
    for k in (3, 12):
        a, b = ctx.make().cluster(w, k), ctx.make().cluster(w.copy(), k)
        assert a.centroids.tobytes() == b.centroids.tobytes() and a.labels.tobytes() == b.labels.tobytes() \
            and a.inertia == b.inertia, f"{_name(ctx)}.cluster(k={k}) is not deterministic for a seed"


def check_trivial(ctx: Context) -> None:
    name = _name(ctx)
    clus = ctx.make()
    w = ctx.weights(200)
    one = clus.cluster(w, 1)
    flat = w.astype(np.float64)
    assert one.centroids.shape == (1,) and np.isclose(one.centroids[0], flat.mean(), rtol=1e-9, atol=1e-12), \
        f"{name}.cluster(k=1) must give the mean"
    assert np.all(one.labels == 0) and np.isclose(one.inertia, np.sum((flat - flat.mean()) ** 2), rtol=1e-9)
    few = np.array([0.5, -0.25, 0.5, 0.125, -0.25, 0.5], dtype=np.float32)
    for k in (3, 4, 6):
        res = clus.cluster(few, k)
        assert res.inertia == 0.0 and np.array_equal(res.reconstruct(), few.astype(np.float64)), \
            f"{name}.cluster(k={k}) on 3 distinct values must reproduce them exactly"
        assert np.array_equal(res.centroids, np.array([-0.25, 0.125, 0.5])), \
            f"{name}.cluster(k={k}) on 3 distinct values must return exactly those values"
    single = np.full(10, 0.3, dtype=np.float32)
    res = clus.cluster(single, 4)
    assert res.centroids.size == 1 and res.inertia == 0.0, f"{name}: constant weights give one centroid"


def check_quality(ctx: Context) -> None:
    clus = ctx.make()
    for i, (kind, n, k) in enumerate(ctx.quality_cases):
        w = typical_weights(n, seed=100 + i, kind=kind)
        got = clus.cluster(w, k).inertia
        best = optimal_inertia(w, k)
        assert got <= best * (1 + ctx.rtol) + 1e-15, \
            (f"{_name(ctx)}.cluster(k={k}) on {n} {kind} weights: inertia {got:.6g} is "
             f"{100 * (got / best - 1):.2f} % above the optimum {best:.6g} (allowed {100 * ctx.rtol:g} %)")


def check_cluster_many(ctx: Context) -> None:
    name = _name(ctx)
    clus = ctx.make()
    w = ctx.weights(400, seed=ctx.seed + 2)
    ks = [1, 2, 5, 16, 3, 400]
    many = clus.cluster_many(w, ks)
    assert len(many) == len(ks), f"{name}.cluster_many returned {len(many)} results for {len(ks)} values of k"
    for k, res in zip(ks, many):
        _assert_valid(ctx, res, w, k, f"cluster_many(k={k})")
        one = ctx.make().cluster(w, k)
        assert res.inertia <= one.inertia * (1 + 1e-9) + 1e-15, \
            f"{name}.cluster_many(k={k}) inertia {res.inertia:.6g} is worse than cluster's {one.inertia:.6g}"
    assert clus.cluster_many(w, []) == [], f"{name}.cluster_many([]) must return []"


def check_errors(ctx: Context) -> None:
    name = _name(ctx)
    clus = ctx.make()
    w = ctx.weights(50)
    for bad in (0, -3, 51, 2.5, True):
        for call in (lambda: clus.cluster(w, bad), lambda: clus.cluster_many(w, [2, bad])):
            try:
                call()
            except InvalidSettingError:
                pass
            else:
                raise AssertionError(f"{name} accepted k={bad!r} for 50 weights; it must raise InvalidSettingError")
    for bad_w in (np.array([0.1, np.nan, 0.2]), np.array([0.1, np.inf, 0.2]), np.array([])):
        for call in (lambda: clus.cluster(bad_w, 1), lambda: clus.cluster_many(bad_w, [1])):
            try:
                call()
            except InvalidModelError:
                pass
            else:
                raise AssertionError(f"{name} accepted weights {bad_w!r}; it must raise InvalidModelError")


def check_weighted(ctx: Context) -> None:
    name = _name(ctx)
    clus = ctx.make()
    w = ctx.weights(300, seed=ctx.seed + 3)
    s = typical_importances(300, seed=ctx.seed + 3)
    if not getattr(ctx.cls, "supports_sample_weight", False):
        if _refused(lambda: clus.cluster(w, 4, sample_weight=s)):
            return
        raise AssertionError(f"{name} does not declare supports_sample_weight but accepted sample weights; "
                             "refuse them with InvalidSettingError (or declare and honour them)")
    for k in (1, 2, 7, 300):
        res = clus.cluster(w, k, sample_weight=s)
        _assert_valid(ctx, res, w, k, f"cluster(k={k}, sample_weight)", s)
        flat = w.astype(np.float64)
        for j in range(res.centroids.size):
            mine = res.labels == j
            mean = np.average(flat[mine], weights=s[mine])
            assert np.isclose(res.centroids[j], mean, rtol=1e-7, atol=1e-12), \
                f"{name}.cluster(k={k}, sample_weight): centroid {j} is not the weighted mean of its cluster"
    for i, (kind, n, k) in enumerate(ctx.quality_cases):
        wi = typical_weights(n, seed=200 + i, kind=kind)
        si = typical_importances(n, seed=200 + i)
        got = clus.cluster(wi, k, sample_weight=si).inertia
        best = optimal_inertia(wi, k, si)
        assert got <= best * (1 + ctx.weighted_rtol) + 1e-15, \
            (f"{name}.cluster(k={k}, sample_weight) on {n} {kind} weights: weighted inertia {got:.6g} is "
             f"{100 * (got / best - 1):.2f} % above the weighted optimum {best:.6g} "
             f"(allowed {100 * ctx.weighted_rtol:g} %)")
    ks = [1, 3, 16, 2]
    for k, res in zip(ks, clus.cluster_many(w, ks, sample_weight=s)):
        _assert_valid(ctx, res, w, k, f"cluster_many(k={k}, sample_weight)", s)
        one = ctx.make().cluster(w, k, sample_weight=s)
        assert res.inertia <= one.inertia * (1 + 1e-9) + 1e-15, \
            f"{name}.cluster_many(k={k}, sample_weight) is worse than cluster for that k"
    plain, equal = clus.cluster(w, 5), clus.cluster(w, 5, sample_weight=np.full(w.size, 2.5))
    assert np.array_equal(plain.centroids, equal.centroids) and np.array_equal(plain.labels, equal.labels) \
        and np.isclose(equal.inertia, 2.5 * plain.inertia, rtol=1e-12), \
        f"{name}: equal sample weights must give the unweighted clustering (inertia times the weight)"
    for bad in (s[:-1], -s, np.where(np.arange(s.size) == 3, np.nan, s), np.zeros_like(s)):
        if not _refused(lambda: clus.cluster(w, 4, sample_weight=bad)):
            raise AssertionError(f"{name} accepted bad sample weights (wrong size, negative, NaN or all zero); "
                                 "it must raise InvalidSettingError")


def _refused(call) -> bool:
    """Whether ``call()`` raised InvalidSettingError (anything else propagates)."""
    try:
        call()
    except InvalidSettingError:
        return True
    return False


CHECKS: dict[str, Callable[[Context], None]] = {
    "params": check_params,
    "shapes": check_shapes,
    "deterministic": check_deterministic,
    "trivial": check_trivial,
    "quality": check_quality,
    "cluster_many": check_cluster_many,
    "errors": check_errors,
    "weighted": check_weighted,
}


# -- drivers ---------------------------------------------------------------------------------------
def context(cls: Any, **options) -> Context:
    """A Context for a Clusterer class. ``options`` set Context fields (``params`` passed to the
    constructor, ``rtol``, ``weighted_rtol``, ``seed``, ``quality_cases``)."""
    if not (isinstance(cls, type) and issubclass(cls, Clusterer)):
        raise TypeError(f"expected a Clusterer subclass, got {cls!r}")
    return Context(cls, **options)


def checks(cls: Any, **options) -> Iterator[tuple[str, Callable[[], None]]]:
    """(name, zero-argument check) pairs, for parametrised tests."""
    ctx = context(cls, **options)
    for name, fn in CHECKS.items():
        yield name, (lambda fn=fn: fn(ctx))


def check_clusterer(cls: Any, **options) -> None:
    """Run every check on a Clusterer class; raises AssertionError naming the first broken rule."""
    for _, run in checks(cls, **options):
        run()
