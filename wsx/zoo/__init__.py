"""Embedded models with their data, for demos, tests and benchmarks. Nothing is downloaded.

``wsx.zoo.load("lenet5-digits", framework="torch")`` returns ``(model, (inputs, labels))``: a
LeNet-5-style CNN (3 conv + 2 fully connected) trained on scikit-learn's bundled 8x8 digits, and the
held-out test split it was not trained on (540 images). The weights ship in ``lenet5_digits.safetensors``
(torch layout) and were produced by ``python -m wsx.zoo.train``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidSettingError, PluginUnavailableError

HERE = Path(__file__).parent
WEIGHTS = {"lenet5-digits": HERE / "lenet5_digits.safetensors"}
FRAMEWORKS = ("torch", "keras", "jax")
SPLIT_SEED = 0
TEST_FRACTION = 0.3


def names() -> list[str]:
    return sorted(WEIGHTS)


def digits_split(split: str = "test", layout: str = "nchw") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as float32 images in [0, 1], split 70/30 (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                              stratify=y)
    x, y = (x_tr, y_tr) if split == "train" else (x_te, y_te)
    if split not in ("train", "test"):
        raise InvalidSettingError(f"unknown split {split!r}; use 'train' or 'test'")
    x = x[:, None, :, :] if layout == "nchw" else x[:, :, :, None]
    return np.ascontiguousarray(x), y


def load_weights(name: str = "lenet5-digits") -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(WEIGHTS[name]))


def load(name: str = "lenet5-digits", framework: str = "torch", split: str = "test"):
    """An embedded model in ``framework`` and its (inputs, labels) data for ``split``."""
    if name not in WEIGHTS:
        raise InvalidSettingError(f"unknown zoo model {name!r}; available: {names()}")
    if framework not in FRAMEWORKS:
        raise InvalidSettingError(f"unknown framework {framework!r}; use one of {list(FRAMEWORKS)}")
    from . import lenet5

    try:
        builder = getattr(lenet5, f"{framework}_model")
    except AttributeError:
        raise PluginUnavailableError(f"the {framework} version of {name!r} is not available in this "
                                     "wsx build") from None
    from ..plugins import backends, install_hint

    for cls in backends().values():  # the backend may set its framework's environment before the import
        if getattr(cls, "zoo_framework", None) == framework and cls.available()[0]:
            cls.prepare_import()
    try:
        model = builder(load_weights(name))
    except ImportError as exc:
        extra = "tensorflow" if framework == "keras" else framework
        raise PluginUnavailableError(f"{framework} is not installed ({exc}); {install_hint(extra)}") from exc
    layout = "nchw" if framework == "torch" else "nhwc"
    return model, digits_split(split, layout)
