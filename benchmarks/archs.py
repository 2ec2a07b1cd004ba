"""Real architectures for the benchmarks: random-init builders with synthetic inputs, nothing downloaded.

    from benchmarks.archs import build, ARCHS, time_scoring
    model, data = build("resnet18", samples=64, size=96)     # torch nn.Module, (x, y)
    seconds = time_scoring(model, data)                        # one candidate scored on all samples

torch models come from ``transformers`` configs (``pip install -c constraints.txt -e ".[bench]"``)
with random weights: ResNet-18, MobileNetV2, EfficientNet-B0, ConvNeXt-tiny, ViT-tiny and a 6-layer
BERT-style encoder; also Keras' MobileNetV2 (``keras.applications``, ``weights=None``) and a small
Flax CNN. Their outputs are ``ModelOutput`` objects, as users' models are; ``logits=True`` (the
default) wraps a torch model so that it returns the logits tensor, which today's torch backend needs.

Data: ``samples`` synthetic inputs (images N x 3 x size x size for torch, NHWC for Keras and Flax;
token ids N x 32 for BERT) and, as labels, the model's own top-1 predictions on them, so that
top-1 is a fidelity metric: agreement with the uncompressed model. The seeds fix both.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

# name: (framework, default input size) -- ViT-tiny needs its configured 224 px
ARCHS = {
    "resnet18": ("torch", 96),
    "mobilenet_v2": ("torch", 96),
    "efficientnet_b0": ("torch", 96),
    "convnext_tiny": ("torch", 96),
    "vit_tiny": ("torch", 224),
    "bert6": ("torch", 32),  # sequence length
    "keras_mobilenet_v2": ("keras", 96),
    "flax_cnn": ("jax", 32),
}
CLASSES = 10


def _hf_model(name: str, size: int):
    import torch
    import transformers as tf

    if name == "resnet18":
        cfg = tf.ResNetConfig(embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
                              layer_type="basic", num_labels=CLASSES)
        return tf.ResNetForImageClassification(cfg)
    if name == "mobilenet_v2":
        return tf.MobileNetV2ForImageClassification(tf.MobileNetV2Config(image_size=size, num_labels=CLASSES))
    if name == "efficientnet_b0":
        cfg = tf.EfficientNetConfig(width_coefficient=1.0, depth_coefficient=1.0, image_size=size,
                                    hidden_dim=1280, dropout_rate=0.2, num_labels=CLASSES)  # B0
        model = tf.EfficientNetForImageClassification(cfg)
        # transformers draws conv and BatchNorm scales from normal(0.02), which shrinks activations to
        # exact zeros by block 11 (all-zero logits): He init, unit BN scales and BN statistics
        # calibrated on random images (one pass in train mode) keep them at unit scale
        gen = torch.Generator().manual_seed(12345)
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.ones_(m.weight)
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration pass
        model.train()
        with torch.no_grad():
            model(torch.randn(32, 3, size, size, generator=gen))
        return model.eval()
    if name == "convnext_tiny":
        cfg = tf.ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], num_labels=CLASSES)
        return tf.ConvNextForImageClassification(cfg)
    if name == "vit_tiny":
        cfg = tf.ViTConfig(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                           image_size=size, patch_size=16, num_labels=CLASSES)
        return tf.ViTForImageClassification(cfg)
    if name == "bert6":
        cfg = tf.BertConfig(vocab_size=8000, hidden_size=384, num_hidden_layers=6, num_attention_heads=6,
                            intermediate_size=1536, max_position_embeddings=128, num_labels=CLASSES)
        return tf.BertForSequenceClassification(cfg)
    raise KeyError(name)


def _logits_module(model):
    """``model`` returning its logits tensor instead of a ModelOutput."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x).logits

    return Logits(model).eval()


def _torch(name: str, samples: int, size: int, seed: int, logits: bool):
    import torch

    torch.manual_seed(seed)
    model = _hf_model(name, size).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    if name == "bert6":
        x = torch.randint(1, model.config.vocab_size, (samples, size), generator=gen)
    else:
        x = torch.randn(samples, 3, size, size, generator=gen)
    with torch.inference_mode():
        y = torch.cat([model(x[i:i + 16]).logits.argmax(-1) for i in range(0, samples, 16)])
    return (_logits_module(model) if logits else model), (x.numpy(), y.numpy())


def _keras(samples: int, size: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(size, size, 3), classes=CLASSES)
    x = np.random.default_rng(seed + 1).normal(size=(samples, size, size, 3)).astype(np.float32)
    return model, (x, np.asarray(model.predict(x, verbose=0)).argmax(-1))


def _flax(samples: int, size: int, seed: int):
    """Four 3x3 convolutions (32-64-64-128, stride 2 from the second on) and a dense head."""
    import flax.linen as nn
    import jax

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            for i, width in enumerate((32, 64, 64, 128)):
                x = nn.relu(nn.Conv(width, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(x))
            return nn.Dense(CLASSES)(x.mean(axis=(1, 2)))

    module = CNN()
    x = np.random.default_rng(seed + 1).normal(size=(samples, size, size, 3)).astype(np.float32)
    params = module.init(jax.random.PRNGKey(seed), x[:1])
    y = np.asarray(module.apply(params, x)).argmax(-1)
    return (module.apply, params), (x, y)


def build(name: str, samples: int = 64, size: int | None = None, seed: int = 0, logits: bool = True) -> tuple[Any, tuple]:
    """(model, (inputs, labels)) of architecture ``name`` (see ``ARCHS``) with random weights;
    labels are the model's own predictions (top-1 = agreement with the uncompressed model)."""
    if name not in ARCHS:
        raise KeyError(f"unknown architecture {name!r}; use one of {sorted(ARCHS)}")
    framework, default = ARCHS[name]
    size = size or default
    if framework == "keras":
        return _keras(samples, size, seed)
    if framework == "jax":
        return _flax(samples, size, seed)
    return _torch(name, samples, size, seed, logits)


def time_scoring(model: Any, data: tuple, *, layer: str | None = None, k: int = 16, population: int = 1,
                 repeats: int = 3, backend: Any = None, **backend_options) -> dict:
    """Seconds to score ``population`` candidates that share ``layer`` (default: the first layer of
    interest) at k values around ``k``, on all samples, best of ``repeats`` after one warm-up; plus
    the backend's fast-path reports (``fold_error_``, ``prefix_errors_``, ``vmap_error_``) and which
    paths ran (``stats_``: folded calls, vmap calls, one-by-one forwards, prefix-cache counts)."""
    from wsx.engine import make_backend, resolve_clusterer
    from wsx_plugins.approximations.weight_sharing import WeightSharing

    be = make_backend(model, data, backend, **backend_options)
    try:
        layers = be.layers()
        info = next(x for x in layers if x.name == layer) if layer else layers[0]
        appr, clus = WeightSharing(), resolve_clusterer(None, 0)
        ks = [max(2, k + i) for i in range(population)]
        parts = appr.apply_many(be.get_weights(info.name), ks, layer=info, clusterer=clus)
        cands = [{info.name: p.weights} for p in parts]
        be.score(cands, None)  # warm-up: traces, checks, prefix caches
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            be.score(cands, None)
            best = min(best, time.perf_counter() - t)
        return {"layer": info.name, "population": population, "seconds": best,
                "seconds_per_candidate": best / population,
                "fold_error_": getattr(be, "fold_error_", None),
                "prefix_errors_": dict(getattr(be, "prefix_errors_", {}) or {}),
                "vmap_error_": getattr(be, "vmap_error_", None),
                "paths": {k: int(v) for k, v in dict(getattr(be, "stats_", {}) or {}).items()}}
    finally:
        be.close()
