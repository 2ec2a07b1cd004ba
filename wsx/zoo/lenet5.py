"""LeNet-5-style CNN for 8x8 digits, built in each framework from one set of weights (torch layout).

conv1 6@3x3 pad 1 -> ReLU -> maxpool 2 -> conv2 16@3x3 pad 1 -> ReLU -> maxpool 2 -> conv3 120@2x2
-> ReLU -> fc1 84 -> ReLU -> fc2 10. Weight counts 54 / 864 / 7680 / 10080 / 840.
"""
from __future__ import annotations

import numpy as np

# (kernel size, padding) of conv1, conv2, conv3; other LeNet-5 variants (the Fashion-MNIST
# benchmark's 5x5 one) pass their own
DIGITS_CONVS = ((3, 1), (3, 1), (2, 0))


def torch_module(convs=DIGITS_CONVS):
    import torch
    from torch import nn

    (k1, p1), (k2, p2), (k3, p3) = convs

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 6, k1, padding=p1)
            self.conv2 = nn.Conv2d(6, 16, k2, padding=p2)
            self.conv3 = nn.Conv2d(16, 120, k3, padding=p3)
            self.fc1 = nn.Linear(120, 84)
            self.fc2 = nn.Linear(84, 10)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            x = torch.relu(self.conv3(x)).flatten(1)
            return self.fc2(torch.relu(self.fc1(x)))

    return LeNet5()


def torch_model(weights: dict[str, np.ndarray], convs=DIGITS_CONVS):
    import torch

    model = torch_module(convs)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return model.eval()


# Torch stores conv kernels (out, in, kh, kw) and linear weights (out, in); Keras and Flax use
# (kh, kw, in, out) and (in, out). The same trained values, moved to each framework's layout.
def _conv_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _dense_io(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w))


CONVS = ("conv1", "conv2", "conv3")
DENSES = ("fc1", "fc2")


def _hwio_layout(weights: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{layer: (kernel, bias)} in the Keras / Flax layout."""
    out = {name: (_conv_hwio(weights[f"{name}.weight"]), weights[f"{name}.bias"]) for name in CONVS}
    out.update({name: (_dense_io(weights[f"{name}.weight"]), weights[f"{name}.bias"]) for name in DENSES})
    return out


def keras_model(weights: dict[str, np.ndarray]):
    """The LeNet as a Keras 3 Sequential (NHWC input 8x8x1); kernels are named ``lenet5/conv1/kernel``..."""
    import keras

    layers = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        layers.MaxPooling2D(2),
        layers.Conv2D(120, 2, activation="relu", name="conv3"),
        layers.Flatten(),
        layers.Dense(84, activation="relu", name="fc1"),
        layers.Dense(10, name="fc2"),
    ], name="lenet5")
    for name, (kernel, bias) in _hwio_layout(weights).items():
        model.get_layer(name).set_weights([kernel, bias])
    return model


def flax_module():
    """The LeNet as a Flax linen module (NHWC input)."""
    import flax.linen as nn

    class LeNet5(nn.Module):
        @nn.compact
        def __call__(self, x):
            def pool(y):
                return nn.max_pool(y, (2, 2), strides=(2, 2))

            x = pool(nn.relu(nn.Conv(6, (3, 3), padding="SAME", name="conv1")(x)))
            x = pool(nn.relu(nn.Conv(16, (3, 3), padding="SAME", name="conv2")(x)))
            x = nn.relu(nn.Conv(120, (2, 2), padding="VALID", name="conv3")(x))
            x = nn.relu(nn.Dense(84, name="fc1")(x.reshape((x.shape[0], -1))))
            return nn.Dense(10, name="fc2")(x)

    return LeNet5()


def jax_model(weights: dict[str, np.ndarray]):
    """The LeNet as a JAX ``(apply_fn, params)`` pair from Flax: ``apply_fn(params, x)`` with x NHWC.
    Weight leaves are named ``params/conv1/kernel``..."""
    import jax.numpy as jnp

    params = {name: {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
              for name, (kernel, bias) in _hwio_layout(weights).items()}
    return flax_module().apply, {"params": params}
