"""Quality options of weight sharing: sensitivity-weighted clustering (per-weight importances from
the backends' gradients) and codebooks stored at B bits (float16, 8-bit affine)."""
from __future__ import annotations

import numpy as np
import pytest

import wsx
from wsx import plugins
from wsx.errors import InvalidSettingError
from wsx.layers import LayerInfo
from wsx.metrics import resolve_metric
from wsx.sensitivity import loss_target
from wsx.testing.approximations import check_approximation
from wsx.testing.clusterers import typical_weights
from wsx_plugins.approximations.weight_sharing import WeightSharing, affine_grid
from wsx_plugins.clusterers.sorted1d import Sorted1DClusterer

FC = LayerInfo("fc.weight", (24, 32), 768, "Linear", ("fc",))
CONV = LayerInfo("conv.weight", (8, 4, 3, 3), 288, "Conv2d", ("conv",))


def _weights(layer: LayerInfo, seed: int = 0) -> np.ndarray:
    return typical_weights(layer.size, seed=seed).reshape(layer.shape)


# -- sensitivity: which loss ------------------------------------------------------------------------
def test_loss_follows_the_metrics_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 3)).astype(np.float32)
    kind, target = loss_target(resolve_metric("top1"), np.array([0, 2, 1, 1]), logits, rng)
    assert kind == "ce" and target.tolist() == [0, 2, 1, 1]
    kind, target = loss_target(resolve_metric("mse"), logits + 1, logits, rng)
    assert kind == "mse" and np.array_equal(target, logits + 1)
    # no labels, or a metric that compares with the uncompressed model: the output distance's curvature
    for metric, labels in (("agreement", np.array([0, 2, 1, 1])), ("cosine", None)):
        kind, target = loss_target(resolve_metric(metric), labels, logits, rng)
        assert kind == "projection" and target.shape == logits.shape


# -- sensitivity: the backends' gradients ----------------------------------------------------------------
def _gradient_backends():
    return [cls for name, cls in sorted(plugins.backends().items())
            if cls.available()[0] and getattr(cls, "supports_gradients", False)]


def _importances(cls, metric, n=12):
    model, data = cls.conformance_example()
    be = cls(model, data, metric=metric)
    names = [layer.name for layer in be.layers()]
    return be, be.importances(names, np.arange(n))


@pytest.mark.parametrize("cls", _gradient_backends(), ids=lambda c: c.name)
def test_importances_are_squared_per_sample_gradients(cls):
    torch = pytest.importorskip("torch")
    be, imp = _importances(cls, "top1")
    # the same LeNet in torch, per-sample cross-entropy gradients squared and summed by hand
    ref_model, (x, y) = wsx.zoo.load("lenet5-digits", framework="torch")
    params = dict(ref_model.named_parameters())
    ref = {}
    for i in range(12):
        loss = torch.nn.functional.cross_entropy(ref_model(torch.from_numpy(x[i:i + 1])), torch.from_numpy(y[i:i + 1]))
        for name, g in zip(params, torch.autograd.grad(loss, list(params.values()))):
            ref[name] = ref.get(name, 0) + g.double().numpy() ** 2
    torch_names = [n for n in params if n.endswith("weight")]
    assert len(imp) == len(torch_names)
    for (name, got), tname in zip(imp.items(), torch_names):
        want = ref[tname]
        if got.shape != want.shape:  # Keras / Flax kernels: (kh, kw, in, out) or (in, out)
            want = np.transpose(want, (2, 3, 1, 0) if want.ndim == 4 else (1, 0))
        assert got.shape == tuple(be.layer(name).shape)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-4 * want.max())


@pytest.mark.parametrize("cls", _gradient_backends(), ids=lambda c: c.name)
def test_importances_without_labels_use_the_output_curvature(cls):
    _, imp = _importances(cls, "agreement")
    for arr in imp.values():
        assert np.all(np.isfinite(arr)) and arr.min() >= 0 and arr.max() > 0
    _, again = _importances(cls, "agreement")
    assert all(np.array_equal(imp[n], again[n]) for n in imp)  # seeded projections


# -- sensitivity: the weighted clustering ------------------------------------------------------------
def test_heavy_weights_pull_the_centroids():
    w = _weights(FC)
    heavy = np.argsort(w.ravel())[-20:]  # the largest weights matter most
    s = np.full(w.size, 1e-3)
    s[heavy] = 1e3
    plain = WeightSharing().apply(w, 4, layer=FC, clusterer=Sorted1DClusterer())
    weighted = WeightSharing(sensitivity="fisher").apply(w, 4, layer=FC, clusterer=Sorted1DClusterer(),
                                                         importance=s.reshape(w.shape))
    err = lambda part: np.abs(part.weights.ravel()[heavy] - w.ravel()[heavy]).sum()  # noqa: E731
    assert err(weighted) < 0.5 * err(plain)
    # k=1: the importance-weighted mean; the proxy is the weighted inertia
    one = WeightSharing(sensitivity="fisher").apply(w, 1, layer=FC, clusterer=Sorted1DClusterer(),
                                                    importance=s.reshape(w.shape))
    mean = np.average(w.ravel(), weights=s)
    assert one.payload["codebook"][0] == pytest.approx(mean)
    assert one.proxy == pytest.approx(float(np.sum(s * (w.ravel() - mean) ** 2)))


def test_per_channel_sensitivity_slices_the_importances_with_the_weights():
    w = _weights(CONV, seed=3)
    s = np.ones_like(w, dtype=np.float64)
    s[2] = 0.0  # a channel no gradient reaches clusters as if unweighted
    s[5, :, :, :] *= 7.0  # uniform within a channel: the same clustering as unweighted
    weighted = WeightSharing(granularity="channel", sensitivity="fisher").apply(
        w, 3, layer=CONV, clusterer=Sorted1DClusterer(), importance=s)
    plain = WeightSharing(granularity="channel").apply(w, 3, layer=CONV, clusterer=Sorted1DClusterer())
    np.testing.assert_array_equal(weighted.weights, plain.weights)


def test_explore_with_sensitivity_clusters_with_the_importances(lenet):
    model, (x, y) = lenet
    data = (x[:300], y[:300])
    appr = WeightSharing(sensitivity="fisher", k_values=4, k_max=16)
    r = wsx.explore(model, data, strategy="greedy", approximation=appr, subset=None, budget=20, progress=False)
    assert r.timings["importances"] > 0 and set(r.importances) == {layer["name"] for layer in r.layers}
    cand = r.front[-1]
    from wsx.engine import approximated_weights

    _, applied, _ = approximated_weights(model, cand, result=r)
    _, unweighted, _ = approximated_weights(model, cand, approximation=WeightSharing(), seed=0)
    assert any(not np.array_equal(applied[n], unweighted[n]) for n in applied)  # the importances were used
    with pytest.raises(InvalidSettingError, match="importance="):  # a result without them cannot be reproduced
        approximated_weights(model, cand, approximation=WeightSharing(sensitivity="fisher"), seed=0)


# -- codebooks stored at B bits ----------------------------------------------------------------------
@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_bits8_codebooks_lie_on_the_affine_grid(granularity):
    w = _weights(CONV, seed=1)
    for k in (2, 7, 64):
        part = WeightSharing(bits=8, granularity=granularity).apply(w, k, layer=CONV, clusterer=Sorted1DClusterer())
        for row in np.atleast_2d(part.payload["codebook"]):
            lo, hi = min(row.min(), 0.0), max(row.max(), 0.0)
            scale = (hi - lo) / 255
            steps = row / scale
            np.testing.assert_allclose(steps, np.round(steps), atol=1e-6)  # whole multiples of the step
            assert np.round(steps).max() - np.round(steps).min() <= 255
        # the applied weights are the stored values; the proxy is their error
        assert part.proxy == pytest.approx(float(np.sum((w.astype(np.float64) - part.weights) ** 2)), rel=1e-5)


def test_affine_grid_holds_zero_and_256_levels():
    values = np.linspace(0.3, 2.0, 300)
    grid = affine_grid(values)
    assert np.unique(grid).size <= 256 and affine_grid(np.array([0.0, 1.5]))[0] == 0.0
    assert np.abs(grid - values).max() <= 2.0 / 255 / 2 + 1e-12


def test_bits16_codebooks_are_float16_values():
    w = _weights(FC, seed=2)
    part = WeightSharing(bits=16).apply(w, 37, layer=FC, clusterer=Sorted1DClusterer())
    book = part.payload["codebook"]
    assert np.array_equal(book.astype(np.float16).astype(np.float64), book)
    full = WeightSharing(bits=32).apply(w, 37, layer=FC, clusterer=Sorted1DClusterer())
    assert not np.array_equal(full.payload["codebook"].astype(np.float16).astype(np.float64),
                              full.payload["codebook"])  # float32 codebooks are not rounded


@pytest.mark.parametrize("bits", [8, 16])
def test_b_bit_variants_pass_the_approximation_suite(bits):
    check_approximation(WeightSharing(bits=bits), clusterer=Sorted1DClusterer())


def test_bits16_export_of_a_float32_model_round_trips(lenet, tmp_path):
    model, (x, y) = lenet
    r = wsx.explore(model, (x[:300], y[:300]), strategy="greedy", bits=16, subset=None, budget=12,
                    approximation=WeightSharing(k_values=3, k_max=8), progress=False)
    cand = r.front[-1]
    wsx.export(model, cand, tmp_path / "m.wsx", result=r)
    restored = wsx.load_compressed(tmp_path / "m.wsx")
    from wsx.engine import approximated_weights

    _, applied, _ = approximated_weights(model, cand, result=r)
    for name, arr in applied.items():
        assert np.array_equal(restored[name], arr)
