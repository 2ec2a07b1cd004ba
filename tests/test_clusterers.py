"""Clusterers: the conformance suite over every registered available clusterer, the suite rejecting
broken ones, and what is specific to sorted1d (quality against the optimum, inits, sweeps) and to
the torch and cupy variants."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import wsx
from wsx.clusterer import Clusterer, Clustering
from wsx.engine import resolve_clusterer
from wsx.testing.clusterers import CHECKS, check_clusterer, context, optimal_inertia, typical_weights
from wsx_plugins.clusterers import sorted1d as s1d
from wsx_plugins.clusterers.cupy import CupyClusterer
from wsx_plugins.clusterers.sorted1d import INITS, Sorted1DClusterer
from wsx_plugins.clusterers.torch import TorchClusterer

ALL = wsx.plugins.clusterers()
AVAILABLE = sorted(name for name, cls in ALL.items() if cls.available()[0])
GPU_ONLY = {"cupy"}


# -- conformance over every registered, available clusterer ----------------------------------------
def test_builtins_are_registered():
    assert {"sorted1d", "torch", "cupy", "sklearn"} <= set(ALL)
    assert "sorted1d" in AVAILABLE and "sklearn" in AVAILABLE


# scikit-learn's k-means++ restarts stall up to ~3 % above the weighted optimum on heavy-tailed importances
OPTIONS = {"sklearn": {"weighted_rtol": 0.05}}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", AVAILABLE)
def test_conformance(name, check):
    CHECKS[check](context(ALL[name], **OPTIONS.get(name, {})))


@pytest.mark.parametrize("init", INITS)
def test_every_init_passes_the_suite(init):
    check_clusterer(Sorted1DClusterer, params={"init": init})


def test_plain_lloyd_passes_the_suite_but_for_quality():
    ctx = context(Sorted1DClusterer, params={"refine": False, "init": "linear"}, weighted_rtol=float("inf"))
    for name, check in CHECKS.items():
        if name != "quality":
            check(ctx)


def test_sorted1d_has_the_highest_priority_among_cpu_clusterers():
    cpu = [name for name in AVAILABLE if name not in GPU_ONLY]
    assert max(cpu, key=lambda n: ALL[n].priority) == "sorted1d"
    assert ALL["sklearn"].priority == min(ALL[n].priority for n in cpu)
    if not CupyClusterer.available()[0]:
        assert isinstance(resolve_clusterer(None, 3), Sorted1DClusterer)
        assert resolve_clusterer(None, 3).seed == 3


# -- the suite rejects broken clusterers -----------------------------------------------------------
class _Descending(Sorted1DClusterer):
    def _finish(self, data, b):
        c = super()._finish(data, b)
        return Clustering(c.centroids[::-1].copy(), c.centroids.size - 1 - c.labels, c.inertia)


class _WrongInertia(Sorted1DClusterer):
    def _finish(self, data, b):
        c = super()._finish(data, b)
        return Clustering(c.centroids, c.labels, c.inertia * 0.9)


class _Unseeded(Sorted1DClusterer):
    def _bounding(self, data, k):
        # a fresh random start each call, and too few steps to converge to the same optimum
        self.seed, self.init = int(np.random.default_rng().integers(1 << 30)), "random"
        self.refine, self.max_iter = False, 2
        return (yield from super()._bounding(data, k))


class _Quantiles(Clusterer):
    """Equal-count bins, no iteration: fast and valid-looking, but far from optimal."""

    name = "test-quantiles"

    def _cluster(self, w, k):
        edges = np.quantile(w, np.linspace(0, 1, k + 1)[1:-1])
        labels = np.searchsorted(edges, w, side="right")
        c = np.array([w[labels == j].mean() for j in range(k)])
        return Clustering(c, labels.astype(np.int64), float(np.sum((w - c[labels]) ** 2)))


class _WorseSweep(Sorted1DClusterer):
    def cluster(self, weights, k):  # sorted1d's own cluster goes through cluster_many
        return Sorted1DClusterer.cluster_many(self, weights, [k])[0]

    def cluster_many(self, weights, ks):
        return [Sorted1DClusterer(refine=False, init="linear").cluster(weights, k) for k in ks]


class _NoValidation(Sorted1DClusterer):
    def cluster(self, weights, k):
        w = np.nan_to_num(np.asarray(weights, dtype=np.float64).ravel())
        return self._cluster(w, max(1, min(int(k), w.size - 1)))


class _Positional(Sorted1DClusterer):
    def __init__(self, seed=0, init="density"):
        super().__init__(seed=seed, init=init)


class _FarCentroid(Sorted1DClusterer):
    """Labels no longer point at the nearest centroid."""

    def _finish(self, data, b):
        c = super()._finish(data, b)
        labels = c.labels.copy()
        labels[np.argmax(data.labels(b) == 0)] = c.centroids.size - 1
        return Clustering(c.centroids, labels, float(np.sum((data.sorted[np.argsort(data.order)]
                                                            - c.centroids[labels]) ** 2)))


@pytest.mark.parametrize("broken,check", [
    (_Descending, "shapes"), (_WrongInertia, "shapes"), (_Unseeded, "deterministic"),
    (_Quantiles, "quality"), (_WorseSweep, "cluster_many"), (_NoValidation, "errors"),
    (_Positional, "params"), (_FarCentroid, "shapes"),
], ids=lambda v: v.__name__.strip("_") if isinstance(v, type) else v)
def test_suite_rejects_broken_clusterers(broken, check):
    with pytest.raises(AssertionError):
        CHECKS[check](context(broken))
    CHECKS[check](context(Sorted1DClusterer))


def test_optimal_inertia_dp_matches_kmeans1d(monkeypatch):
    pytest.importorskip("kmeans1d")
    w = typical_weights(120, seed=5)
    with_lib = optimal_inertia(w, 6)
    monkeypatch.setitem(sys.modules, "kmeans1d", None)  # force the built-in dynamic programme
    assert optimal_inertia(w, 6) == pytest.approx(with_lib, rel=1e-9)


# -- sorted1d ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,n,k", [("laplace", 3000, 16), ("mixture", 3000, 64), ("gauss", 2000, 200),
                                      ("mixture", 800, 256)])
def test_sorted1d_is_within_half_a_percent_of_the_optimum(kind, n, k):
    pytest.importorskip("kmeans1d")  # the built-in DP is too slow at these sizes
    w = typical_weights(n, seed=n + k, kind=kind)
    assert Sorted1DClusterer().cluster(w, k).inertia <= 1.005 * optimal_inertia(w, k)


def test_refinement_fixes_what_lloyd_cannot():
    """Lloyd from any init stalls a few percent above the optimum at moderate k; the banded DP
    recovers it."""
    w = typical_weights(3000, seed=1, kind="laplace")
    refined = Sorted1DClusterer().cluster(w, 64).inertia
    for init in ("density", "linear", "quantile"):
        plain = Sorted1DClusterer(init=init, refine=False).cluster(w, 64).inertia
        assert plain > 1.01 * refined


def test_band_dp_is_exact_within_its_band():
    """With a band spanning every cluster and a step per weight, the DP is the full exact DP."""
    w = typical_weights(60, seed=2, kind="mixture").astype(np.float64)
    data = s1d.SortedWeights(w)
    k = 4
    b = s1d.lloyd(data, s1d.init_linear(data, k, None), k, 1000)
    nb, value = s1d.band_dp(data, b, band=k, steps=60)
    assert value == pytest.approx(optimal_inertia(w, k), rel=1e-9)
    assert float(s1d._stats(data, nb)[2].sum()) == pytest.approx(value, rel=1e-9)


def test_cluster_many_equals_cluster_per_k():
    w = typical_weights(5000, seed=3)
    ks = [2, 3, 17, 100, 1024, 1]
    many = Sorted1DClusterer(seed=4).cluster_many(w, ks)
    for k, res in zip(ks, many):
        one = Sorted1DClusterer(seed=4).cluster(w, k)
        assert res.centroids.tobytes() == one.centroids.tobytes() and res.inertia == one.inertia
        assert np.array_equal(res.labels, one.labels)


def test_batched_sweeps_equal_single_k_in_every_batch_shape(monkeypatch):
    """The sweep solves the banded DPs of all k together, split into batches of bounded size; any
    split gives what each k gives alone, and requests with different candidate counts mix."""
    w = typical_weights(3000, seed=11)
    ks = [3, 40, 7, 300, 40, 120]
    alone = [Sorted1DClusterer().cluster(w, k) for k in ks]
    for cap in (1, 64, 1 << 20):
        monkeypatch.setattr(s1d, "_BATCH_STEPS", cap)
        for a, b in zip(Sorted1DClusterer().cluster_many(w, ks), alone):
            assert a.centroids.tobytes() == b.centroids.tobytes() and a.inertia == b.inertia
    data = s1d.SortedWeights(w.astype(np.float64))
    reqs = [(s1d.lloyd(data, s1d.init_linear(data, k, None), k, 50), band, steps)
            for k, band, steps in ((5, 1, 8), (30, 3, 3), (12, 2, 4))]
    for req, (nb, value) in zip(reqs, s1d.band_dp_many(data, reqs)):
        one_nb, one_value = s1d.band_dp(data, *req)
        assert np.array_equal(nb, one_nb) and value == one_value
        assert value == pytest.approx(float(s1d._stats(data, nb)[2].sum()), rel=1e-9)


class _Doubled(s1d.SortedWeights):
    """Every weight counted twice through the prefix sums: what per-weight importances would do."""

    def __init__(self, w):
        super().__init__(w)
        self.p1 *= 2
        self.p2 *= 2

    def counts(self, pos):
        return 2.0 * np.asarray(pos, dtype=np.float64)


def test_counts_enter_every_statistic():
    """Weighting every weight by 2 through ``counts`` and the prefix sums gives the clustering of the
    weights repeated twice: no step counts positions instead of weights."""
    w = typical_weights(2000, seed=12).astype(np.float64)

    class Weighted(Sorted1DClusterer):
        def _prepare(self, w):
            return _Doubled(w)

    for k in (2, 9, 60):
        a = Weighted(init="linear", refine=False).cluster(w, k)
        b = Sorted1DClusterer(init="linear", refine=False).cluster(np.repeat(w, 2), k)
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-9)
        assert a.inertia == pytest.approx(b.inertia, rel=1e-9)
    data = _Doubled(w)
    b = s1d.lloyd(data, s1d.init_kmeanspp(data, 16, np.random.default_rng(0)), 16, 100)
    nb, value = s1d.band_dp(data, b, 2, 4)
    assert value == pytest.approx(float(s1d._stats(data, nb)[2].sum()), rel=1e-9)
    assert value <= float(s1d._stats(data, b)[2].sum()) * (1 + 1e-12)


def test_seeded_inits_depend_on_the_seed_and_only_on_it():
    data = s1d.SortedWeights(typical_weights(2000, seed=6).astype(np.float64))
    for init in ("random", "k-means++"):
        fn = s1d._INIT_FUNCS[init]
        a = fn(data, 20, np.random.default_rng(1))
        b = fn(data, 20, np.random.default_rng(1))
        c = fn(data, 20, np.random.default_rng(2))
        assert np.array_equal(a, b) and not np.array_equal(a, c)
        assert np.all(np.isin(a, data.sorted))  # both draw actual weights


def test_kmeanspp_draws_far_points_first():
    """D^2 sampling: with one far outlier and k=2, the second centroid is almost surely it."""
    w = np.concatenate([np.random.default_rng(0).normal(0, 0.01, 999), [5.0]])
    data = s1d.SortedWeights(w)
    hits = sum(5.0 in s1d.init_kmeanspp(data, 2, np.random.default_rng(s)) for s in range(20))
    assert hits >= 19


def test_density_init_follows_the_cube_root_rule():
    """Uniform weights: centroids evenly spread; the init puts fewer centroids per weight where the
    density is high (cube-root law) than equal-count quantiles do."""
    data = s1d.SortedWeights(np.linspace(-1, 1, 10001))
    np.testing.assert_allclose(s1d.init_density(data, 4, None), [-0.75, -0.25, 0.25, 0.75], atol=1e-3)
    lap = s1d.SortedWeights(np.sort(typical_weights(20000, seed=7, kind="laplace").astype(np.float64)))
    dens, quant = s1d.init_density(lap, 32, None), s1d.init_quantile(lap, 32, None)
    assert np.ptp(dens) > np.ptp(quant)  # reaches further into the tails


def test_empty_clusters_are_reseeded():
    """Linear init on heavy-tailed weights leaves most clusters empty; Lloyd re-seeds them."""
    w = np.concatenate([np.random.default_rng(1).normal(0, 0.01, 2000), [-3.0, 4.0]])
    res = Sorted1DClusterer(init="linear", refine=False).cluster(w, 50)
    assert res.centroids.size == 50 and np.unique(res.labels).size == 50


def test_repair_splits_only_clusters_with_two_distinct_values():
    """Rounding in the prefix sums can give a one-weight cluster a tiny positive squared error;
    the repair must still split a cluster that really holds two values (it used to loop forever)."""
    rng = np.random.default_rng(3)
    w = np.concatenate([rng.normal(100.0, 1.0, 500), [0.5, 0.5 + 1e-12]])
    data = s1d.SortedWeights(w)
    b = np.arange(data.n + 1)
    b = np.delete(b, 2)  # sorted positions 0 and 1 (the close pair) share a cluster: n - 1 clusters
    out = s1d._repair(data, b, data.n)
    np.testing.assert_array_equal(out, np.arange(data.n + 1))
    again = s1d._repair(data, np.array([0, 2, 2, data.n]), 4)  # an empty cluster to re-seed too
    assert again.size == 5 and np.all(np.diff(again) > 0)


def test_float32_fast_sort_matches_argsort():
    w32 = typical_weights(4001, seed=8)
    w32[:5] = [0.0, -0.0, 0.0, np.float32(1e-45), -np.float32(1e-45)]
    for w in (w32.astype(np.float64), np.random.default_rng(0).normal(size=999)):  # fast path, fallback
        order, sorted_ = s1d._argsort(w)
        assert np.array_equal(sorted_, np.sort(w)) and np.array_equal(w[order], sorted_)


def test_bad_settings_raise():
    w = typical_weights(100)
    with pytest.raises(wsx.InvalidSettingError, match="init"):
        Sorted1DClusterer(init="kmeans").cluster(w, 4)
    with pytest.raises(wsx.InvalidSettingError, match="max_iter"):
        Sorted1DClusterer(max_iter=0).cluster_many(w, [4])


# -- torch and cupy ----------------------------------------------------------------------------------
def test_import_wsx_does_not_import_torch_or_cupy():
    code = ("import sys, wsx; wsx.plugins.clusterers(); "
            "print('torch' in sys.modules, 'cupy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_torch_and_cupy_report_a_missing_framework(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("torch", "cupy") else real(name, *a))
    from wsx.plugins import install_hint

    assert TorchClusterer.available() == (False, f"torch is not installed; {install_hint('torch')}")
    assert CupyClusterer.available() == (False, f"cupy is not installed; {install_hint('cupy')}")


def test_cupy_is_unavailable_without_cuda():
    ok, why = CupyClusterer.available()
    if ok:
        pytest.skip("CUDA and cupy are present here")
    assert "cupy" in why


def test_torch_matches_sorted1d():
    pytest.importorskip("torch")
    w = typical_weights(20000, seed=9)
    ks = [1, 2, 33, 300]
    for a, b in zip(TorchClusterer().cluster_many(w, ks), Sorted1DClusterer().cluster_many(w, ks)):
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-9, atol=1e-12)
        assert np.mean(a.labels == b.labels) > 0.999
        assert a.inertia == pytest.approx(b.inertia, rel=1e-6)


def test_torch_tensors_stay_on_their_device():
    torch = pytest.importorskip("torch")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    w = typical_weights(3000, seed=10).reshape(30, 100)
    ref = Sorted1DClusterer().cluster(w, 16)
    for device in devices:
        t = torch.as_tensor(w, device=device)
        res = TorchClusterer().cluster_tensor(t, 16)
        assert res.centroids.device.type == res.labels.device.type == device
        assert res.labels.dtype == torch.int64 and res.labels.shape == (3000,)
        shared = res.reconstruct()
        assert float(((t.reshape(-1).double() - shared) ** 2).sum()) == pytest.approx(res.inertia, rel=1e-9)
        assert res.inertia == pytest.approx(ref.inertia, rel=1e-6)
        np.testing.assert_allclose(res.numpy().centroids, ref.centroids, rtol=1e-9)
        trivial = TorchClusterer().cluster_many_tensor(t[:2], [1, 200])
        assert trivial[0].centroids.numel() == 1 and trivial[1].inertia == 0.0
        with pytest.raises(wsx.InvalidModelError):
            TorchClusterer().cluster_tensor(torch.tensor([1.0, float("nan")], device=device), 1)
        with pytest.raises(wsx.InvalidSettingError):
            TorchClusterer().cluster_tensor(t, 0)


# -- sample weights (per-weight importances) ---------------------------------------------------------
@pytest.mark.parametrize("init", ["density", "quantile", "k-means++"])
def test_integer_sample_weights_equal_repeated_weights(init):
    """Weighting a weight by m is clustering it m times: the exact optima agree, sorted1d lands on
    them, and plain Lloyd from the same start takes the same steps."""
    rng = np.random.default_rng(4)
    w = typical_weights(500, seed=9).astype(np.float64)
    s = rng.integers(1, 4, w.size)
    for k in (2, 6, 20):
        best = optimal_inertia(w, k, s)
        assert best == pytest.approx(optimal_inertia(np.repeat(w, s), k), rel=1e-9)
        assert Sorted1DClusterer(init=init).cluster(w, k, sample_weight=s).inertia <= best * 1.005
        a = Sorted1DClusterer(init="linear", refine=False).cluster(w, k, sample_weight=s)
        b = Sorted1DClusterer(init="linear", refine=False).cluster(np.repeat(w, s), k)
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-9)
        assert np.array_equal(np.repeat(a.labels, s), b.labels)


def test_sample_weights_pull_centroids_towards_important_weights():
    w = typical_weights(2000, seed=3).astype(np.float64)
    s = np.where(w > 0.05, 1000.0, 1.0)  # the right tail matters most
    plain = Sorted1DClusterer().cluster(w, 8)
    weighted = Sorted1DClusterer().cluster(w, 8, sample_weight=s)
    right = w > 0.05
    err = lambda c: float(np.sum((w[right] - c.reconstruct()[right]) ** 2))  # noqa: E731
    assert err(weighted) < 0.5 * err(plain)
    assert (weighted.centroids > 0.05).sum() > (plain.centroids > 0.05).sum()


def test_torch_matches_sorted1d_with_sample_weights():
    w = typical_weights(5000, seed=5)
    s = np.random.default_rng(1).lognormal(0, 1.5, w.size)
    for k in (1, 3, 17):
        a = Sorted1DClusterer().cluster(w, k, sample_weight=s)
        b = TorchClusterer().cluster(w, k, sample_weight=s)
        np.testing.assert_allclose(a.centroids, b.centroids, rtol=1e-9)
        assert a.inertia == pytest.approx(b.inertia, rel=1e-9)
    torch = pytest.importorskip("torch")
    t = TorchClusterer().cluster_tensor(torch.from_numpy(w), 5, sample_weight=torch.from_numpy(s))
    assert t.inertia == pytest.approx(Sorted1DClusterer().cluster(w, 5, sample_weight=s).inertia, rel=1e-9)


def test_tiny_sample_weights_keep_every_cluster_defined():
    w = typical_weights(500, seed=2).astype(np.float64)
    s = np.where(np.arange(w.size) % 7 == 0, 1.0, 0.0)  # most weights do not matter at all
    res = Sorted1DClusterer().cluster(w, 12, sample_weight=s)
    assert np.all(np.isfinite(res.centroids)) and res.centroids.size == 12
    assert np.array_equal(np.unique(res.labels), np.arange(12))
