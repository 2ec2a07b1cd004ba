"""Tiny models the backend conformance suite runs on besides the embedded LeNet: transformer encoders
fed tokenizer-style dict inputs without labels, in each framework, with random weights.

Each builder returns an ``Example``: the model, its data and what the suite scores it with. They are
small on purpose (1-2 layers, hidden size 16-32, a few dozen samples) so every check stays fast, and
they never download anything. Frameworks are imported inside the builders.

* ``torch_encoder``: ``nn.Embedding`` (tokens, positions), ``nn.TransformerEncoder`` (so
  ``nn.MultiheadAttention`` and its bare ``in_proj_weight``), a pooler; returns a dict.
* ``torch_bert`` / ``torch_vit``: Hugging Face ``BertModel`` and ``ViTForImageClassification`` from a
  config (needs ``transformers``); they return ``ModelOutput`` objects.
* ``keras_encoder``: a functional model with named inputs, ``Embedding``, ``MultiHeadAttention``,
  ``EinsumDense``, ``LayerNormalization``; returns a dict.
* ``flax_encoder``: a linen module with ``nn.Embed``, ``nn.MultiHeadDotProductAttention``; returns a
  dict. As a JAX pair ``(module.apply, variables)``.

In the encoders the pooler feeds only ``pooler_output``, so when the metric reads
``last_hidden_state`` (the default: the first entry) its weights cannot influence the output
(``unused``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

VOCAB, SEQ, HIDDEN, HEADS, FFN = 50, 8, 16, 2, 32


@dataclass
class Example:
    """A model, its data and how the conformance suite scores it."""

    model: Any
    data: Any
    metric: Any = "top1"
    output: Any = None
    unused: tuple = ()  # layers whose weights cannot influence the selected output
    explore: dict = field(default_factory=dict)  # explore() settings for the explore checks
    contains: tuple = ()  # layer names (fnmatch patterns) the backend must find
    # capabilities this model cannot use, with the reason (e.g. {"prefix_cache": "torch.fx cannot trace
    # it"}): the suite then checks that the backend says why instead of checking that it used them
    fallbacks: dict = field(default_factory=dict)
    layer_sample: int | None = 4  # the layer-wise checks sweep this many layers
    # restoring the model when explore raises is the backend's snapshot / restore, checked on its LeNet
    skip: tuple = ("explore_raise_and_interrupt",)


def tokens(n: int = 16, seed: int = 0, vocab: int = VOCAB, seq: int = SEQ) -> dict:
    """Tokenizer-style inputs: ``input_ids``, ``attention_mask`` (the last tokens of some samples
    padded) and ``token_type_ids``, int64 arrays of shape (n, seq)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, seq)).astype(np.int64)
    lengths = rng.integers(seq // 2, seq + 1, size=n)
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = ids * mask
    types = (np.arange(seq)[None, :] >= lengths[:, None] // 2).astype(np.int64) * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


# -- torch ----------------------------------------------------------------------------------------------
def torch_encoder(layers: int = 1, seed: int = 0, n: int = 16) -> Example:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, HIDDEN)
            self.positions = nn.Embedding(SEQ, HIDDEN)
            layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, FFN, dropout=0.1, batch_first=True)
            # no nested-tensor fast path: padded positions keep their values on every execution path
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.pooler = nn.Linear(HIDDEN, HIDDEN)

        def forward(self, input_ids, attention_mask):
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            h = self.tokens(input_ids) + self.positions(pos)
            h = self.encoder(h, src_key_padding_mask=attention_mask == 0)
            return {"last_hidden_state": h, "pooler_output": torch.tanh(self.pooler(h[:, 0]))}

    torch.manual_seed(seed)
    data = tokens(n, seed)
    return Example(Encoder().eval(), {k: data[k] for k in ("input_ids", "attention_mask")}, "cosine",
                   unused=("pooler.weight",),
                   contains=("tokens.weight", "positions.weight", "*self_attn.in_proj_weight",
                             "*self_attn.out_proj.weight", "*linear1.weight", "*linear2.weight"))


def torch_bert(layers: int = 2, seed: int = 0, n: int = 16, hidden: int = 32) -> Example:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=HEADS,
                        intermediate_size=2 * hidden, max_position_embeddings=2 * SEQ, type_vocab_size=2)
    return Example(BertModel(config).eval(), tokens(n, seed), "cosine", unused=("pooler.dense.weight",),
                   contains=("embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                             "embeddings.token_type_embeddings.weight", "*attention.self.query.weight",
                             "*attention.self.key.weight", "*attention.self.value.weight",
                             "*attention.output.dense.weight", "*intermediate.dense.weight", "*output.dense.weight"))


def torch_vit(seed: int = 0, n: int = 16) -> Example:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(image_size=16, patch_size=8, num_channels=3, hidden_size=HIDDEN, num_hidden_layers=1,
                       num_attention_heads=HEADS, intermediate_size=FFN, num_labels=4)
    x = np.random.default_rng(seed).normal(size=(n, 3, 16, 16)).astype(np.float32)
    return Example(ViTForImageClassification(config).eval(), x, "agreement",
                   contains=("vit.embeddings.patch_embeddings.projection.weight", "*attention*q*weight",
                             "*attention*k*weight", "*attention*v*weight", "*attention*o*weight", "classifier.weight"))


# -- keras ----------------------------------------------------------------------------------------------
def keras_encoder(layers: int = 1, seed: int = 0, n: int = 16) -> Example:
    import keras
    from keras import layers as kl
    from keras import ops

    keras.utils.set_random_seed(seed)
    ids = keras.Input((SEQ,), dtype="int64", name="input_ids")
    mask = keras.Input((SEQ,), dtype="int64", name="attention_mask")
    types = keras.Input((SEQ,), dtype="int64", name="token_type_ids")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1
    h = (kl.Embedding(VOCAB, HIDDEN, name="tokens")(ids) + kl.Embedding(SEQ, HIDDEN, name="positions")(positions)
         + kl.Embedding(2, HIDDEN, name="segments")(types))
    h = kl.LayerNormalization(name="embed_norm")(h)
    attend = ops.expand_dims(ops.cast(mask, "bool"), 1)  # (batch, 1, keys)
    for i in range(layers):
        a = kl.MultiHeadAttention(HEADS, HIDDEN // HEADS, name=f"attention{i}")(h, h, attention_mask=attend)
        h = kl.LayerNormalization(name=f"norm{i}a")(h + a)
        f = kl.Dense(FFN, activation="gelu", name=f"ffn{i}_in")(h)
        f = kl.EinsumDense("btf,fh->bth", output_shape=(SEQ, HIDDEN), bias_axes="h", name=f"ffn{i}_out")(f)
        h = kl.LayerNormalization(name=f"norm{i}b")(h + f)
    pooled = kl.Dense(HIDDEN, activation="tanh", name="pooler")(h[:, 0])
    model = keras.Model({"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
                        {"last_hidden_state": h, "pooler_output": pooled})
    return Example(model, tokens(n, seed), "cosine", unused=("pooler/kernel",),
                   contains=("tokens/embeddings", "positions/embeddings", "segments/embeddings",
                             "attention0/query/kernel", "attention0/key/kernel", "attention0/value/kernel",
                             "attention0/attention_output/kernel", "ffn0_in/kernel", "ffn0_out/kernel"))


# -- jax / flax -----------------------------------------------------------------------------------------
def flax_encoder(layers: int = 1, seed: int = 0, n: int = 16) -> Example:
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, inputs):
            ids, mask, types = inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
            h = (nn.Embed(VOCAB, HIDDEN, name="tokens")(ids) + nn.Embed(SEQ, HIDDEN, name="positions")(
                jnp.arange(ids.shape[1])) + nn.Embed(2, HIDDEN, name="segments")(types))
            h = nn.LayerNorm(name="embed_norm")(h)
            attend = nn.make_attention_mask(jnp.ones_like(mask), mask)  # (batch, 1, queries, keys)
            for i in range(layers):
                a = nn.MultiHeadDotProductAttention(HEADS, qkv_features=HIDDEN, name=f"attention{i}")(h, h, mask=attend)
                h = nn.LayerNorm(name=f"norm{i}a")(h + a)
                f = nn.Dense(HIDDEN, name=f"ffn{i}_out")(nn.gelu(nn.Dense(FFN, name=f"ffn{i}_in")(h)))
                h = nn.LayerNorm(name=f"norm{i}b")(h + f)
            pooled = jnp.tanh(nn.Dense(HIDDEN, name="pooler")(h[:, 0]))
            return {"last_hidden_state": h, "pooler_output": pooled}

    data = tokens(n, seed)
    module = Encoder()
    variables = module.init(jax.random.PRNGKey(seed), {k: v[:2] for k, v in data.items()})
    return Example((module.apply, variables), data, "cosine", unused=("params/pooler/kernel",),
                   contains=("params/tokens/embedding", "params/positions/embedding", "params/segments/embedding",
                             "params/attention0/query/kernel", "params/attention0/key/kernel",
                             "params/attention0/value/kernel", "params/attention0/out/kernel",
                             "params/ffn0_in/kernel", "params/ffn0_out/kernel"))
