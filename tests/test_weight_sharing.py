"""Weight sharing: sharing granularities (layer / channel / kernel) with their size accounting and
payload layout, zero preservation for pruned layers, and the default clusterer through it."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from wsx.layers import LayerInfo
from wsx.metrics import weight_sharing_bits
from wsx.testing.approximations import check_approximation
from wsx.testing.clusterers import typical_weights
from wsx_plugins.approximations.weight_sharing import WeightSharing, group_axes
from wsx_plugins.clusterers.sorted1d import Sorted1DClusterer

CONV = LayerInfo("conv.weight", (8, 4, 3, 3), 288, "Conv2d", ("conv",))        # torch: out, in, kh, kw
KERAS = LayerInfo("conv/kernel", (3, 3, 4, 8), 288, "Conv2D", ("conv",))       # keras: kh, kw, in, out
FC = LayerInfo("fc.weight", (24, 32), 768, "Linear", ("fc",))
BIAS = LayerInfo("fc.bias", (24,), 24, "Linear", ("fc",))


@pytest.fixture(scope="module")
def clusterer():
    return Sorted1DClusterer()


def weights(layer: LayerInfo, seed: int = 0) -> np.ndarray:
    return typical_weights(layer.size, seed=seed).reshape(layer.shape)


# -- granularity: groups and sizes -------------------------------------------------------------------
def test_groups_per_granularity():
    assert group_axes(CONV.shape, "layer") == ((0, 1, 2, 3), 1, "layer")
    assert group_axes(CONV.shape, "channel") == ((0, 1, 2, 3), 8, "channel")
    assert group_axes(CONV.shape, "kernel") == ((0, 1, 2, 3), 32, "kernel")
    assert group_axes(KERAS.shape, "channel", -1) == ((3, 0, 1, 2), 8, "channel")
    assert group_axes(KERAS.shape, "kernel", -1) == ((3, 2, 0, 1), 32, "kernel")
    assert group_axes(FC.shape, "kernel") == ((0, 1), 24, "channel")  # no 2-D kernels in a Linear
    assert group_axes(BIAS.shape, "channel") == ((0,), 1, "layer")


@pytest.mark.parametrize("granularity,layer,k,expected", [
    ("layer", CONV, 16, 288 * 4 + 16 * 32),
    ("channel", CONV, 16, 288 * 4 + 8 * 16 * 32),            # W*ceil(log2 k) + groups*k*B
    ("channel", CONV, 5, 288 * 3 + 8 * 5 * 32),
    ("kernel", CONV, 16, 288 * 4 + 32 * 9 * 32),             # k capped at the 9 weights of a kernel
    ("kernel", CONV, 4, 288 * 2 + 32 * 4 * 32),
    ("kernel", FC, 8, 768 * 3 + 24 * 8 * 32),                # falls back to per output channel
    ("channel", BIAS, 4, weight_sharing_bits(24, 4, 32)),    # falls back to per layer
])
def test_size_accounting(granularity, layer, k, expected):
    appr = WeightSharing(granularity=granularity)
    assert appr.size_bits(layer, k) == expected
    assert WeightSharing(granularity=granularity, bits=8).size_bits(layer, k) < expected


def test_layer_size_is_the_thesis_formula():
    for k in (1, 2, 5, 256):
        assert WeightSharing().size_bits(FC, k) == weight_sharing_bits(FC.size, k, 32)


def test_knob_values_are_capped_at_the_group_size():
    assert max(WeightSharing(granularity="kernel").knob_values(CONV)) == 9
    assert max(WeightSharing(granularity="channel").knob_values(CONV)) == 36
    assert max(WeightSharing().knob_values(CONV)) == 288
    assert WeightSharing(granularity="kernel").group_key(CONV, 300) == WeightSharing().group_key(CONV, 9)


def test_unknown_granularity_is_refused():
    with pytest.raises(wsx.InvalidSettingError, match="granularity"):
        WeightSharing(granularity="filter").size_bits(CONV, 4)


# -- granularity: what apply writes ----------------------------------------------------------------
@pytest.mark.parametrize("layer,axis", [(CONV, 0), (KERAS, -1)])
def test_channel_sharing_clusters_each_channel_alone(clusterer, layer, axis):
    w = weights(layer)
    res = WeightSharing(granularity="channel", channel_axis=axis).apply(w, 4, layer=layer, clusterer=clusterer)
    channels = np.moveaxis(w, axis, 0).reshape(8, -1)
    shared = np.moveaxis(res.weights, axis, 0).reshape(8, -1)
    total = 0.0
    for g in range(8):
        alone = clusterer.cluster(channels[g], 4)
        np.testing.assert_array_equal(shared[g], alone.reconstruct().astype(np.float32))
        np.testing.assert_array_equal(res.payload["codebook"][g], alone.centroids)
        total += alone.inertia
    assert res.proxy == pytest.approx(total, rel=1e-12)
    assert res.payload["codebook"].shape == (8, 4) and res.payload["indices"].shape == (8, 36)
    assert res.payload["granularity"] == "channel"


def test_channel_axis_matches_the_transposed_layout(clusterer):
    w = weights(CONV)
    torch_res = WeightSharing(granularity="kernel").apply(w, 3, layer=CONV, clusterer=clusterer)
    keras_w = np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))  # (kh, kw, in, out)
    keras_res = WeightSharing(granularity="kernel", channel_axis=-1).apply(keras_w, 3, layer=KERAS,
                                                                          clusterer=clusterer)
    np.testing.assert_array_equal(np.transpose(torch_res.weights, (2, 3, 1, 0)), keras_res.weights)
    assert keras_res.proxy == pytest.approx(torch_res.proxy, rel=1e-12)


def test_kernel_sharing_keeps_k_values_per_kernel(clusterer):
    w = weights(CONV, seed=1)
    res = WeightSharing(granularity="kernel").apply(w, 3, layer=CONV, clusterer=clusterer)
    for o in range(8):
        for i in range(4):
            assert np.unique(res.weights[o, i]).size <= 3
    assert res.proxy == pytest.approx(float(np.sum((w.astype(np.float64) - res.weights) ** 2)), rel=1e-5)


def test_finer_granularity_has_lower_error_at_equal_k(clusterer):
    w = weights(CONV, seed=2)
    errs = [WeightSharing(granularity=g).apply(w, 4, layer=CONV, clusterer=clusterer).proxy
            for g in ("layer", "channel", "kernel")]
    assert errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize("granularity", ["channel", "kernel"])
def test_torch_layout_payload_is_contiguous_groups(clusterer, granularity):
    """What the artifact relies on: with output channels first, group g owns the flattened weights
    [g*W/G, (g+1)*W/G), and the payload decodes to the written weights bit for bit."""
    appr = WeightSharing(granularity=granularity)
    w = weights(CONV, seed=3)
    for k, res in zip((2, 7), appr.apply_many(w, [2, 7], layer=CONV, clusterer=clusterer)):
        cb, idx = res.payload["codebook"], res.payload["indices"]
        flat = np.take_along_axis(cb, idx, axis=1).reshape(CONV.shape).astype(np.float32)
        assert flat.tobytes() == res.weights.tobytes()
        assert appr.decode(res.payload, CONV).tobytes() == res.weights.tobytes()
        assert np.all(np.diff(cb, axis=1) >= 0) and idx.max() < cb.shape[1] == min(k, CONV.size // cb.shape[0])


def test_padded_codebook_rows_are_never_indexed(clusterer):
    w = weights(CONV, seed=4)
    w[0] = 0.5  # channel 0 holds one value: its row is padded
    res = WeightSharing(granularity="channel").apply(w, 4, layer=CONV, clusterer=clusterer)
    assert np.all(res.payload["codebook"][0] == 0.5) and np.all(res.payload["indices"][0] == 0)


@pytest.mark.parametrize("options", [{"granularity": "channel"}, {"granularity": "kernel"},
                                     {"preserve_zeros": True},
                                     {"granularity": "channel", "channel_axis": -1, "preserve_zeros": True}])
def test_variants_pass_the_approximation_suite(clusterer, options):
    check_approximation(WeightSharing(**options), clusterer=clusterer)


# -- zero preservation -----------------------------------------------------------------------------
def pruned(layer: LayerInfo, fraction: float = 0.6, seed: int = 5) -> np.ndarray:
    w = weights(layer, seed=seed)
    w[np.abs(w) < np.quantile(np.abs(w), fraction)] = 0.0
    return w


def test_zeros_stay_exactly_zero_and_take_one_entry(clusterer):
    w = pruned(FC)
    zero = w == 0
    appr = WeightSharing(preserve_zeros=True)
    for k, res in zip((2, 5, 16), appr.apply_many(w, [2, 5, 16], layer=FC, clusterer=clusterer)):
        assert np.all(res.weights[zero] == 0) and np.all(res.weights[~zero] != 0)
        cb = res.payload["codebook"]
        assert cb.size == k and 0.0 in cb and np.all(np.diff(cb) > 0)
        assert np.unique(res.weights).size == k
        nonzero = clusterer.cluster(w[~zero], k - 1)  # the other k-1 values: the non-zeros alone
        np.testing.assert_array_equal(np.sort(cb[cb != 0]), nonzero.centroids)
        assert res.proxy == pytest.approx(nonzero.inertia, rel=1e-12)
        assert res.proxy == pytest.approx(float(np.sum((w.astype(np.float64) - res.weights) ** 2)), rel=1e-5)
        assert appr.decode(res.payload, FC).tobytes() == res.weights.tobytes()
        assert appr.size_bits(FC, k) == weight_sharing_bits(FC.size, k, 32)


def test_without_preservation_zeros_move(clusterer):
    w = pruned(FC)
    plain = WeightSharing().apply(w, 4, layer=FC, clusterer=clusterer)
    assert np.any(plain.weights[w == 0] != 0)  # the zeros' cluster has a non-zero mean


def test_k1_with_preserved_zeros_is_all_zero(clusterer):
    w = pruned(FC)
    res = WeightSharing(preserve_zeros=True).apply(w, 1, layer=FC, clusterer=clusterer)
    assert np.all(res.weights == 0) and res.proxy == pytest.approx(float(np.sum(w.astype(np.float64) ** 2)))


def test_preserve_zeros_per_channel(clusterer):
    w = pruned(CONV, 0.5)
    w[3] = 0.0  # a fully pruned channel
    res = WeightSharing(granularity="channel", preserve_zeros=True).apply(w, 3, layer=CONV, clusterer=clusterer)
    assert np.all(res.weights[w == 0] == 0) and np.all(res.weights[3] == 0)
    for g in range(8):
        assert np.unique(res.weights[g]).size <= 3


def test_no_zeros_means_k_values_for_the_weights(clusterer):
    w = weights(FC, seed=6)
    assert not np.any(w == 0)
    a = WeightSharing(preserve_zeros=True).apply(w, 8, layer=FC, clusterer=clusterer)
    b = WeightSharing().apply(w, 8, layer=FC, clusterer=clusterer)
    assert a.weights.tobytes() == b.weights.tobytes()


# -- through the engine ----------------------------------------------------------------------------
@pytest.mark.slow
def test_explore_per_channel_reports_the_grouped_size(lenet):
    model, data = lenet
    appr = WeightSharing(granularity="channel")
    strategy = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2)
    r = wsx.explore(model, data, strategy=strategy, approximation=appr, knobs=[2, 8], progress=False,
                    budget=30)
    sizes = {layer["name"]: LayerInfo(layer["name"], tuple(layer["shape"]), layer["size"], layer["kind"])
             for layer in r.layers}
    for c in r.history:
        expected = sum(appr.size_bits(sizes[n], c.knobs[n]) if n in c.knobs else 32 * sizes[n].size
                       for n in sizes)
        assert c.size_bits == expected
