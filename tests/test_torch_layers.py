"""Layer discovery of the torch backend on non-Sequential models with every supported layer type."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import wsx  # noqa: E402
from conftest import torch_state_bytes  # noqa: E402


class Branchy(nn.Module):
    """Two branches, grouped/depthwise/transposed convolutions and a weight tied between two Linears."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.c3 = nn.Conv3d(1, 2, 1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 4)
        self.tail = nn.Linear(4, 4)
        self.tail.weight = self.head.weight  # shared: one layer of interest
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        a = self.c1(x.flatten(2)[:, :1, :16]).reshape(x.shape[0], 4, 4, 4)
        b = self.up(self.dw(self.c2(a)))
        b = self.bn(b).mean((2, 3))
        c = self.c3(x[:, :1, None]).mean((1, 2, 3, 4))[:, None]
        return self.out(torch.relu(self.tail(torch.relu(self.head(b + c)))))


def test_layers_of_interest_and_tied_weight():
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(64, 1, 4, 4)
    y = model(x).argmax(1).numpy()
    be = wsx.plugins.backends()["torch"](model, (x.numpy(), y))
    layers = {layer.name: layer for layer in be.layers()}
    assert set(layers) == {"c1.weight", "c2.weight", "dw.weight", "up.weight", "c3.weight", "head.weight",
                           "out.weight"}
    assert layers["head.weight"].modules == ("head", "tail")
    assert layers["dw.weight"].kind == "Conv2d" and layers["dw.weight"].size == 8 * 1 * 3 * 3
    assert layers["up.weight"].kind == "ConvTranspose2d"
    assert be.score([{}])[0] == 1.0
    # A substituted tied weight acts in both modules, as if written into the model.
    import copy

    def mean_output(outputs, labels):
        return float(outputs.mean())

    probe = wsx.plugins.backends()["torch"](model, (x.numpy(), y), metric=mean_output)
    ref = copy.deepcopy(model)
    with torch.no_grad():
        ref.head.weight.zero_()  # deepcopy keeps the tie: tail sees zeros too
        expected = float(ref(x).mean())
    got = probe.score([{"head.weight": np.zeros((4, 4), np.float32)}])[0]
    assert got == pytest.approx(expected, rel=1e-5)
    assert got != pytest.approx(probe.score([{}])[0], rel=1e-5)


def test_explore_on_branchy_model_restores_everything():
    torch.manual_seed(1)
    model = Branchy()
    model.train()
    x = torch.randn(200, 1, 4, 4)
    with torch.no_grad():
        y = model.eval()(x).argmax(1).numpy()
    model.train()
    before = torch_state_bytes(model)
    strat = wsx.plugins.strategies()["divide-and-conquer"](pop_size=6, generations=2)
    r = wsx.explore(model, (x.numpy(), y), strategy=strat, knobs=[2, 8, 32], target=0.5, progress=False)
    assert r.scorings > 0 and len(r.layers) == 7
    assert torch_state_bytes(model) == before and model.training and model.bn.training


def test_model_without_layers_of_interest_is_refused():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(wsx.InvalidModelError, match="no layers of interest"):
        wsx.explore(model, (np.zeros((4, 3), np.float32), np.zeros(4, int)), progress=False)
