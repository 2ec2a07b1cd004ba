"""Layers of interest beyond convolutions and dense layers: embedding tables and attention projections
(torch, Keras, JAX), tied weights as one layer, include / exclude, and layers whose weights cannot
influence the selected output (left out of the search and the CR)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import wsx


def test_torch_tied_embedding_is_one_layer_and_embeddings_are_selectable():
    torch = pytest.importorskip("torch")
    from torch import nn

    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(30, 8)
            self.mix = nn.Linear(8, 8)
            self.head = nn.Linear(8, 30, bias=False)
            self.head.weight = self.embed.weight  # tied input and output embeddings

        def forward(self, ids):
            return self.head(torch.tanh(self.mix(self.embed(ids))))

    model = TiedLM().eval()
    ids = np.random.default_rng(0).integers(0, 30, (12, 5))
    cls = wsx.plugins.backends()["torch"]
    be = cls(model, ids, metric="agreement")
    assert [(l.name, l.modules) for l in be.layers()] == [("embed.weight", ("embed", "head")), ("mix.weight", ("mix",))]
    assert [l.name for l in cls(model, ids, exclude=["embed*"]).layers()] == ["mix.weight"]
    half = {"embed.weight": be.get_weights("embed.weight") * 0.5}
    with torch.no_grad():  # the shared table changes both uses at once
        ref = model(torch.from_numpy(ids)).argmax(-1)
        tied = copy.deepcopy(model)
        tied.embed.weight.mul_(0.5)
        expected = (tied(torch.from_numpy(ids)).argmax(-1) == ref).float().mean().item()
    assert be.score([half])[0] == pytest.approx(expected)


def test_torch_multihead_attention_projections_are_layers():
    torch = pytest.importorskip("torch")
    from torch import nn

    class Cross(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, kdim=4, vdim=4, batch_first=True)  # q/k/v_proj_weight

        def forward(self, q, kv):
            return self.attn(q, kv, kv, need_weights=False)[0]

    rng = np.random.default_rng(0)
    data = wsx.Data(inputs=(rng.normal(size=(6, 3, 8)).astype(np.float32), rng.normal(size=(6, 5, 4)).astype(np.float32)))
    be = wsx.plugins.backends()["torch"](Cross().eval(), data, metric="mse")
    assert [l.name for l in be.layers()] == ["attn.q_proj_weight", "attn.k_proj_weight", "attn.v_proj_weight",
                                             "attn.out_proj.weight"]
    pop = [{l.name: be.get_weights(l.name) * 0.5} for l in be.layers()]
    assert np.allclose(be.score(pop), [be.score([c])[0] for c in pop], rtol=1e-5)
    assert (be.score(pop) > 0).all() and torch is not None


def test_keras_shared_embedding_is_one_layer():
    pytest.importorskip("tensorflow")
    import keras

    shared = keras.layers.Embedding(20, 4, name="shared")
    a, b = keras.Input((3,), dtype="int64"), keras.Input((3,), dtype="int64")
    out = keras.layers.Dense(2, name="out")(keras.layers.Concatenate()([shared(a), shared(b)]))
    model = keras.Model([a, b], out)
    ids = np.random.default_rng(0).integers(0, 20, (6, 3))
    be = wsx.plugins.backends()["tensorflow"](model, wsx.Data(inputs=(ids, ids[::-1].copy())), metric="mse")
    assert [l.name for l in be.layers()] == ["shared/embeddings", "out/kernel"]
    assert be.score([{"shared/embeddings": be.get_weights("shared/embeddings") * 0.5}])[0] > 0


def _pooled_encoder():
    import torch
    from torch import nn

    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.proj = nn.Linear(8, 8)
            self.pool = nn.Linear(8, 8)

        def forward(self, input_ids, attention_mask):
            h = torch.tanh(self.proj(self.embed(input_ids))) * attention_mask[..., None]
            return {"last_hidden_state": h, "pooler_output": torch.tanh(self.pool(h[:, 0]))}

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (40, 6))
    return Pooled().eval(), {"input_ids": ids, "attention_mask": (rng.random((40, 6)) < 0.8).astype(np.int64)}


def test_layers_the_output_never_reads_are_left_out_of_the_cr():
    pytest.importorskip("torch")
    model, inputs = _pooled_encoder()
    be = wsx.plugins.backends()["torch"](model, inputs)
    assert be.unused_layers() == ["pool.weight"]  # the default output: last_hidden_state
    assert wsx.plugins.backends()["torch"](model, inputs, output="pooler_output").unused_layers() == []
    result = wsx.explore(model, inputs, metric="cosine", target=0.99, strategy="random", budget=6, knobs=[4, 8],
                         subset=None, progress=False)
    assert result.unused_layers == ["pool.weight"]
    assert [layer["name"] for layer in result.layers] == ["embed.weight", "proj.weight"]
    assert result.baseline.bits == 32 * (20 * 8 + 8 * 8)  # the pooler counts in no CR
    assert any("pool.weight" in note for note in result.notes) and "pool.weight" in result.summary()
    pooled = wsx.explore(model, inputs, metric="cosine", target=0.99, output="pooler_output", strategy="random",
                         budget=6, knobs=[4, 8], subset=None, progress=False)
    assert pooled.unused_layers == [] and len(pooled.layers) == 3
    kept = wsx.explore(model, inputs, metric="cosine", target=0.99, exclude_unused=False, strategy="random",
                       budget=6, knobs=[4, 8], subset=None, progress=False)
    assert kept.unused_layers == [] and len(kept.layers) == 3


def test_flax_tied_embedding_and_attention_kernels():
    jax = pytest.importorskip("jax")
    pytest.importorskip("flax")
    import jax.numpy as jnp
    from flax import linen as nn

    class LM(nn.Module):
        @nn.compact
        def __call__(self, ids):
            embed = nn.Embed(30, 8, name="embed")
            h = embed(ids)
            h = h + nn.MultiHeadDotProductAttention(2, qkv_features=8, name="attn")(h, h)
            return embed.attend(jnp.tanh(nn.Dense(8, name="mix")(h)))  # the table again: tied output

    ids = np.random.default_rng(0).integers(0, 30, (10, 5))
    module = LM()
    variables = module.init(jax.random.PRNGKey(0), ids[:2])
    be = wsx.plugins.backends()["jax"]((module.apply, variables), ids, metric="agreement")
    kinds = {layer.name: layer.kind for layer in be.layers()}
    assert kinds == {"params/embed/embedding": "Embedding", "params/attn/query/kernel": "Dense",
                     "params/attn/key/kernel": "Dense", "params/attn/value/kernel": "Dense",
                     "params/attn/out/kernel": "Dense", "params/mix/kernel": "Dense"}  # 2-D biases are not layers
    assert be.unused_layers() == []
    table = be.get_weights("params/embed/embedding")
    assert be.score([{"params/embed/embedding": table[::-1].copy()}])[0] < 1.0
