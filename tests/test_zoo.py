"""The embedded LeNet in torch, Keras and JAX: one set of trained weights, and the same clustered
weights and accuracy in every framework for the same k-tuple."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import wsx
import wsx.plugins

FRAMEWORKS = {"torch": ("torch", "torch"), "keras": ("tensorflow", "tensorflow"), "jax": ("jax", "flax")}
K_TUPLES = [(2, 4, 4, 4, 4), (4, 8, 16, 8, 16), (3, 5, 6, 7, 2)]


def to_torch_layout(w: np.ndarray) -> np.ndarray:
    """Keras / Flax kernels (kh, kw, in, out) and (in, out) to torch's (out, in, kh, kw) and (out, in)."""
    return np.transpose(w, (3, 2, 0, 1)) if w.ndim == 4 else w.T


@pytest.fixture(scope="module")
def zoo():
    """{framework: (model, data, backend)} for every framework installed here."""
    out = {}
    for fw, (backend, module) in FRAMEWORKS.items():
        try:
            __import__(module)
        except ImportError:
            continue
        model, data = wsx.zoo.load("lenet5-digits", framework=fw)
        out[fw] = (model, data, wsx.plugins.backends()[backend](model, data))
    if len(out) < 2:
        pytest.skip("needs at least two of torch, tensorflow, jax")
    return out


def test_loaders_give_the_same_data_in_each_layout(zoo):
    x_ref, y_ref = wsx.zoo.digits_split("test", "nchw")
    for fw, (_, (x, y), _) in zoo.items():
        assert np.array_equal(y, y_ref) and len(y) == 540
        want = x_ref if fw == "torch" else np.transpose(x_ref, (0, 2, 3, 1))
        assert x.shape == want.shape and np.array_equal(x, want), fw


def test_same_trained_weights_and_baseline(zoo):
    ref = wsx.zoo.load_weights("lenet5-digits")
    torch_names = ["conv1.weight", "conv2.weight", "conv3.weight", "fc1.weight", "fc2.weight"]
    accs = {}
    for fw, (_, _, be) in zoo.items():
        layers = be.layers()
        assert [layer.size for layer in layers] == [54, 864, 7680, 10080, 840], fw
        for layer, tname in zip(layers, torch_names):  # layers map by order
            w = be.get_weights(layer.name)
            w = w if fw == "torch" else to_torch_layout(w)
            assert np.array_equal(w, ref[tname]), f"{fw} {layer.name}"
        accs[fw] = be.score([{}])[0]
    assert max(accs.values()) - min(accs.values()) <= 1 / 540, accs
    assert min(accs.values()) > 0.95


def shared_weights(clusterer, w: np.ndarray, k: int) -> np.ndarray:
    """Weight sharing of ``w`` with k values, as a function of its values only: cluster the sorted
    values, then put each weight's centroid back in its place (layouts only permute values)."""
    flat = w.ravel()
    order = np.argsort(flat, kind="stable")
    c = clusterer.cluster(flat[order], k)
    out = np.empty(flat.size, np.float32)
    out[order] = c.centroids[c.labels]
    return out.reshape(w.shape)


@pytest.mark.parametrize("ks", K_TUPLES, ids=lambda ks: "k=" + "-".join(map(str, ks)))
def test_same_k_tuple_same_shared_weights_and_accuracy(zoo, ks):
    from wsx.engine import resolve_clusterer

    clusterer = resolve_clusterer(None, seed=0)
    torch_layout = {}
    accs = {}
    for fw, (_, _, be) in zoo.items():
        cand = {}
        for layer, k in zip(be.layers(), ks):
            cand[layer.name] = shared_weights(clusterer, be.get_weights(layer.name), k)
            assert len(np.unique(cand[layer.name])) <= k
        torch_layout[fw] = [w if fw == "torch" else to_torch_layout(w) for w in cand.values()]
        accs[fw] = be.score([cand])[0]
    first = next(iter(torch_layout.values()))
    for fw, ws in torch_layout.items():
        for a, b in zip(ws, first):
            assert np.array_equal(a, b), f"{fw}: clustered weights differ from the first framework's"
    assert max(accs.values()) - min(accs.values()) <= 1 / 540, accs  # within one test sample


def test_default_clusterer_path_matches_when_it_ignores_layout(zoo):
    """Through the engine's path (WeightSharing on the native array): equal across frameworks when
    the default clusterer is a function of the values only (sorted 1-D k-means is)."""
    from wsx.engine import resolve_clusterer
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    clusterer = resolve_clusterer(None, seed=0)
    probe = np.random.default_rng(0).laplace(size=(6, 4, 3, 3)).astype(np.float32)
    if not np.array_equal(np.sort(shared_weights(clusterer, probe, 5).ravel()),
                          np.sort(clusterer.cluster(probe, 5).reconstruct().astype(np.float32))):
        pytest.skip(f"the default clusterer {clusterer.name!r} depends on the order of the weights")
    appr = WeightSharing()
    results = {}
    for fw, (_, _, be) in zoo.items():
        layer = be.layers()[2]
        w = appr.apply(be.get_weights(layer.name), 6, layer=layer, clusterer=clusterer).weights
        results[fw] = w if fw == "torch" else to_torch_layout(w)
    first = next(iter(results.values()))
    assert all(np.array_equal(w, first) for w in results.values())


def test_bad_names_and_missing_framework(monkeypatch):
    with pytest.raises(wsx.InvalidSettingError, match="unknown framework"):
        wsx.zoo.load("lenet5-digits", framework="mxnet")
    with pytest.raises(wsx.InvalidSettingError, match="unknown zoo model"):
        wsx.zoo.load("resnet-1000", framework="torch")
    monkeypatch.setitem(sys.modules, "flax", None)
    monkeypatch.setitem(sys.modules, "flax.linen", None)
    with pytest.raises(wsx.PluginUnavailableError, match=r"\[jax\]'"):
        wsx.zoo.load("lenet5-digits", framework="jax")
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(wsx.PluginUnavailableError, match=r"\[tensorflow\]'"):
        wsx.zoo.load("lenet5-digits", framework="keras")


def test_explore_runs_on_keras_and_jax_by_name(zoo):
    """`backend="tensorflow"` / "keras" / "jax" names work end to end (what `wsx demo --backend` uses)."""
    for fw, name in (("keras", "keras"), ("keras", "tensorflow"), ("jax", "jax")):
        if fw not in zoo:
            continue
        model, data, _ = zoo[fw]
        r = wsx.explore(model, data, backend=name, strategy="random", budget=4, knobs=[4, 16],
                        target=0.5, progress=False)
        assert r.backend == ("tensorflow" if fw == "keras" else "jax") and r.scorings > 0
