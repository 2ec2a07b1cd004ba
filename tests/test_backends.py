"""Backends: the conformance suite (wsx.testing.backends) over every registered backend — torch,
tensorflow, jax and a test-only third-party numpy backend — then what each framework adds: layer
kinds, aliases, data forms, vmap / prefix-cache fallbacks and memory bounds, lazy imports."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

import wsx
import wsx.plugins
from wsx.backend import Backend
from wsx.testing.backends import CHECKS, context, examples, mean_true_logit


# -- a third-party backend, registered in-process like a plugin -------------------------------------
class NumpyMLP:
    """A two-layer perceptron held as numpy arrays (the user's model)."""

    def __init__(self, seed: int = 0, sizes=(12, 24, 5)):
        rng = np.random.default_rng(seed)
        self.weights = {"hidden": rng.laplace(0, 0.4, sizes[:2]).astype(np.float32),
                        "out": rng.laplace(0, 0.4, sizes[1:]).astype(np.float32)}

    def forward(self, x, weights=None):
        w = {**self.weights, **(weights or {})}
        return np.maximum(x @ w["hidden"], 0) @ w["out"]


class NumpyMLPBackend(Backend):
    """Scores NumpyMLP candidates functionally: the model's arrays are never written while scoring."""

    name = "numpy-mlp"

    @classmethod
    def accepts(cls, model):
        return isinstance(model, NumpyMLP)

    @classmethod
    def conformance_example(cls):
        model = NumpyMLP()
        rng = np.random.default_rng(1)
        x = rng.normal(size=(300, 12)).astype(np.float32)
        y = model.forward(x).argmax(1)
        flip = rng.random(300) < 0.1  # a baseline below 1.0
        y[flip] = rng.integers(0, 5, flip.sum())
        return model, (x, y)

    def __init__(self, model, data, **kwargs):
        super().__init__(model, data, **kwargs)
        if data is not None:
            self.x = np.asarray(data[0], dtype=np.float32)
            self.y = np.asarray(data[1]).astype(np.int64)
            if len(self.y) != len(self.x):
                raise wsx.InvalidDataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def _layers(self):
        return [wsx.LayerInfo(n, w.shape, w.size, "Dense", (n,)) for n, w in self.model.weights.items()]

    def get_weights(self, name):
        return self.model.weights[name].copy()

    def set_weights(self, name, array):
        if np.shape(array) != self.model.weights[name].shape:
            raise wsx.InvalidModelError(f"{name}: wrong shape {np.shape(array)}")
        self.model.weights[name] = np.asarray(array, dtype=np.float32).copy()

    @property
    def num_samples(self):
        return len(self.y)

    def _iter_batches(self, subset):
        idx = np.arange(len(self.y)) if subset is None else np.asarray(subset)
        for s in range(0, idx.size, self.batch_size):
            yield self.x[idx[s:s + self.batch_size]], self.y[idx[s:s + self.batch_size]]

    def _prepare(self, population):
        return [{k: np.asarray(v, np.float32) for k, v in c.items()} for c in population]

    def _forward_population(self, inputs, prepared):
        return [self.model.forward(inputs, cand) for cand in prepared]


class _NumpyPlugin:
    @wsx.hookimpl
    def wsx_backends(self):
        return [NumpyMLPBackend]

    @wsx.hookimpl
    def wsx_backend_for(self, model):
        return "numpy-mlp" if isinstance(model, NumpyMLP) else None


def _register_numpy_backend() -> None:
    """In-process registration, as a notebook would do (again after a test reloaded the registry)."""
    if wsx.plugins.manager().pm.get_plugin("numpy-mlp-test") is None:
        wsx.plugins.register(_NumpyPlugin(), name="numpy-mlp-test")


_register_numpy_backend()
NAMES = sorted(wsx.plugins.backends())
FRAMEWORK = {"torch": "torch", "tensorflow": "tensorflow", "jax": "flax"}


# -- the conformance suite over every registered backend and its examples ------------------------------
def _examples(name: str) -> list[str]:
    try:
        return examples(name)
    except wsx.WsxError:  # unavailable: its tests skip
        return [""]


CASES = [(name, example) for name in NAMES for example in _examples(name)]


@pytest.fixture(scope="module")
def contexts():
    """One Context per (backend, example), shared by its checks (traced functions and caches are reused)."""
    cache = {}

    def get(name, example):
        _register_numpy_backend()
        if (name, example) not in cache:
            if name in FRAMEWORK:
                pytest.importorskip(FRAMEWORK[name])
            if example in ("bert", "vit"):
                pytest.importorskip("transformers")
            cls = wsx.plugins.backends()[name]
            ok, reason = cls.available()
            if not ok:
                pytest.skip(reason)
            if not hasattr(cls, "conformance_example"):
                pytest.skip(f"{name} defines no conformance_example(); run check_backend on it yourself")
            cache[(name, example)] = context(cls, example=example)
        return cache[(name, example)]

    return get


def test_suite_covers_the_three_frameworks_and_a_third_party_backend():
    assert {"torch", "tensorflow", "jax", "numpy-mlp"} <= set(NAMES)
    for name in ("torch", "tensorflow", "jax"):  # each runs a transformer encoder besides the LeNet
        assert {"lenet", "encoder"} <= set(_examples(name))
    assert {"bert", "vit"} <= set(_examples("torch"))


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name,example", CASES, ids=[f"{n}-{e}" if e else n for n, e in CASES])
def test_conformance(contexts, name, example, check):
    ctx = contexts(name, example)
    if check in ctx.skip:
        pytest.skip(f"the {example} example skips {check}")
    try:
        CHECKS[check](ctx)
    except NotImplementedError as exc:
        pytest.skip(str(exc))


def test_suite_catches_a_backend_that_writes_into_the_model():
    """The suite must fail a backend that scores by writing candidates into the user's model."""

    class Leaky(NumpyMLPBackend):
        name = "numpy-leaky"

        def _forward_population(self, inputs, prepared):
            outs = []
            for cand in prepared:
                self.model.weights.update(cand)
                outs.append(self.model.forward(inputs))
            return outs

    ctx = context(Leaky)
    with pytest.raises(AssertionError, match="changed the user's model"):
        CHECKS["model_unchanged_by_scoring"](ctx)


def test_suite_catches_a_population_that_ignores_candidates():
    class Lazy(NumpyMLPBackend):
        name = "numpy-lazy"

        def _forward_population(self, inputs, prepared):
            first = self.model.forward(inputs, prepared[0])
            return [first for _ in prepared]  # every candidate scored as the first

    with pytest.raises(AssertionError, match="population vs one-by-one"):
        CHECKS["population_equals_one_by_one"](context(Lazy))


# -- imports stay lazy ----------------------------------------------------------------------------------
def test_import_and_discovery_import_no_framework():
    code = ("import sys, wsx, wsx.plugins\n"
            "wsx.plugins.backends(); wsx.plugins.info()\n"
            "import numpy as np\n"
            "assert wsx.plugins.backend_for((lambda p, x: x, {'w': np.zeros((2, 2))})) is None\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax', 'flax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- torch ----------------------------------------------------------------------------------------------
def _torch_residual_net():
    """Conv-BN-ReLU stem, a residual block with a depthwise conv, and a classifier (eval mode)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.expand = nn.Conv2d(8, 16, 1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.project = nn.Conv2d(16, 8, 1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = self.stem(x)
            x = x + self.bn(self.project(torch.relu(self.dw(self.expand(x)))))
            return self.fc(x.mean((2, 3)))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(48, 3, 6, 6)
    y = net.eval()(x).argmax(1).numpy()
    return net, (x.numpy(), y)


def _perturbed(be, name, n, seed=0):
    rng = np.random.default_rng(seed)
    w = be.get_weights(name)
    return [{name: (w + 0.5 * w.std() * rng.standard_normal(w.shape)).astype(np.float32)} for _ in range(n)]


def test_torch_prefix_cut_through_residual_and_batchnorm():
    torch = pytest.importorskip("torch")
    from conftest import torch_state_bytes

    net, data = _torch_residual_net()
    before = torch_state_bytes(net)
    fast = wsx.plugins.backends()["torch"](net, data, metric=mean_true_logit, batch_size=20)
    plain = wsx.plugins.backends()["torch"](net, data, metric=mean_true_logit, batch_size=20, vmap=False,
                                            prefix_cache=False)
    for layer in fast.layers():
        pop = _perturbed(fast, layer.name, 4)
        a, b = fast.score(pop), plain.score(pop)
        np.testing.assert_allclose(fast.score(pop), b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not fast.prefix_errors_ and fast.vmap_error_ is None
    # every layer but the first is cut; the residual input crosses the cut at the block's layers
    assert fast.stats_["prefix_hits"] > 0 and fast.stats_["vmap_calls"] > 0
    cut = fast._splits[("dw.weight",)]
    assert cut is not None and cut.info["live"] == 2  # dw's input and the skip connection
    assert torch_state_bytes(net) == before and not net.training


def test_torch_vmap_falls_back_when_an_op_has_no_batching_rule():
    torch = pytest.importorskip("torch")
    from torch import nn

    class ItemNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)
            self.b = nn.Linear(6, 3)

        def forward(self, x):
            scale = float(self.a.weight.abs().max().item())  # .item() has no vmap rule
            return self.b(torch.relu(self.a(x)) / scale)

    torch.manual_seed(0)
    net = ItemNet().eval()
    x = torch.randn(40, 6)
    data = (x.numpy(), net(x).argmax(1).detach().numpy())
    be = wsx.plugins.backends()["torch"](net, data, metric=mean_true_logit)
    pop = [{"a.weight": c["a.weight"], "b.weight": be.get_weights("b.weight") * 0.5}
           for c in _perturbed(be, "a.weight", 3)]
    got = be.score(pop)  # and the reference outputs, once (output distortion; cached per sample)
    assert be.vmap_error_ is not None and be.stats_["vmap_calls"] == 0 and be.stats_["loop_forwards"] == 3 + 1
    ref = np.array([be.score([c])[0] for c in pop])
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    be.score(pop)  # remembered: no second attempt
    assert be.stats_["loop_forwards"] == 3 + 1 + 3 + 3


def test_torch_untraceable_model_cuts_by_module_hooks():
    torch = pytest.importorskip("torch")
    from torch import nn

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(5, 5)
            self.b = nn.Linear(5, 3)

        def forward(self, x):
            h = self.a(x)
            if h.sum() > 0:  # control flow on values: torch.fx cannot trace it
                h = torch.relu(h)
            return self.b(h)

    torch.manual_seed(0)
    net = Branching().eval()
    x = torch.randn(30, 5)
    data = (x.numpy(), net(x).argmax(1).detach().numpy())
    cls = wsx.plugins.backends()["torch"]
    fx_only = cls(net, data, metric=mean_true_logit, prefix_path="fx")
    pop = _perturbed(fx_only, "b.weight", 3)
    got = fx_only.score(pop)
    assert ("b.weight",) in fx_only.prefix_errors_ and fx_only.stats_["prefix_hits"] == 0
    # nor the folded population forward (it walks the same graph): vmap, then a loop, take over
    assert fx_only.fold_error_ is not None and fx_only.stats_["folded_calls"] == 0
    np.testing.assert_allclose(got, [fx_only.score([c])[0] for c in pop], rtol=1e-6)
    # by default the module-hook cut serves instead: `a` runs once per batch, its output is replayed
    be = cls(net, data, metric=mean_true_logit)
    np.testing.assert_allclose(be.score(pop), got, rtol=1e-6)
    np.testing.assert_allclose(be.score(pop), got, rtol=1e-6)
    assert be.prefix_paths_ == {("b.weight",): "hooks"} and be.stats_["prefix_hits"] > 0 and not be.prefix_errors_


def test_prefix_cache_memory_bound():
    pytest.importorskip("torch")
    net, data = _torch_residual_net()
    cls = wsx.plugins.backends()["torch"]
    ref = cls(net, data, metric=mean_true_logit, batch_size=16, prefix_cache=False)
    none = cls(net, data, metric=mean_true_logit, batch_size=16, prefix_cache_bytes=0)
    pop = _perturbed(ref, "fc.weight", 3)
    for _ in range(2):
        np.testing.assert_allclose(none.score(pop), ref.score(pop), rtol=1e-5)
    assert len(none._prefix) == 0 and none.stats_["prefix_hits"] == 0 and none.stats_["prefix_misses"] == 6
    # room for two of the three batches: least recently used entries go, the bound always holds
    full = cls(net, data, metric=mean_true_logit, batch_size=16)
    full.score(pop)
    entry = full._prefix.bytes // 3
    bounded = cls(net, data, metric=mean_true_logit, batch_size=16, prefix_cache_bytes=2 * entry)
    for _ in range(2):
        np.testing.assert_allclose(bounded.score(pop), ref.score(pop), rtol=1e-5)
        assert bounded._prefix.bytes <= 2 * entry and len(bounded._prefix) == 2
    assert bounded.stats_["prefix_hits"] == 0  # a cyclic sweep over 3 batches: each was evicted in time
    assert full.score(pop) is not None and full.stats_["prefix_hits"] == 3


def test_vmap_bytes_bounds_candidates_per_call():
    pytest.importorskip("torch")
    net, data = _torch_residual_net()
    cls = wsx.plugins.backends()["torch"]
    small = cls(net, data, metric=mean_true_logit, batch_size=48, vmap_bytes=1, prefix_cache=False)
    ref = cls(net, data, metric=mean_true_logit, batch_size=48, vmap=False, prefix_cache=False)
    pop = _perturbed(ref, "expand.weight", 5)
    np.testing.assert_allclose(small.score(pop), ref.score(pop), rtol=1e-5)
    assert small.stats_["vmap_calls"] == 5  # one candidate per vectorised call


# -- tensorflow / keras -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_zoo():
    pytest.importorskip("tensorflow")
    return wsx.zoo.load("lenet5-digits", framework="keras")


def _keras_every_layer():
    keras = pytest.importorskip("keras")
    layers = keras.layers
    inp = keras.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    b = layers.BatchNormalization(name="bn")(a)
    c = layers.DepthwiseConv2D(3, padding="same", name="dw")(b)
    d = layers.Add()([b, c])
    e = layers.SeparableConv2D(6, 3, padding="same", name="sep")(d)
    f = layers.Conv2DTranspose(2, 2, strides=2, name="up")(e)
    g = layers.Reshape((16 * 16, 2))(f)
    h = layers.Conv1D(3, 3, name="c1d")(g)
    i = layers.Reshape((254, 3, 1, 1))(h)
    j = layers.Conv3D(2, 1, name="c3d")(i)
    k = layers.GlobalAveragePooling3D()(j)
    out = layers.Dense(3, name="fc")(layers.Concatenate()([k, layers.GlobalAveragePooling2D()(d)]))
    model = keras.Model(inp, out, name="every")
    rng = np.random.default_rng(0)
    for var in model.variables:  # non-trivial BatchNorm statistics
        if "moving" in var.path:
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
    x = rng.normal(size=(40, 8, 8, 3)).astype(np.float32)
    return model, (x, np.asarray(model(x)).argmax(1))


def test_keras_layer_kinds_names_and_alias():
    pytest.importorskip("tensorflow")
    from wsx.engine import resolve_backend_class

    model, data = _keras_every_layer()
    cls = wsx.plugins.backends()["tensorflow"]
    assert cls.aliases == ("keras",) and resolve_backend_class("keras", model) is cls
    assert wsx.plugins.backend_for(model) == "tensorflow"
    be = cls(model, data)
    kinds = {layer.name: layer.kind for layer in be.layers()}
    assert kinds == {"conv/kernel": "Conv2D", "dw/kernel": "DepthwiseConv2D",
                     "sep/depthwise_kernel": "SeparableConv2D", "sep/pointwise_kernel": "SeparableConv2D",
                     "up/kernel": "Conv2DTranspose", "c1d/kernel": "Conv1D", "c3d/kernel": "Conv3D",
                     "fc/kernel": "Dense"}
    assert [layer.name for layer in cls(model, data, exclude=["sep/*"]).layers()] == \
        ["conv/kernel", "dw/kernel", "up/kernel", "c1d/kernel", "c3d/kernel", "fc/kernel"]


def test_keras_prefix_and_vmap_on_a_branchy_functional_model():
    pytest.importorskip("tensorflow")
    model, data = _keras_every_layer()
    before = [v.numpy().tobytes() for v in model.variables]
    cls = wsx.plugins.backends()["tensorflow"]
    fast = cls(model, data, metric=mean_true_logit, batch_size=16)
    plain = cls(model, data, metric=mean_true_logit, batch_size=16, vmap=False, prefix_cache=False)
    for name in ("dw/kernel", "sep/pointwise_kernel", "fc/kernel"):
        pop = _perturbed(fast, name, 3)
        np.testing.assert_allclose(fast.score(pop), plain.score(pop), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fast.score(pop), plain.score(pop), rtol=1e-4, atol=1e-5)
    assert fast.stats_["prefix_hits"] > 0 and fast.stats_["vmap_calls"] > 0, (fast.prefix_errors_, fast.vmap_error_)
    # the sum entering sep is also pooled into the classifier: both cross the cut
    assert fast._splits[("sep/pointwise_kernel",)].info["live"] == 2
    assert [v.numpy().tobytes() for v in model.variables] == before


def test_keras_subclassed_model_and_tf_data():
    tf = pytest.importorskip("tensorflow")
    import keras

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, name="conv")
            self.flat = keras.layers.Flatten()
            self.fc = keras.layers.Dense(3, name="fc")

        def call(self, x):
            return self.fc(self.flat(tf.nn.relu(self.conv(x))))

    model = Sub()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6, 6, 2)).astype(np.float32)
    model(x[:1])
    y = np.asarray(model(x)).argmax(1)
    cls = wsx.plugins.backends()["tensorflow"]
    assert cls.accepts(model)
    be = cls(model, (x, y), metric=mean_true_logit)
    assert [layer.kind for layer in be.layers()] == ["Conv2D", "Dense"]
    pop = _perturbed(be, be.layers()[1].name, 3)
    got = be.score(pop)
    assert be.stats_["prefix_hits"] == 0 and be.stats_["prefix_misses"] == 0  # no graph: full forwards
    batched = cls(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(7), metric=mean_true_logit)
    single = cls(model, tf.data.Dataset.from_tensor_slices((x, y)), metric=mean_true_logit)
    for other in (batched, single):
        assert other.num_samples == 50
        np.testing.assert_allclose(other.score(pop), got, rtol=1e-5)


def test_keras_unbuilt_model_is_refused():
    pytest.importorskip("tensorflow")
    import keras

    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(wsx.InvalidModelError, match="no weights yet"):
        wsx.plugins.backends()["tensorflow"](model, (np.zeros((2, 4), np.float32), np.zeros(2, int)))


def test_keras_zoo_scores_like_torch(keras_zoo):
    pytest.importorskip("torch")
    model, data = keras_zoo
    tm, tdata = wsx.zoo.load("lenet5-digits", framework="torch")
    k = wsx.plugins.backends()["tensorflow"](model, data).score([{}])[0]
    t = wsx.plugins.backends()["torch"](tm, tdata).score([{}])[0]
    assert abs(k - t) <= 1 / len(data[1])


# -- jax --------------------------------------------------------------------------------------------------
def _jax_pair():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(0)
    params = {"embed": {"table": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)},
              "layers": [{"w": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
                          "b": jnp.zeros(8, jnp.float32)},
                         {"w": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}],
              "scale": jnp.float32(0.5)}

    def apply_fn(p, x):
        h = jnp.tanh(x @ p["embed"]["table"])
        h = jax.nn.relu(h @ p["layers"][0]["w"] + p["layers"][0]["b"])
        return p["scale"] * (h @ p["layers"][1]["w"]) + h.sum(1, keepdims=True)  # a skip past the cut

    x = rng.normal(size=(64, 6)).astype(np.float32)
    return (apply_fn, params), (x, np.asarray(apply_fn(params, x)).argmax(1))


def test_jax_leaves_names_include_exclude():
    pytest.importorskip("jax")
    model, data = _jax_pair()
    cls = wsx.plugins.backends()["jax"]
    assert wsx.plugins.backend_for(model) == "jax"
    be = cls(model, data)
    assert [(layer.name, layer.kind) for layer in be.layers()] == \
        [("embed/table", "Dense"), ("layers/0/w", "Dense"), ("layers/1/w", "Dense")]
    assert [layer.name for layer in cls(model, data, exclude=["embed/*"]).layers()] == ["layers/0/w", "layers/1/w"]
    assert [layer.name for layer in cls(model, data, include=["layers/1/w"]).layers()] == ["layers/1/w"]
    assert len(cls(model, data, min_ndim=1).layers()) == 4  # the bias too
    with pytest.raises(wsx.InvalidModelError):
        cls(model, data, include=["nothing"]).layers()


def test_jax_prefix_vmap_and_immutable_params():
    jax = pytest.importorskip("jax")
    model, data = _jax_pair()
    apply_fn, params = model
    leaves_before = [np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(params)]
    cls = wsx.plugins.backends()["jax"]
    fast = cls(model, data, metric=mean_true_logit, batch_size=24)
    plain = cls(model, data, metric=mean_true_logit, batch_size=24, vmap=False, prefix_cache=False)
    for name in ("layers/0/w", "layers/1/w"):
        pop = _perturbed(fast, name, 3)
        for _ in range(2):
            np.testing.assert_allclose(fast.score(pop), plain.score(pop), rtol=1e-5, atol=1e-6)
    assert fast.stats_["prefix_hits"] > 0 and fast.stats_["vmap_calls"] > 0
    new = fast.write_weights({"layers/1/w": np.zeros((8, 3), np.float32)})
    assert np.all(np.asarray(new["layers"][1]["w"]) == 0)
    assert [np.asarray(a).tobytes() for a in jax.tree_util.tree_leaves(params)] == leaves_before


def test_jax_detection_needs_a_pair_of_callable_and_arrays():
    jax = pytest.importorskip("jax")
    cls = wsx.plugins.backends()["jax"]
    ok = (lambda p, x: x, {"w": jax.numpy.zeros((2, 2))})
    assert cls.accepts(ok) and cls.accepts((ok[0], {"w": np.zeros((3, 3))}))
    assert not cls.accepts((ok[0], {"w": np.zeros(3)}))  # no leaf with >= 2 dimensions
    assert not cls.accepts(("not callable", ok[1])) and not cls.accepts((ok[0], ok[1], 1))


def test_vmap_auto_vectorises_small_networks_only():
    torch = pytest.importorskip("torch")
    from torch import nn

    cls = wsx.plugins.backends()["torch"]
    small, data = _torch_residual_net()
    auto = cls(small, data, vmap="auto")
    assert auto.vmap_ is None and auto._use_vmap() and auto.vmap_ is True  # decided at first use
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 32 * 32, 2)).eval()
    x = torch.randn(4, 3, 32, 32).numpy()
    be = cls(big, (x, np.zeros(4, int)))
    # > 256 KiB of activations per sample on CPU: the first population times stacked against the loop
    assert be._use_vmap() is True and be.vmap_ is None
    w = be.get_weights("0.weight")
    pop = [{"0.weight": w * s} for s in (0.5, 1.5, 2.0)]
    first = be.score(pop)
    choice = be.vmap_choice_
    assert be.vmap_ is (choice["chosen"] == "stacked") and choice["samples"] == 4
    assert choice["stacked_s_per_candidate"] > 0 and choice["loop_s_per_candidate"] > 0
    np.testing.assert_allclose(be.score(pop), first, rtol=1e-6)  # the chosen path scores the same
    assert cls(big, (x, np.zeros(4, int)), vmap=True)._use_vmap() is True
    from wsx_backends import _scoring

    # per candidate, per try: (stacked, loop); each path keeps its fastest of the interleaved tries
    for tries, chosen in ((((0.9, 1.0),) * 3, "loop"), (((0.7, 1.0),) * 3, "stacked"),
                          (((2.0, 1.0), (0.7, 1.0), (0.7, 1.0)), "stacked"),  # a spike on one try
                          (((0.9, 3.0), (0.9, 1.0), (0.9, 1.0)), "loop")):
        assert len(tries) == _scoring.VMAP_AUTO_REPEATS
        ticks, now = [], 0.0
        for stacked, loop in tries:  # a stacked call of the 3, then a loop of 2
            ticks += [now, now + stacked * 3, now + 10.0, now + 10.0 + loop * 2]
            now += 100.0
        clock = iter(ticks)
        monkey = pytest.MonkeyPatch()
        monkey.setattr(_scoring, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
        try:
            timed = cls(big, (x, np.zeros(4, int)))
            timed.score(pop)
        finally:
            monkey.undo()
        # only 1.25x faster takes the stacked path: a near-equal timing flips with the load
        assert timed.vmap_choice_["chosen"] == chosen and timed.vmap_ is (chosen == "stacked")
        assert timed.vmap_choice_["stacked_s_per_candidate"] == pytest.approx(min(t[0] for t in tries))
        assert timed.vmap_choice_["loop_s_per_candidate"] == pytest.approx(min(t[1] for t in tries))
    with pytest.raises(wsx.InvalidSettingError, match="vmap="):
        cls(small, data, vmap="sometimes")


def test_explore_records_the_timed_vmap_choice_and_how_to_repeat_it():
    torch = pytest.importorskip("torch")
    from torch import nn

    torch.manual_seed(0)
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 32 * 32, 3)).eval()
    x = torch.randn(8, 3, 32, 32).numpy()
    r = wsx.explore(big, x, metric="agreement", strategy="random", budget=3, subset=None, progress=False, threads=1)
    choice = r.extras["vmap_choice"]  # timed on the first population: it can differ between runs
    assert choice["chosen"] in ("stacked", "loop")
    assert any(f"vmap={choice['chosen'] == 'stacked'}" in n for n in r.notes)
    cls = wsx.plugins.backends()["torch"]
    fixed = wsx.explore(big, x, metric="agreement", strategy="random", budget=3, subset=None, progress=False,
                        threads=1, backend=cls(big, x, metric="agreement", vmap=False))
    assert "vmap_choice" not in fixed.extras and not any("vmap='auto'" in n for n in fixed.notes)
