"""The default clusterer: 1-D k-means on sorted weights, near-optimal and independent of layer size.

Why it is fast: in one dimension every k-means cluster is a run of consecutive sorted weights. A layer
is sorted once and prefix sums of its (centred) values and squares are kept; then a cluster's count,
mean and squared error are O(1) differences, and a Lloyd step is k-1 binary searches for the
midpoints between centroids plus O(k) arithmetic, whatever the layer's size.

Why it is accurate: Lloyd's algorithm in 1-D stalls in local optima several percent above the
optimum (typically too many centroids on sparse tail weights, which no single Lloyd step can pull
back). After Lloyd, a *banded dynamic programme* re-places every cluster boundary at once: boundary
j may move to any current boundary within ``band`` clusters of it, or to evenly spaced positions
inside those clusters, and the exact best combination is found in O(k m^2) for m candidates per
boundary. Shifting a run of boundaries by whole clusters (moving a centroid from a tail to the
centre) is thus evaluated exactly. A few Lloyd steps polish to exact positions, and the two
alternate over a schedule of band widths until a full cycle gains nothing. On trained-looking
weights this lands within about 0.5 % of the exact optimum (``kmeans1d``) at a small share of its
cost; ``refine=False`` gives plain Lloyd.

Sweeps: each k's result depends on k alone (``wsx.apply`` re-clusters one k and must get what was
scored), so no k warm-starts another; instead ``cluster_many`` sorts once and runs the refinements
of all k in lockstep, solving each round's banded DPs in one pass over the longest chain
(``band_dp_many``): the DP's Python-level loop, its cost, is shared by every k.

The O(n) work (sort, prefix sums, labels) sits behind ``SortedWeights`` so that the torch and cupy
clusterers keep it on their device; everything else runs on O(k) host arrays. Segment statistics
take their counts from ``SortedWeights.counts``. With sample weights (per-weight importances) that
is a third prefix sum, of the weights s, and the other two sum s·x and s·x²: every statistic, the
DP costs and k-means++ then minimise the weighted inertia with no other change; the density and
quantile initialisations place centroids by weighted mass.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

from wsx.clusterer import Clusterer, Clustering, _as_1d, _check_k, _scaled, _trivial
from wsx.errors import InvalidSettingError
from wsx.hookspecs import hookimpl

INITS = ("density", "quantile", "linear", "random", "k-means++")

# Refinement schedule: (clusters spanned on each side, candidate positions inside each cluster).
_BANDS = ((1, 8), (2, 4), (4, 2))
_FINE = 1024  # up to k = _FINE // 16 a last band of _FINE // k (<= 32) positions per cluster


def _fine_band(k: int) -> tuple | None:
    """The band tried once the coarse ones gain nothing, for small k. There Lloyd's local optima
    differ by boundary shifts of a few percent of a cluster, finer than the coarse bands resolve;
    this one costs k * (2 * steps + 1)^2, bounded by the cap on steps."""
    steps = min(32, _FINE // max(k, 1))
    return (1, steps) if steps >= 16 else None


class SortedWeights:
    """A layer's weights sorted once, with prefix sums of (w - mean) and (w - mean)**2, each term
    times the weight's sample weight when ``s`` is given (then also a prefix sum ``p0`` of s, and
    ``mean`` is the weighted mean).

    Every method takes and returns small host numpy arrays (positions, values); subclasses keep the
    O(n) arrays on a device. Positions index the sorted weights; ``bounds`` are k+1 positions
    0 = b_0 < b_1 < ... < b_k = n delimiting the clusters.
    """

    def __init__(self, w: np.ndarray, s: np.ndarray | None = None):
        self.n = n = int(w.size)
        self.order, self.sorted = _argsort(w)
        self.p0 = None
        if s is not None:
            sw = s[self.order]
            self.p0 = np.empty(n + 1)
            self.p0[0] = 0.0
            np.cumsum(sw, out=self.p0[1:])
            self.mean = float(np.dot(sw, self.sorted) / self.p0[-1])
        else:
            self.mean = float(self.sorted.mean())
        x = self.sorted - self.mean  # centred: keeps the prefix sums well conditioned
        self.p1 = np.empty(n + 1)
        self.p2 = np.empty(n + 1)
        self.p1[0] = self.p2[0] = 0.0
        if s is None:
            np.cumsum(x, out=self.p1[1:])
            np.cumsum(np.square(x, out=x), out=self.p2[1:])
        else:
            sx = sw * x
            np.cumsum(sx, out=self.p1[1:])
            np.cumsum(sx * x, out=self.p2[1:])
        self._rank = None

    @property
    def weighted(self) -> bool:
        return self.p0 is not None

    def search(self, values: np.ndarray) -> np.ndarray:
        """Position of the first sorted weight >= each value."""
        return np.searchsorted(self.sorted, values, side="left").astype(np.int64)

    def prefix(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prefix sums of centred values and squares before each position."""
        return self.p1[pos], self.p2[pos]

    def values(self, pos: np.ndarray) -> np.ndarray:
        return self.sorted[pos]

    def counts(self, pos: np.ndarray) -> np.ndarray:
        """The weight mass before each position, as floats: the third prefix sum (how many weights
        when every one counts once, the sum of their sample weights otherwise)."""
        if self.p0 is not None:
            return self.p0[pos]
        return np.asarray(pos, dtype=np.float64)

    def at_mass(self, fractions: np.ndarray) -> np.ndarray:
        """Positions of the first weights whose mass up to and including them reaches each fraction
        of the total sample weight (weighted quantiles)."""
        return np.minimum(np.searchsorted(self.p0[1:], fractions * self.p0[-1]), self.n - 1).astype(np.int64)

    def distinct(self) -> int:
        """Number of distinct weights."""
        return int(np.count_nonzero(self.sorted[1:] != self.sorted[:-1])) + 1

    def labels(self, bounds: np.ndarray) -> np.ndarray:
        """Cluster index of every weight, in the original order."""
        if self._rank is None:
            rank = np.empty(self.n, dtype=np.int32 if self.n < 2 ** 31 else np.int64)
            rank[self.order] = np.arange(self.n, dtype=rank.dtype)
            self._rank = rank
        k = bounds.size - 1
        small = np.int16 if k < 2 ** 15 else np.int32  # a small lookup table gathers faster
        by_rank = np.repeat(np.arange(k, dtype=small), np.diff(bounds))
        return by_rank[self._rank].astype(np.int64)


def _argsort(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorting order of ``w`` and the sorted copy. Weights that are float32 values (the usual case)
    sort as single 64-bit keys (order-preserving bits of the value above the position), about
    twice as fast as ``np.argsort``."""
    n = w.size
    w32 = w.astype(np.float32)
    if n >= 2 ** 32 or not np.array_equal(w32, w):
        order = np.argsort(w)
        return order, w[order]
    u = w32.view(np.uint32)
    negative = (u >> np.uint32(31)).astype(bool)
    key = (u ^ np.where(negative, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))).astype(np.uint64)
    key <<= np.uint64(32)
    key |= np.arange(n, dtype=np.uint64)
    key.sort()
    order = (key & np.uint64(0xFFFFFFFF)).astype(np.int64)
    high = (key >> np.uint64(32)).astype(np.uint32)
    negative = ~(high >> np.uint32(31)).astype(bool)
    high ^= np.where(negative, np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return order, high.view(np.float32).astype(np.float64)


# -- segment statistics on host arrays ------------------------------------------------------------
def _stats(data: SortedWeights, b: np.ndarray):
    """Counts, centred sums and squared errors of the segments delimited by ``b``."""
    s1, s2 = data.prefix(b)
    s0 = data.counts(b)
    cnt, t1, t2 = s0[1:] - s0[:-1], s1[1:] - s1[:-1], s2[1:] - s2[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = np.where(cnt > 0, t2 - t1 * t1 / np.where(cnt > 0, cnt, 1.0), 0.0)  # weighted counts may be < 1
    return cnt, t1, np.maximum(sse, 0.0)


def _means(data: SortedWeights, b: np.ndarray) -> np.ndarray:
    """Segment means (Lloyd's update; the hot loop, so no squared errors)."""
    s1, _ = data.prefix(b)
    s0 = data.counts(b)
    return (s1[1:] - s1[:-1]) / (s0[1:] - s0[:-1]) + data.mean


def _bounds(data: SortedWeights, c: np.ndarray) -> np.ndarray:
    """Segments of the weights nearest each (sorted) centroid; ties at a midpoint go right."""
    b = np.empty(c.size + 1, dtype=np.int64)
    b[0], b[-1] = 0, data.n
    b[1:-1] = data.search(0.5 * (c[1:] + c[:-1]))
    return b


def _repair(data: SortedWeights, b: np.ndarray, k: int) -> np.ndarray:
    """Replace empty clusters deterministically: split the clusters with the largest squared error
    at their mean, among those holding two distinct values (so both halves are non-empty)."""
    b = np.concatenate((b[:-1][np.diff(b) > 0], [data.n]))
    while b.size - 1 < k:
        cnt, t1, sse = _stats(data, b)
        splittable = np.flatnonzero(data.values(b[:-1]) < data.values(b[1:] - 1))
        if splittable.size == 0:
            break
        take = splittable[np.argsort(-sse[splittable], kind="stable")[:k - (b.size - 1)]]
        cut = np.clip(data.search(t1[take] / cnt[take] + data.mean), b[take] + 1, b[take + 1] - 1)
        grown = np.unique(np.concatenate((b, cut)))
        if grown.size == b.size:  # cannot happen with distinct values; never loop forever
            break
        b = grown
    return b


def lloyd(data: SortedWeights, c: np.ndarray, k: int, max_iter: int) -> np.ndarray:
    """Lloyd's algorithm on sorted data from centroids ``c``; returns the final bounds (each cluster's
    centroid is its mean, and the bounds are the nearest-centroid segments, up to ``max_iter``)."""
    c = np.unique(c)
    prev = None
    for _ in range(max_iter):
        b = _bounds(data, c)
        if c.size < k or (b[1:] == b[:-1]).any():
            # near k = n, means -> bounds -> repair can cycle back to the same bounds: a fixed point too
            b = _repair(data, b, k)
        if prev is not None and b.size == prev.size and (b == prev).all():
            break
        prev = b
        c = _means(data, b)
    return prev


def _segment_cost(cnt: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> np.ndarray:
    """Squared error of segments from their counts and centred sums (inf when empty); overwrites
    ``t1`` and ``t2`` (cost tensors are large, so no temporaries)."""
    np.multiply(t1, t1, out=t1)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(t1, cnt, out=t1)
    np.subtract(t2, t1, out=t2)
    np.maximum(t2, 0.0, out=t2)
    t2[cnt <= 0] = np.inf
    return t2


def _band_problem(data: SortedWeights, b: np.ndarray, band: int, steps: int):
    """The chain DP of ``band_dp``: candidate positions (k-1, m) of each inner boundary, the cost of
    the first segment per candidate (m,), of each middle segment per pair of neighbouring candidates
    (k-2, m, m; row: the left boundary's candidate) and of the last segment (m,)."""
    k, n = b.size - 1, data.n
    j = np.arange(1, k)
    span = np.clip(j[:, None] + np.arange(-band, band)[None, :], 0, k - 1)
    lo, width = b[span], b[span + 1] - b[span]
    inner = lo[..., None] + (width[..., None] * np.arange(steps)) // steps
    cand = np.concatenate((inner.reshape(k - 1, -1), b[np.minimum(j + band, k), None]), axis=1)
    cand = np.clip(cand, 1, n - 1)
    q1, q2 = data.prefix(np.concatenate(([n], cand.ravel())))
    end1, end2 = q1[0], q2[0]
    q1, q2 = q1[1:].reshape(cand.shape), q2[1:].reshape(cand.shape)
    at, end0 = data.counts(cand), float(data.counts(n))
    first = _segment_cost(at[0], q1[0].copy(), q2[0].copy())
    last = _segment_cost(end0 - at[-1], end1 - q1[-1], end2 - q2[-1])
    cost = _segment_cost(at[1:, None, :] - at[:-1, :, None], q1[1:, None, :] - q1[:-1, :, None],
                         q2[1:, None, :] - q2[:-1, :, None])
    return cand, first, cost, last


def band_dp(data: SortedWeights, b: np.ndarray, band: int, steps: int) -> tuple[np.ndarray, float]:
    """Exact best bounds when boundary j may move to any of the current bounds j-band .. j+band or
    to ``steps`` evenly spaced positions inside each cluster between them. Candidates include the
    current bounds, so the result is never worse, and a shift of every boundary by whole clusters
    (moving a centroid from one region to another) is evaluated exactly."""
    return band_dp_many(data, [(b, band, steps)])[0]


_BATCH_STEPS = 1 << 14  # chain steps solved together: bounds the cost tensor at 16 k x m x m floats


def band_dp_many(data: SortedWeights, requests: Sequence[tuple]) -> list[tuple[np.ndarray, float]]:
    """``band_dp`` for several (bounds, band, steps) requests on one layer. The forward pass of the
    DP is a Python loop over a chain's boundaries; here one loop over the longest chain advances
    every chain still that long, so the k values of a sweep share it. Each answer equals what
    ``band_dp`` gives for that request alone: every number is computed by the same operations."""
    probs = [_band_problem(data, *r) for r in requests]
    out: list = [None] * len(probs)
    groups: dict[int, list[int]] = {}
    for i in sorted(range(len(probs)), key=lambda i: -probs[i][2].shape[0]):  # longest chain first
        groups.setdefault(probs[i][0].shape[1], []).append(i)
    for m, order in groups.items():
        batch: list[int] = []
        used = 0
        for i in order + [-1]:
            size = probs[i][2].shape[0] if i >= 0 else 0
            if batch and (i < 0 or used + size > _BATCH_STEPS):
                _chain_dp(data, [probs[j] for j in batch], m, out, batch)
                batch, used = [], 0
            if i >= 0:
                batch.append(i)
                used += size
    return out


def _chain_dp(data: SortedWeights, probs: list, m: int, out: list, where: list[int]) -> None:
    """Solve chain DPs (sorted longest first, all with m candidates per boundary) in one pass."""
    lengths = np.array([p[2].shape[0] for p in probs])
    if len(probs) == 1:  # one chain (a single k): its own cost tensor, no step-major copy
        active, offset, cost = [1] * int(lengths[0]), np.arange(lengths[0] + 1), probs[0][2]
    else:
        active = (lengths[None, :] > np.arange(lengths[0])[:, None]).sum(axis=1).tolist()  # chains per step
        offset = np.concatenate(([0], np.cumsum(active)))
        cost = np.empty((offset[-1], m, m))  # step-major: the chains active at a step are contiguous
        for r, p in enumerate(probs):
            cost[offset[:lengths[r]] + r] = p[2]
    back = np.empty((offset[-1], m), dtype=np.intp)
    best = np.stack([p[1] for p in probs])
    head, cols = best[0], np.arange(m)
    for i, a in enumerate(active):
        if a == 1:  # one chain left: 2-D operations, cheaper per step than the batched reduction
            total = cost[offset[i]]
            total += head[:, None]
            back[offset[i]] = arg = total.argmin(axis=0)
            head[:] = total[arg, cols]
            continue
        total = cost[offset[i]:offset[i] + a]
        total += best[:a, :, None]
        back[offset[i]:offset[i] + a] = total.argmin(axis=1)
        best[:a] = total.min(axis=1)
    n = data.n
    for r, p in enumerate(probs):
        cand, k = p[0], p[0].shape[0] + 1
        total = best[r] + p[3]
        g = int(total.argmin())
        value = float(total[g])
        pick = [0] * (k - 1)
        pick[-1] = g
        rows = back[offset[:lengths[r]] + r].tolist()
        for i in range(k - 3, -1, -1):
            g = rows[i][g]
            pick[i] = g
        out[where[r]] = (np.concatenate(([0], cand[np.arange(k - 1), pick], [n])), value)


_TOL = 3e-4  # a refinement round must gain this fraction of the inertia to count
_FIRST = 100  # Lloyd steps from the initial centroids before refining
_INNER = 10  # Lloyd steps between DP rounds; the final polish runs to convergence


def refining(data: SortedWeights, b: np.ndarray, k: int, max_iter: int, max_rounds: int = 40):
    """``refine`` as a generator: yields each banded-DP request (bounds, band, steps), is sent its
    answer and returns the final bounds, so that ``run_batched`` can batch the DPs of many k."""
    if k < 2:
        return b
    best = float(_stats(data, b)[2].sum())
    misses = rounds = coarse = 0
    fine = _fine_band(k)
    while rounds < max_rounds:
        if misses < len(_BANDS):
            band, steps = _BANDS[coarse % len(_BANDS)]
            coarse += 1
        elif misses == len(_BANDS) and fine is not None:  # the coarse cycle is spent: one fine round
            band, steps = fine
        else:
            break
        rounds += 1
        nb, value = yield (b, band, steps)
        if not value < best * (1 - _TOL):
            misses += 1
            continue
        nb = lloyd(data, _means(data, nb), k, min(max_iter, _INNER))
        sse = float(_stats(data, nb)[2].sum())
        if sse < best:
            b, best, misses = nb, sse, 0
        else:
            misses += 1
    return lloyd(data, _means(data, b), k, max_iter)


def run_batched(data: SortedWeights, gens: Sequence) -> list:
    """Drive generators that yield banded-DP requests in lockstep, answering each round's requests
    with one ``band_dp_many``; returns what each generator returns, in order."""
    results: list = [None] * len(gens)
    live: dict[int, tuple] = {}
    for i, gen in enumerate(gens):
        try:
            live[i] = next(gen)
        except StopIteration as stop:
            results[i] = stop.value
    while live:
        keys = list(live)
        for i, answer in zip(keys, band_dp_many(data, [live[i] for i in keys])):
            try:
                live[i] = gens[i].send(answer)
            except StopIteration as stop:
                results[i] = stop.value
                del live[i]
    return results


def refine(data: SortedWeights, b: np.ndarray, k: int, max_iter: int, max_rounds: int = 40) -> np.ndarray:
    """Alternate banded DP and a few Lloyd steps until a full cycle of band widths gains nothing,
    then let Lloyd converge."""
    return run_batched(data, [refining(data, b, k, max_iter, max_rounds)])[0]


# -- initialisations: each returns k candidate centroids (sorted, possibly repeated) ---------------
def init_linear(data: SortedWeights, k: int, rng) -> np.ndarray:
    """Evenly spaced over [min, max] (the original code's, after Deep Compression)."""
    ends = data.values(np.array([0, data.n - 1]))
    return np.linspace(ends[0], ends[1], k)


def init_quantile(data: SortedWeights, k: int, rng) -> np.ndarray:
    """Equal-count (equal-mass, with sample weights) quantiles: centroid i at quantile (i + 0.5) / k."""
    if data.weighted:
        return data.values(data.at_mass((np.arange(k) + 0.5) / k))
    return data.values(np.minimum(((np.arange(k) + 0.5) * data.n / k).astype(np.int64), data.n - 1))


def init_density(data: SortedWeights, k: int, rng) -> np.ndarray:
    """Centroid density proportional to the weight density to the power 1/3, the high-resolution
    optimum for squared error (Panter-Dite); the density comes from a quantile grid, so heavy
    tails do not starve the dense centre of centroids. With sample weights the density is of
    weight mass (the optimum of the weighted inertia)."""
    n = data.n
    m = int(min(n - 1, max(8 * k, 512)))
    if m < 1:
        return data.values(np.zeros(k, np.int64))
    ranks = np.unique(np.rint(np.linspace(0, n - 1, m + 1)).astype(np.int64))
    x = data.values(ranks)
    mass = np.cbrt(np.diff(data.counts(ranks))) * np.cbrt(np.diff(x)) ** 2
    cum = np.concatenate(([0.0], np.cumsum(mass)))
    if cum[-1] <= 0:
        return init_quantile(data, k, rng)
    return np.interp((np.arange(k) + 0.5) / k, cum / cum[-1], x)


def init_random(data: SortedWeights, k: int, rng) -> np.ndarray:
    """k weights drawn without replacement."""
    return np.sort(data.values(np.sort(rng.choice(data.n, size=k, replace=False))))


def init_kmeanspp(data: SortedWeights, k: int, rng) -> np.ndarray:
    """k-means++ (D^2 sampling) on the sorted data: the squared distance mass of each Voronoi segment
    comes from the prefix sums, and a point inside the drawn segment by binary search, so a draw
    costs O(k + log n) instead of O(n)."""
    n, mu = data.n, data.mean
    c = data.values(np.array([rng.integers(n)]))
    for _ in range(1, k):
        b = _bounds(data, c)
        s1, s2 = data.prefix(b)
        s0 = data.counts(b)
        cnt, t1, t2 = np.diff(s0), np.diff(s1), np.diff(s2)
        cc = c - mu
        mass = np.maximum(t2 - 2 * cc * t1 + cc * cc * cnt, 0.0)
        total = mass.sum()
        if total <= 0:
            break
        u = rng.random() * total
        seg = min(int(np.searchsorted(np.cumsum(mass), u, side="right")), mass.size - 1)
        u -= mass[:seg].sum()
        lo, hi, ref = int(b[seg]), int(b[seg + 1]), cc[seg]
        base1, base2 = s1[seg], s2[seg]
        while hi - lo > 1:  # smallest t with mass of [b_seg, t] > u
            mid = (lo + hi) // 2
            p1, p2 = data.prefix(np.array([mid]))
            part = (p2[0] - base2) - 2 * ref * (p1[0] - base1) + ref * ref * (float(data.counts(mid)) - s0[seg])
            lo, hi = (mid, hi) if part <= u else (lo, mid)
        c = np.unique(np.concatenate((c, data.values(np.array([lo])))))
    return c


_INIT_FUNCS = {"density": init_density, "quantile": init_quantile, "linear": init_linear,
               "random": init_random, "k-means++": init_kmeanspp}


class Sorted1DClusterer(Clusterer):
    """Near-optimal 1-D k-means on sorted data (numpy); the default clusterer.

    ``init`` picks the starting centroids (``"density"``, ``"quantile"``, ``"linear"``, ``"random"``,
    ``"k-means++"``; the last two use ``seed``). ``refine=False`` stops after Lloyd's algorithm (the
    classic method, faster but several percent worse at large k); ``max_iter`` caps each Lloyd run.
    """

    name = "sorted1d"
    priority: ClassVar[int] = 100
    supports_sample_weight: ClassVar[bool] = True

    def __init__(self, *, seed: int = 0, init: str = "density", refine: bool = True, max_iter: int = 1000):
        self.seed = seed
        self.init = init
        self.refine = refine
        self.max_iter = max_iter

    # the O(n) container; device subclasses override
    def _prepare(self, w, s: np.ndarray | None = None) -> SortedWeights:
        return SortedWeights(w, s)

    def _data(self, w, s: np.ndarray | None) -> SortedWeights:
        return self._prepare(w) if s is None else self._prepare(w, s)

    def _check_params(self) -> None:
        if self.init not in _INIT_FUNCS:
            raise InvalidSettingError(f"unknown init {self.init!r}; use one of {list(INITS)}")
        if int(self.max_iter) < 1:
            raise InvalidSettingError(f"max_iter must be at least 1, got {self.max_iter!r}")

    def _bounding(self, data: SortedWeights, k: int):
        """Final cluster bounds on ``data`` for k (more than k distinct values), as a generator of
        banded-DP requests (see ``run_batched``)."""
        rng = np.random.default_rng([int(self.seed), k])
        c0 = _INIT_FUNCS[self.init](data, k, rng)
        if not self.refine:
            return lloyd(data, c0, k, int(self.max_iter))
        b = lloyd(data, c0, k, min(int(self.max_iter), _FIRST))
        return (yield from refining(data, b, k, int(self.max_iter)))

    def _bounds_many(self, data: SortedWeights, ks: Sequence[int]) -> list[np.ndarray]:
        """Bounds for every k, their refinements batched (each equals the k alone)."""
        return run_batched(data, [self._bounding(data, k) for k in ks])

    def _bounds_for(self, data: SortedWeights, k: int) -> np.ndarray:
        return self._bounds_many(data, [k])[0]

    def _finish(self, data: SortedWeights, b: np.ndarray) -> Clustering:
        cnt, t1, sse = _stats(data, b)
        return Clustering(t1 / cnt + data.mean, data.labels(b), float(sse.sum()))

    def cluster(self, weights: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> Clustering:
        """One k through the sweep's path: the sort also finds the distinct values, so the base
        class's separate ``np.unique`` pass (a second sort of the layer) is skipped."""
        return self.cluster_many(weights, [k], sample_weight)[0]

    def _cluster(self, w: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> Clustering:
        self._check_params()
        data = self._data(w, sample_weight)
        return self._finish(data, self._bounds_for(data, k))

    def cluster_many(self, weights: np.ndarray, ks: Sequence[int],
                     sample_weight: np.ndarray | None = None) -> list[Clustering]:
        """Sort and build prefix sums once, then cluster every k on them (same result as ``cluster``)."""
        w = _as_1d(weights)
        ks = [_check_k(k, w.size) for k in ks]
        s, scale = self._sample_weight(sample_weight, w.size)
        self._check_params()
        data = self._data(w, s)
        distinct = data.distinct()
        hard = [k for k in dict.fromkeys(ks) if 1 < k < distinct]
        found = dict(zip(hard, self._bounds_many(data, hard)))
        return [_scaled(_trivial(w, k, s) if k not in found else self._finish(data, found[k]), scale) for k in ks]


@hookimpl
def wsx_clusterers():
    return [Sorted1DClusterer]
