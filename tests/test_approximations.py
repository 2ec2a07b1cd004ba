"""Approximations: the conformance suite over every registered one (and a third-party one), the
pruning and quantization formulas, and explore end to end with them on every backend."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from conftest import torch_state_bytes
from wsx.approximation import Approximated, Approximation
from wsx.layers import LayerInfo
from wsx.testing.approximations import CHECKS, check_approximation, context
from wsx_plugins.approximations.pruning import Pruning
from wsx_plugins.approximations.quantization import Quantization
from wsx_plugins.approximations.weight_sharing import WeightSharing
from wsx_plugins.approximations.ws_pruning import WeightSharingPruning

NAMES = sorted(wsx.plugins.approximations())


def small_dc(**kw):
    return wsx.plugins.strategies()["divide-and-conquer"](**{"pop_size": 8, "generations": 3, **kw})


def layer(shape, name="w", kind="Linear") -> LayerInfo:
    return LayerInfo(name, tuple(shape), int(np.prod(shape)), kind, (name,))


def laplace(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).laplace(0, 0.05, size=shape).astype(np.float32)


# -- conformance over every registered approximation ----------------------------------------------
@pytest.fixture(scope="module")
def contexts():
    """One Context per approximation, so that checks share its (slow, for k-means) apply_many."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = context(wsx.plugins.approximations()[name])
        return cache[name]
    return get


def test_builtins_are_registered():
    assert {"weight-sharing", "pruning", "quantization", "weight-sharing+pruning"} <= set(NAMES)


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", NAMES)
def test_conformance(contexts, name, check):
    CHECKS[check](contexts(name))


# -- a third-party approximation, registered in process -------------------------------------------
class MantissaTruncation(Approximation):
    """Keeps m of float32's 23 mantissa bits (rounding toward zero); a weight costs 1 + 8 + m bits."""

    name = "test-mantissa"
    knob_name = "mantissa_bits"
    idempotent = True

    def __init__(self, *, bits: int = 32, grid: tuple = (0, 2, 4, 7, 10)):
        self.bits = bits
        self.grid = grid

    def knob_values(self, layer):
        return sorted(self.grid)

    def check_knob(self, layer, knob):
        if isinstance(knob, bool) or int(knob) != knob or not 0 <= knob <= 23:
            raise wsx.InvalidSettingError(f"mantissa bits {knob!r} outside [0, 23]")
        return int(knob)

    def size_bits(self, layer, knob):
        return layer.size * (9 + self.check_knob(layer, knob))

    def apply(self, weights, knob, *, layer, clusterer=None):
        m = self.check_knob(layer, knob)
        w = np.ascontiguousarray(weights, dtype=np.float32)
        keep = np.uint32((0xFFFFFFFF << (23 - m)) & 0xFFFFFFFF)
        out = (w.view(np.uint32) & keep).view(np.float32)
        return Approximated(out, float(np.sum((w.astype(np.float64) - out) ** 2)), {"m": m})


class _ThirdParty:
    @wsx.hookimpl
    def wsx_approximations(self):
        return [MantissaTruncation]


@pytest.fixture
def third_party():
    wsx.plugins.register(_ThirdParty(), name="test-mantissa-plugin")
    try:
        yield "test-mantissa"
    finally:
        wsx.plugins.unregister("test-mantissa-plugin")


def test_third_party_approximation_passes_the_suite_and_explores(third_party, lenet):
    cls = wsx.plugins.approximations()[third_party]
    assert cls is MantissaTruncation
    check_approximation(cls)
    model, data = lenet
    r = wsx.explore(model, data, approximation=third_party, strategy=small_dc(pop_size=4, generations=2),
                    knobs=[2, 7], progress=False)
    assert r.approximation == third_party and r.front
    assert all(v in (2, 7) for c in r.history for v in c.knobs.values())


def test_third_party_is_gone_after_unregister():
    assert "test-mantissa" not in wsx.plugins.approximations()


# -- the suite rejects broken approximations --------------------------------------------------------
class _PrunesLargest(Pruning):
    def apply_many(self, weights, knobs, *, layer, clusterer=None):
        out = []
        for kn in knobs:
            w = np.asarray(weights, np.float32).copy().ravel()
            idx = np.argsort(-np.abs(w), kind="stable")[:round(self.check_knob(layer, kn) * w.size)]
            err = float(np.sum(w[idx].astype(np.float64) ** 2))
            w[idx] = 0
            out.append(Approximated(w.reshape(np.shape(weights)), err, {}))
        return out

    decode = None


class _InPlace(Pruning):
    def apply_many(self, weights, knobs, *, layer, clusterer=None):
        out = super().apply_many(weights, knobs, layer=layer)
        weights[...] = out[-1].weights
        return out


class _Float64(Pruning):
    def apply_many(self, weights, knobs, *, layer, clusterer=None):
        return [Approximated(r.weights.astype(np.float64), r.proxy, r.payload)
                for r in super().apply_many(weights, knobs, layer=layer)]


class _ProxyBackwards(Pruning):
    def apply_many(self, weights, knobs, *, layer, clusterer=None):
        return [Approximated(r.weights, 1.0 / (1.0 + r.proxy), r.payload)
                for r in super().apply_many(weights, knobs, layer=layer)]


class _AcceptsAnything(Pruning):
    def check_knob(self, layer, knob):
        return knob


class _ConstantSize(Pruning):
    def size_bits(self, layer, knob):
        return layer.size * self.bits


class _Random(Pruning):
    def apply_many(self, weights, knobs, *, layer, clusterer=None):
        noise = np.random.default_rng().normal(0, 1e-6, np.shape(weights)).astype(np.float32)
        return [Approximated(r.weights + noise, r.proxy, r.payload)
                for r in super().apply_many(weights, knobs, layer=layer)]


class _Positional(Pruning):
    def __init__(self, bits=32, sparsities=None):
        super().__init__(bits=bits, sparsities=sparsities)


class _BadDecode(Pruning):
    def decode(self, payload, layer):
        return super().decode(payload, layer) * np.float32(1.0001)


@pytest.mark.parametrize("broken,check", [
    (_PrunesLargest, "idempotent"), (_InPlace, "apply"), (_Float64, "apply"),
    (_ProxyBackwards, "proxy_monotone"), (_AcceptsAnything, "invalid_knobs"), (_ConstantSize, "size"),
    (_Random, "deterministic"), (_Positional, "params"), (_BadDecode, "decode"),
], ids=lambda v: v.__name__.strip("_") if isinstance(v, type) else v)
def test_suite_rejects_broken_approximations(broken, check):
    with pytest.raises(AssertionError):
        CHECKS[check](context(broken))
    CHECKS[check](context(Pruning))  # the unbroken one passes the same check


# -- pruning ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sparsity,expected", [
    (0.0, 32_000),                  # untouched: dense W*B
    (0.02, 32_000),                 # bitmap 1000 + 980*32 = 32 360 > dense
    (0.5, 1000 + 500 * 32),         # bitmap 17 000 < coo 500*(10+32) = 21 000
    (0.95, 50 * (10 + 32)),         # coo 2100 < bitmap 1000 + 50*32 = 2600
    (0.9999, 1 * (10 + 32)),        # one weight is always kept
])
def test_pruning_size_is_the_cheapest_stated_format(sparsity, expected):
    assert Pruning().size_bits(layer((40, 25)), sparsity) == expected


def test_pruning_keeps_at_least_one_weight():
    lay = layer((3, 3))
    res = Pruning().apply(laplace(lay.shape), 0.99, layer=lay)
    assert np.count_nonzero(res.weights) == 1 and Pruning().size_bits(lay, 0.99) == 4 + 32


def test_pruning_size_with_smaller_baseline_width():
    lay = layer((40, 25))
    assert Pruning(bits=8).size_bits(lay, 0.5) == min(8000, 1000 + 500 * 8, 500 * 18)
    assert Pruning(bits=8).size_bits(lay, 0.0) == 8000


def test_pruning_zeroes_the_smallest_magnitudes_and_reports_their_norm():
    lay = layer((30, 20))
    w = laplace(lay.shape)
    res = Pruning().apply(w, 0.7, layer=lay)
    n = round(0.7 * w.size)
    zeroed = res.weights == 0
    assert zeroed.sum() == n
    assert np.abs(w[zeroed]).max() <= np.abs(w[~zeroed]).min()
    np.testing.assert_array_equal(res.weights[~zeroed], w[~zeroed])
    assert res.proxy == pytest.approx(float(np.sum(w[zeroed].astype(np.float64) ** 2)), rel=1e-9)
    untouched = Pruning().apply(w, 0.0, layer=lay)
    assert untouched.weights.tobytes() == w.tobytes() and untouched.proxy == 0


@pytest.mark.parametrize("sparsity,fmt", [(0.0, "dense"), (0.5, "bitmap"), (0.95, "coo")])
def test_pruning_payload_is_the_stated_format_and_restores_exactly(sparsity, fmt):
    lay = layer((40, 25))
    w = laplace(lay.shape)
    appr = Pruning()
    res = appr.apply(w, sparsity, layer=lay)
    assert res.payload["format"] == fmt
    assert res.payload["values"].size == lay.size - round(sparsity * lay.size)
    assert appr.decode(res.payload, lay).tobytes() == res.weights.tobytes()


def test_pruning_knob_grid_and_groups():
    lay = layer((10, 10))
    assert Pruning().knob_values(lay) == [round(0.05 * i, 2) for i in range(20)]
    appr = Pruning(sparsities=[0.9, 0.5, 0.5, 0])
    assert appr.knob_values(lay) == [0.0, 0.5, 0.9]
    assert len({appr.group_key(lay, s) for s in appr.knob_values(lay)}) == 3


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, 90, "x", "0.5", None, True, float("nan")])
def test_pruning_rejects_bad_sparsity(bad):
    with pytest.raises(wsx.InvalidSettingError, match=r"outside \[0, 1\)"):
        Pruning().check_knob(layer((4, 4)), bad)


# -- quantization --------------------------------------------------------------------------------------
def test_quantization_size_per_tensor_and_per_channel():
    conv = layer((16, 8, 3, 3), kind="Conv2d")
    assert Quantization().size_bits(conv, 4) == 1152 * 4 + 2 * 32
    assert Quantization(granularity="channel").size_bits(conv, 4) == 1152 * 4 + 16 * 2 * 32
    keras = layer((3, 3, 8, 16), kind="Conv2D")
    assert Quantization(granularity="channel", channel_axis=-1, bits=16).size_bits(keras, 8) == 1152 * 8 + 16 * 2 * 16


@pytest.mark.parametrize("n_bits", [2, 3, 5, 8])
def test_quantization_grid_error_and_zero(n_bits):
    lay = layer((30, 20))
    w = laplace(lay.shape)
    w[0, :5] = 0
    res = Quantization().apply(w, n_bits, layer=lay)
    levels = np.unique(res.weights)
    assert levels.size <= 2 ** n_bits
    assert np.all(res.weights[0, :5] == 0)  # zero is exactly representable
    lo, hi = min(w.min(), 0), max(w.max(), 0)
    step = (hi - lo) / (2 ** n_bits - 1)
    assert np.abs(res.weights - w).max() <= step / 2 * (1 + 1e-5)
    np.testing.assert_allclose(np.diff(levels) / step, np.round(np.diff(levels) / step), atol=1e-3)  # one grid
    assert res.proxy == pytest.approx(float(np.sum((w.astype(np.float64) - res.weights) ** 2)), rel=1e-9)
    assert res.payload["q"].max() <= 2 ** n_bits - 1


def test_quantization_per_channel_scales_each_channel():
    lay = layer((4, 50))
    w = laplace(lay.shape) * np.array([[1.0], [10.0], [0.1], [0.01]], dtype=np.float32)
    tensor = Quantization().apply(w, 4, layer=lay)
    channel = Quantization(granularity="channel").apply(w, 4, layer=lay)
    assert channel.proxy < tensor.proxy
    assert channel.payload["scale"].shape == (4,)
    for row in range(4):  # each row on its own 16-level grid
        assert np.unique(channel.weights[row]).size <= 16
        assert np.abs(channel.weights[row] - w[row]).max() <= np.ptp(np.r_[w[row], 0]) / 15 / 2 * (1 + 1e-5)
    # keras layout (channels last) with channel_axis=-1 is the transposed torch result
    keras = Quantization(granularity="channel", channel_axis=-1).apply(w.T.copy(), 4, layer=layer((50, 4)))
    np.testing.assert_array_equal(keras.weights, channel.weights.T)


@pytest.mark.parametrize("appr,knob,match", [
    (Quantization(), 1, r"outside \[2, 8\]"), (Quantization(), 9, r"outside \[2, 8\]"),
    (Quantization(), 2.5, r"outside \[2, 8\]"), (Quantization(), "4", r"outside \[2, 8\]"),
    (Quantization(granularity="row"), 4, "granularity"),
    (Quantization(granularity="channel", channel_axis=2), 4, "channel_axis"),
    (Quantization(min_bits=6, max_bits=3), 4, "min_bits"),
])
def test_quantization_rejects_bad_settings(appr, knob, match):
    with pytest.raises(wsx.InvalidSettingError, match=match):
        appr.size_bits(layer((4, 5)), knob)


def test_quantization_wider_range_and_decode():
    lay = layer((6, 7))
    appr = Quantization(min_bits=1, max_bits=16, granularity="channel")
    assert appr.knob_values(lay) == list(range(1, 17))
    w = laplace(lay.shape)
    for b in (1, 12, 16):
        res = appr.apply(w, b, layer=lay)
        assert appr.decode(res.payload, lay).tobytes() == res.weights.tobytes()


# -- weight sharing + pruning ----------------------------------------------------------------------------
@pytest.mark.parametrize("knob,expected", [
    ((0.0, 16), 1000 * 4 + 16 * 32),          # nothing pruned: plain weight sharing
    ((0.5, 16), 1000 + 500 * 4 + 16 * 32),    # bitmap 3512 < indexed 5512, coo 7512
    ((0.9, 4), 1000 + 100 * 2 + 4 * 32),      # bitmap and coo tie at 1328
    ((0.95, 2), 50 * (10 + 1) + 2 * 32),      # coo 614 < bitmap 1114
    ((0.01, 100), 1000 * 7 + 100 * 32),       # indexed, zero as code 101 of 128: 10200 < bitmap 11130
])
def test_ws_pruning_size_is_the_cheapest_stated_format(knob, expected):
    assert WeightSharingPruning().size_bits(layer((40, 25)), knob) == expected


@pytest.fixture(scope="module")
def clusterer():
    from wsx.engine import resolve_clusterer

    return resolve_clusterer(None, 0)


def test_ws_pruning_prunes_then_shares(clusterer):
    lay = layer((20, 30))
    w = laplace(lay.shape)
    appr = WeightSharingPruning()
    res = appr.apply(w, (0.6, 8), layer=lay, clusterer=clusterer)
    zero = res.weights == 0
    assert zero.sum() == 360 and np.abs(w[zero]).max() <= np.abs(w[~zero]).min()
    assert np.unique(res.weights[~zero]).size <= 8
    assert res.proxy == pytest.approx(float(np.sum((w.astype(np.float64) - res.weights) ** 2)), rel=1e-6)
    assert appr.decode(res.payload, lay).tobytes() == res.weights.tobytes()
    plain = WeightSharing().apply(w, 8, layer=lay, clusterer=clusterer)  # sparsity 0 is weight sharing
    same = appr.apply(w, (0.0, 8), layer=lay, clusterer=clusterer)
    assert same.weights.tobytes() == plain.weights.tobytes() and same.proxy == pytest.approx(plain.proxy)
    assert appr.size_bits(lay, (0.0, 8)) == WeightSharing().size_bits(lay, 8)


def test_ws_pruning_knobs():
    lay = layer((4, 5))
    appr = WeightSharingPruning(sparsities=[0.0, 0.5], ks=[2, 16])
    assert set(appr.knob_values(lay)) == {(0.0, 2), (0.0, 16), (0.5, 2)}  # k=16 > 10 kept weights
    assert appr.check_knob(lay, [0.5, 4]) == (0.5, 4)  # as read back from JSON
    assert appr.group_key(lay, (0.5, 3)) == appr.group_key(lay, (0.5, 4)) != appr.group_key(lay, (0.0, 4))
    for bad in [(0.5, 11), (1.0, 2), (0.5, 2.5), 4, "x"]:
        with pytest.raises(wsx.InvalidSettingError, match="sparsity"):
            appr.check_knob(lay, bad)


# -- explore end to end ----------------------------------------------------------------------------------
KNOBS = {"pruning": [0.5, 0.8], "quantization": [3, 6]}


def _framework(name):
    try:
        model, data = wsx.zoo.load("lenet5-digits", framework=name)
    except (wsx.PluginUnavailableError, ImportError) as exc:
        pytest.skip(f"{name}: {exc}")
    if wsx.plugins.backend_for(model) is None:
        pytest.skip(f"no backend for {name} models is registered")
    return model, data


@pytest.mark.parametrize("approximation", ["pruning", "quantization"])
@pytest.mark.parametrize("framework", ["torch", "keras", "jax"])
def test_explore_with_approximation_on_every_backend(framework, approximation):
    model, data = _framework(framework)
    # failing candidates stay on the front (scored in full; relaxed layers keep their best per group)
    r = wsx.explore(model, data, approximation=approximation, knobs=KNOBS[approximation], progress=False,
                    strategy=small_dc(layerwise="scan"), early_rejection=False)
    appr = wsx.plugins.approximations()[approximation]()
    sizes = {entry["name"]: entry["size"] for entry in r.layers}
    assert r.approximation == approximation and r.front and r.scorings >= 10
    assert r.baseline.bits == 32 * sum(sizes.values())
    for c in r.history:
        assert set(c.knobs.values()) <= set(KNOBS[approximation])
        expected = sum(appr.size_bits(layer((s,), n), c.knobs[n]) if n in c.knobs else 32 * s
                       for n, s in sizes.items())
        assert c.size_bits == expected and c.compression_rate == pytest.approx(r.baseline.bits / expected)
    assert max(c.compression_rate for c in r.front) > 1.5  # pruning half of several layers at least


@pytest.mark.parametrize("approximation", [Pruning(sparsities=[0.6, 0.9]),
                                           Quantization(granularity="channel", min_bits=3, max_bits=4),
                                           WeightSharingPruning(sparsities=[0.0, 0.6], ks=[16])],
                         ids=["pruning", "quantization-channel", "weight-sharing+pruning"])
def test_explore_restores_model_and_apply_writes_what_was_scored(lenet, approximation, tmp_path):
    import copy

    import torch

    model, data = lenet
    before = torch_state_bytes(model)
    r = wsx.explore(model, data, approximation=approximation, strategy=small_dc(pop_size=4, generations=2),
                    progress=False)
    assert torch_state_bytes(model) == before
    r.save(tmp_path, plot=False)
    clusterer = wsx.plugins.clusterers()[r.clusterer](seed=0) if r.clusterer else None
    loaded = wsx.Result.load(tmp_path)  # knobs come back from JSON (a pair becomes a list)
    best = max(r.front, key=lambda c: c.compression_rate)
    best_loaded = max(loaded.front, key=lambda c: c.compression_rate)
    for res, cand in [(r, best), (loaded, best_loaded)]:
        target = copy.deepcopy(model)
        wsx.apply(target, cand, result=res)  # rebuilds the approximation from the recorded parameters
        state = dict(target.named_parameters())
        for name, knob in best.knobs.items():
            w = dict(model.named_parameters())[name].detach().numpy()
            expected = approximation.apply(w, knob, layer=layer(w.shape, name), clusterer=clusterer).weights
            np.testing.assert_array_equal(state[name].detach().numpy(), expected)
        with torch.no_grad():
            outputs = target(torch.as_tensor(data[0])).numpy()
        assert float(np.mean(outputs.argmax(1) == data[1])) == pytest.approx(best.accuracy)


def test_saved_result_and_report_with_pair_knobs(lenet, tmp_path):
    """A knob that is a pair (weight-sharing+pruning) survives results.json, the CSV and the report."""
    model, data = lenet
    knobs = [(0.5, 4), (0.5, 16)]
    r = wsx.explore(model, data, approximation="weight-sharing+pruning", knobs=knobs, out=tmp_path,
                    strategy=small_dc(pop_size=4, generations=2), progress=False)
    assert {"results.json", "results.csv", "front.png", "report.html"} <= {p.name for p in tmp_path.iterdir()}
    loaded = wsx.Result.load(tmp_path)
    assert [tuple(v) for c in loaded.history for v in c.knobs.values()] == \
        [v for c in r.history for v in c.knobs.values()]


@pytest.mark.parametrize("strategy", sorted(wsx.plugins.strategies()))
@pytest.mark.parametrize("approximation", ["pruning", pytest.param("quantization", marks=pytest.mark.slow)])
def test_every_strategy_runs_pruning_and_quantization(lenet, strategy, approximation):
    """Pruning's float knobs, listed by falling size, are the unusual case; quantization's small
    integers look like weight sharing's k to a strategy (marked slow: ``-m "not slow"`` skips them)."""
    model, data = lenet
    r = wsx.explore(model, data, approximation=approximation, strategy=strategy, budget=16,
                    knobs=KNOBS[approximation], progress=False, early_rejection=False)
    assert r.approximation == approximation and r.front and 0 < r.scorings <= 16
    assert all(set(c.knobs.values()) <= set(KNOBS[approximation]) for c in r.history)
