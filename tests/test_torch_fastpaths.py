"""The torch backend's fast paths on real architectures' graphs (tiny ``transformers`` configs, random
init): the folded population forward, the fx prefix cut and the module-hook prefix cut each score
what one-by-one full forwards score; a node the fold cannot batch runs once per candidate on its own;
the vmap chunk follows the real batch length; bf16 autocast reports its agreement with float32."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch import nn  # noqa: E402

import wsx  # noqa: E402
from wsx.testing import models  # noqa: E402


def _images(n=6, size=32, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32)


def _resnet():
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                    layer_type="basic", num_labels=3)
    return transformers.ResNetForImageClassification(cfg), _images()


def _mobilenet():
    cfg = transformers.MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=3)
    return transformers.MobileNetV2ForImageClassification(cfg), _images()


def _efficientnet():
    cfg = transformers.EfficientNetConfig(image_size=32, width_coefficient=0.1, depth_coefficient=0.1,
                                          hidden_dim=128, num_labels=3)  # 128: round_filters(1280)
    return transformers.EfficientNetForImageClassification(cfg), _images()


def _convnext():
    cfg = transformers.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return transformers.ConvNextForImageClassification(cfg), _images()


def _vit():
    ex = models.torch_vit(n=6)
    return ex.model, ex.data


def _bert():
    ex = models.torch_bert(layers=1, n=6, hidden=16)
    return ex.model, ex.data


ARCHS = {"resnet": _resnet, "mobilenet_v2": _mobilenet, "efficientnet": _efficientnet, "convnext": _convnext,
         "vit": _vit, "bert": _bert}


def _build(name):
    torch.manual_seed(0)
    model, data = ARCHS[name]()
    return model.eval(), data


def _backend(model, data, **kw):
    output = "last_hidden_state" if isinstance(model, transformers.BertModel) else "logits"
    kw = {"batch_size": 4, **kw}
    return wsx.plugins.backends()["torch"](model, data, metric="cosine", output=output, **kw)


def _population(be, layer, n=3):
    rng = np.random.default_rng(1)
    w = be.get_weights(layer)
    return [{layer: (w * (1 + 0.2 * rng.standard_normal(w.shape))).astype(np.float32)} for _ in range(n)]


def _middle(be):
    layers = be.layers()
    return layers[len(layers) // 2].name


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_fold_and_prefix_cuts_equal_one_by_one_forwards(name):
    model, data = _build(name)
    plain = _backend(model, data, vmap=False, prefix_cache=False)
    layer = _middle(plain)
    pop = _population(plain, layer)
    ref = plain.score(pop)

    fold = _backend(model, data, vmap=True, prefix_cache=False)
    np.testing.assert_allclose(fold.score(pop), ref, rtol=1e-4, atol=1e-5)
    assert fold.fold_error_ is None and fold.vmap_error_ is None and fold.stats_["folded_calls"] == 2
    (_, folder), = fold._folders.values()
    assert not folder.looped and not [n for n in folder.fallbacks if "pad" in n]  # padding has its own rule
    for path in ("fx", "hooks"):
        cut = _backend(model, data, vmap=False, prefix_path=path)
        np.testing.assert_allclose(cut.score(pop), ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cut.score(pop), ref, rtol=1e-4, atol=1e-5)
        assert cut.prefix_paths_ == {(layer,): path} and not cut.prefix_errors_
        assert cut.stats_["prefix_hits"] == 2 and cut.stats_["prefix_misses"] == 2
    # both together, through the cut's suffix graph
    both = _backend(model, data, vmap=True)
    np.testing.assert_allclose(both.score(pop), ref, rtol=1e-4, atol=1e-5)
    assert both.stats_["folded_calls"] == 2 and both.prefix_paths_ == {(layer,): "fx"}


class Gate(nn.Module):
    """Python control flow on tensor data: fx cannot trace it, vmap cannot batch it."""

    def forward(self, x):
        return x * 2 if float(x.sum()) > 0 else x - 1


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.gate = Gate()
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 3)

    def forward(self, x, scale=None):
        h = self.gate(self.a(x))
        h = torch.flatten(self.b(h).unsqueeze(1), start_dim=h.ndim - 1)  # getattr(h, "ndim") feeds an op
        if scale is not None:  # an optional argument the data never passes
            h = h * scale
        return self.c(h)


def test_a_node_vmap_cannot_batch_runs_per_candidate_and_the_rest_stays_folded():
    torch.manual_seed(0)
    model = Gated().eval()
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    be = wsx.plugins.backends()["torch"](model, x, metric="cosine", vmap=True, prefix_cache=False)
    pop = _population(be, "a.weight", 4)
    got = be.score(pop)
    assert "gate" in be.traced_leaves_  # the trace keeps the module whole instead of failing
    assert be.fold_error_ is None and be.stats_["folded_calls"] == 1
    (_, folder), = be._folders.values()
    assert folder.looped == {"gate": 1}  # only the gate ran once per candidate
    plain = wsx.plugins.backends()["torch"](model, x, metric="cosine", vmap=False, prefix_cache=False)
    np.testing.assert_allclose(got, plain.score(pop), rtol=1e-5, atol=1e-6)


def test_hook_cut_replays_captured_outputs_and_matches_the_full_forward():
    from torch.func import functional_call
    from wsx_backends._torch_hooks import HookCut, call_order

    model, data = _build("bert")
    inputs = {k: torch.as_tensor(v) for k, v in data.items()}
    params = dict(model.named_parameters())
    name = "encoder.layer.0.intermediate.dense.weight"
    cut = HookCut(model, call_order(model, (), inputs), {id(params[name])})
    assert cut.first.name == "encoder.layer.0.intermediate.dense"
    assert "embeddings" in cut.modules and "encoder.layer.0.attention" in cut.modules
    with torch.inference_mode():
        live = cut.capture((), inputs)
        new = {name: params[name] * 0.5}
        ref = functional_call(model, new, (), inputs).last_hidden_state
        with cut.replaying(live):
            got = functional_call(model, new, (), inputs).last_hidden_state
    torch.testing.assert_close(got, ref)
    assert not any("forward" in m.__dict__ for m in cut.modules.values())  # the replay is undone


def test_vmap_chunk_follows_the_real_batch_length():
    model, data = _build("resnet")
    be = _backend(model, data, vmap=True, prefix_cache=False, batch_size=256)
    per_sample = be._working_bytes_per_sample()
    be.vmap_bytes = per_sample * len(data) * 2  # two candidates of this 6-sample batch per call
    be.score(_population(be, _middle(be), 5))
    assert be._vmap_chunk == {6: 2} and be.stats_["vmap_calls"] == 3


def test_bf16_autocast_on_cpu_reports_agreement_with_float32():
    model, data = _build("resnet")
    ref = _backend(model, data, prefix_cache=False, vmap=False)
    low = _backend(model, data, precision="bf16")
    pop = _population(ref, _middle(ref), 3)
    np.testing.assert_allclose(low.score(pop), ref.score(pop), atol=5e-2)
    report = low.precision_report_
    assert report["precision"] == "bfloat16" and report["samples"] == len(data)
    assert 0.95 < report["mean_cosine"] <= 1.0 + 1e-9 and 0 < report["max_error"] < 0.2
    assert "bfloat16" in low.notes()[0] and ref.notes() == [] and ref.precision_report_ is None


def test_reduced_precision_agreement_reaches_the_result_notes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    be = wsx.plugins.backends()["torch"](model, x, metric="agreement", precision="bf16")
    result = wsx.explore(model, x, backend=be, strategy="divide-and-conquer", knobs=[2, 4], budget=20,
                         subset=None, target=0.5, progress=False)
    assert any("bfloat16 autocast" in n and "top-1 agreement" in n for n in result.notes)
